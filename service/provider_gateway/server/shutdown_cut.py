"""Calls still running when the drain grace ends get a status that says why, not "Cancelling all calls".

`grpc.aio.Server.stop(grace)` cancels what is left when the grace ends, and clients read a bare
cancellation. The server calls `cut()` at the end of its grace instead: each ProviderService call
still in flight is cancelled from inside, and ends UNAVAILABLE with a message that tells the
client the request may be retried (another replica will take it). gRPC's own stop comes a moment
later, only as a backstop.

A stream is never cancelled while gRPC writes one of its messages (the cancel would land in gRPC's
own code and end the call without our status): one caught writing is cut when the write is done.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, cast

import grpc

PROVIDER_SERVICE = "/provider_gateway.v1.ProviderService/"
SHUTDOWN_MESSAGE = "server shutting down: the request was cut short and may be retried"
type Handler = grpc.RpcMethodHandler[Any, Any]


class ShutdownCut:
    def __init__(self) -> None:
        self._calls: set[asyncio.Task[Any]] = set()  # the tasks of ProviderService calls in flight
        self._writing: set[asyncio.Task[Any]] = set()  # streams whose message gRPC is writing now
        self._cutting = False

    def cut(self) -> int:
        """Cut every call still in flight; returns how many."""
        self._cutting = True
        for task in self._calls - self._writing:  # the writing ones cut themselves after the write
            task.cancel()
        return len(self._calls)

    async def _ended_by_cut(
        self, task: asyncio.Task[Any], context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        """In a call's CancelledError: a cut ends it UNAVAILABLE; a client's cancel goes on as one."""
        if not self._cutting:
            raise asyncio.CancelledError
        task.uncancel()
        await context.abort(grpc.StatusCode.UNAVAILABLE, SHUTDOWN_MESSAGE)

    def wrap(self, method: str, handler: Handler) -> Handler:
        """A handler wrapper (server/edge.py composes it once per method): ProviderService only."""
        if not method.startswith(PROVIDER_SERVICE):
            return handler
        calls, writing = self._calls, self._writing
        if handler.unary_stream is not None:
            # Every ProviderService stream is an async generator (grpc's stubs type it as sync).
            streamed = cast("Callable[..., AsyncGenerator[Any, None]]", handler.unary_stream)

            async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
                task = asyncio.current_task()
                assert task is not None
                calls.add(task)
                try:
                    async with contextlib.aclosing(streamed(request, context)) as items:
                        async for item in items:
                            writing.add(task)
                            try:
                                yield item
                            finally:
                                writing.discard(task)
                            if self._cutting:  # the cut came while gRPC wrote this message
                                await context.abort(grpc.StatusCode.UNAVAILABLE, SHUTDOWN_MESSAGE)
                except asyncio.CancelledError:
                    await self._ended_by_cut(task, context)
                finally:
                    calls.discard(task)

            return grpc.unary_stream_rpc_method_handler(
                stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_unary is not None:
            answered: Callable[..., Awaitable[Any]] = handler.unary_unary

            async def unary(request: Any, context: Any) -> Any:
                task = asyncio.current_task()
                assert task is not None
                calls.add(task)
                try:
                    return await answered(request, context)
                except asyncio.CancelledError:
                    await self._ended_by_cut(task, context)
                finally:
                    calls.discard(task)

            return grpc.unary_unary_rpc_method_handler(
                unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler
