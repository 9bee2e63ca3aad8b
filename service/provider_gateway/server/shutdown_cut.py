"""Calls still running when the drain grace ends get a status that says why, not "Cancelling all calls".

`grpc.aio.Server.stop(grace)` cancels what is left when the grace ends, and clients read a bare
cancellation. The server calls `cut()` at the end of its grace instead: each ProviderService call
still in flight is cancelled from inside, and ends UNAVAILABLE with a message that tells the
client the request may be retried (another replica will take it). gRPC's own stop comes a moment
later, only as a backstop.

A stream is never cancelled while gRPC writes one of its messages (the cancel would land in gRPC's
own code and end the call without our status): one caught writing is cut when the write is done.
The server's edge (server/edge.py) runs the calls: it enters each one here, marks its writes and
asks `ended_by_cancel` what a cancellation means.
"""

from __future__ import annotations

import asyncio
from typing import Any, NoReturn

import grpc

SHUTDOWN_MESSAGE = "server shutting down: the request was cut short and may be retried"


class Call:
    """A ProviderService call in flight: its task, and whether gRPC is writing one of its messages."""

    __slots__ = ("task", "writing")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.writing = False  # set by the edge around each yield: two stores, no set operations


class ShutdownCut:
    def __init__(self) -> None:
        self._calls: set[Call] = set()
        self.cutting = False

    def cut(self) -> int:
        """Cut every call still in flight; returns how many."""
        self.cutting = True
        for call in self._calls:
            if not call.writing:  # the writing ones cut themselves after the write
                call.task.cancel()
        return len(self._calls)

    def enter(self) -> Call:
        """The running call (the current task), in flight until `leave`."""
        task = asyncio.current_task()
        assert task is not None
        call = Call(task)
        self._calls.add(call)
        return call

    def leave(self, call: Call) -> None:
        self._calls.discard(call)

    async def ended_by_cancel(self, call: Call, context: grpc.aio.ServicerContext[Any, Any]) -> NoReturn:
        """In a call's CancelledError: a cut ends it UNAVAILABLE; a client's cancel goes on as one."""
        if not self.cutting:
            raise asyncio.CancelledError
        call.task.uncancel()
        await self.end(context)

    @staticmethod
    async def end(context: grpc.aio.ServicerContext[Any, Any]) -> NoReturn:
        """End the call as cut (a stream the cut found writing, once the write is done)."""
        await context.abort(grpc.StatusCode.UNAVAILABLE, SHUTDOWN_MESSAGE)
