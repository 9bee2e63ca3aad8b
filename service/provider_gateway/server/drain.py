"""Ending health watches when the server drains, so that a graceful stop waits only for real work.

`grpc.aio.Server.stop(grace)` waits for every in-flight call. A health `Watch` never ends by itself,
so one watching load balancer would hold every shutdown for the whole grace period. At drain time
each watch is let through until it has told its client NOT_SERVING, then it ends with OK.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

WATCH_METHOD = "/grpc.health.v1.Health/Watch"
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# Bound on how long a watch may take to deliver NOT_SERVING before it is ended anyway.
NOTICE_TIMEOUT_S = 1.0
type Handler = grpc.RpcMethodHandler[Any, Any]


class _WatchContext:
    """The real context, noting when NOT_SERVING has been written to the client."""

    def __init__(self, context: Any) -> None:
        self._context = context
        self.told_not_serving = asyncio.Event()

    async def write(self, message: health_pb2.HealthCheckResponse) -> None:
        await self._context.write(message)
        if message.status == NOT_SERVING:
            self.told_not_serving.set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


class DrainInterceptor:
    def __init__(self) -> None:
        self.draining = asyncio.Event()

    def start(self) -> None:
        self.draining.set()

    def wrap(self, method: str, handler: Handler) -> Handler:
        """A handler wrapper (server/edge.py composes it once per method): health watches only."""
        if method != WATCH_METHOD or handler.unary_stream is None:
            return handler
        watch: Callable[..., Any] = handler.unary_stream
        draining = self.draining

        async def watch_until_drained(request: Any, context: Any) -> None:
            proxy = _WatchContext(context)
            task = asyncio.ensure_future(watch(request, proxy))
            drained = asyncio.ensure_future(draining.wait())
            try:
                await asyncio.wait((task, drained), return_when=asyncio.FIRST_COMPLETED)
                if not task.done():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(NOTICE_TIMEOUT_S):
                            await proxy.told_not_serving.wait()
            finally:
                drained.cancel()
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

        return grpc.unary_stream_rpc_method_handler(
            watch_until_drained,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
