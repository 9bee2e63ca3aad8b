"""Stream helpers in the manner of the official SDKs' `messages.stream()`:

    with gateway.chat_stream("mock/echo", "Hi") as stream:
        for text in stream.text_stream:
            print(text, end="")
        result = stream.final()          # the accumulated ChatResult

Iterating gives typed events, one by one even when the gateway sent several as one batch
(`StreamOptions.batch_events`, which the clients ask for); `final()` (alias `get_final_message()`)
reads what is left and returns the whole answer, which always has its `finish`. Leaving a loop
early (`break`, `return`, an exception), leaving the block, or `close()` / `aclose()` (from any
thread or task) cancels the call, which stops the provider's work; `final()` then raises CANCELLED
rather than return part of an answer as the whole. A failed stream raises a typed `GatewayError`,
and so does one that ends without its `finish` (UNAVAILABLE: the proto makes `finish` the last
event of every successful stream, batched or not); one that failed before its first event is
retried as `max_retries` allows, since nothing can be shown twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator
from typing import Any

import grpc

from provider_gateway_client.errors import GatewayError, UnavailableError, gateway_error
from provider_gateway_client.events import Event, Finished, Text, TypedEvents
from provider_gateway_client.results import Accumulator, ChatResult
from provider_gateway_client.retries import RetryPolicy, remaining

# Starts one attempt of the call, given the seconds left of the call's deadline.
Start = Callable[[float | None], Any]
# The retry policy reads "Locally cancelled" as a cancel of this process's own: never retried.
CLOSED = "Locally cancelled: the stream was closed"
LEFT_EARLY = "Locally cancelled: the stream was closed before its finish"
NO_FINISH = "stream ended without a finish"


class _Current:
    """What a stream's attempts are waiting on (the call, or the pause before a retry), shared
    with the stream so that `close()` can cancel it from another thread or task: the generator
    itself cannot be closed while another thread or task is inside it."""

    __slots__ = ("closing", "waiting_on")

    def __init__(self) -> None:
        self.closing = threading.Event()
        self.waiting_on: Any = None  # anything with a thread-safe `cancel()`

    def wait_on(self, cancellable: Any) -> None:
        self.waiting_on = cancellable
        if self.closing.is_set():  # closed just before: its cancel did not see this one
            cancellable.cancel()

    def cancel(self) -> None:
        self.closing.set()
        waiting_on = self.waiting_on
        if waiting_on is not None:
            waiting_on.cancel()


class AsyncChatStream:
    """An async stream: `async with` / `async for`; see the module docstring."""

    def __init__(self, start: Start, policy: RetryPolicy, deadline: float | None) -> None:
        self._accumulator = Accumulator()
        self._current = _Current()
        self._error: GatewayError | None = None
        self._events = _async_attempts(start, policy, deadline, self._current)

    async def __aiter__(self) -> AsyncIterator[Event]:
        # A loop left early drops this generator, which asyncio then closes: that cancels the call.
        try:
            async for event in self._events:
                self._accumulator.add(event)
                yield event
        except GatewayError as error:
            self._error = error
            raise
        finally:
            await self.aclose()

    @property
    async def text_stream(self) -> AsyncIterator[str]:
        """Only the answer text, piece by piece (the other events still count for `final()`)."""
        try:
            async for event in self:
                if isinstance(event, Text):
                    yield event.text
        finally:
            await self.aclose()

    async def final(self) -> ChatResult:
        """Reads the rest of the stream; the whole answer: text, reasoning, tool calls, usage, finish."""
        async for _ in self:
            pass
        return _whole(self._accumulator, self._error)

    get_final_message = final

    async def aclose(self) -> None:
        """Cancels the call (a no-op after its end); safe while another task reads the stream."""
        self._current.cancel()
        # "already running" (read in another task): the cancel above ends that read.
        with contextlib.suppress(RuntimeError):
            await self._events.aclose()

    async def __aenter__(self) -> AsyncChatStream:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()


class ChatStream:
    """A blocking stream: `with` / `for`; see the module docstring."""

    def __init__(self, start: Start, policy: RetryPolicy, deadline: float | None) -> None:
        self._accumulator = Accumulator()
        self._current = _Current()
        self._error: GatewayError | None = None
        self._events = _attempts(start, policy, deadline, self._current)

    def __iter__(self) -> Iterator[Event]:
        # A loop left early drops this generator, which closes it at once: that cancels the call.
        try:
            for event in self._events:
                self._accumulator.add(event)
                yield event
        except GatewayError as error:
            self._error = error
            raise
        finally:
            self.close()

    @property
    def text_stream(self) -> Iterator[str]:
        """Only the answer text, piece by piece (the other events still count for `final()`)."""
        return (event.text for event in self if isinstance(event, Text))

    def final(self) -> ChatResult:
        """Reads the rest of the stream; the whole answer: text, reasoning, tool calls, usage, finish."""
        for _ in self:
            pass
        return _whole(self._accumulator, self._error)

    get_final_message = final

    def close(self) -> None:
        """Cancels the call (a no-op after its end); safe from another thread while one reads."""
        self._current.cancel()
        # "generator already executing" (read in another thread): the cancel above ends that read.
        with contextlib.suppress(ValueError):
            self._events.close()

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _whole(accumulator: Accumulator, error: GatewayError | None) -> ChatResult:
    """The accumulated answer, only when it is whole: a stream without its finish was cut."""
    result = accumulator.result()
    if result.finish is not None:
        return result
    raise error or GatewayError(grpc.StatusCode.CANCELLED, LEFT_EARLY)


def _closed_by_the_stream(current: _Current) -> bool:
    """Whether a CancelledError came from `aclose()` in another task rather than the reader's own
    task being cancelled (which must propagate as such)."""
    task = asyncio.current_task()
    return current.closing.is_set() and not (task is not None and task.cancelling())


# The attempts are module functions, not methods: a generator holding its stream would make a
# cycle, and a stream dropped after `return` from a loop would then cancel only at the next GC.
async def _async_attempts(
    start: Start, policy: RetryPolicy, deadline: float | None, current: _Current
) -> AsyncGenerator[Event]:
    retry = 0
    while True:
        call = start(remaining(deadline))
        current.wait_on(call)  # a cancel from another task ends the read with a CancelledError
        received = finished = False
        events = TypedEvents()
        cause: BaseException | None = None
        try:
            async for raw in call:
                received = True
                for event in events.of(raw):
                    finished = finished or isinstance(event, Finished)
                    yield event
            if finished:
                return
            error: GatewayError = UnavailableError(grpc.StatusCode.UNAVAILABLE, NO_FINISH)
        except grpc.RpcError as exc:
            error, cause = gateway_error(exc), exc
        except asyncio.CancelledError:
            if not _closed_by_the_stream(current):
                raise
            raise GatewayError(grpc.StatusCode.CANCELLED, CLOSED) from None
        finally:
            call.cancel()  # a no-op after a clean end; stops the gateway's work after a `break`
        wait = None if received else policy.wait_before(retry, error, deadline)
        if wait is None:
            raise error from cause
        pause = asyncio.ensure_future(asyncio.sleep(wait))
        current.wait_on(pause)
        try:
            await pause
        except asyncio.CancelledError:
            if not _closed_by_the_stream(current):
                raise
            raise GatewayError(grpc.StatusCode.CANCELLED, CLOSED) from None
        retry += 1


def _attempts(
    start: Start, policy: RetryPolicy, deadline: float | None, current: _Current
) -> Generator[Event]:
    retry = 0
    while True:
        call = start(remaining(deadline))
        current.wait_on(call)  # a cancel from another thread ends the read with "Locally cancelled"
        received = finished = False
        events = TypedEvents()
        cause: BaseException | None = None
        try:
            for raw in call:
                received = True
                for event in events.of(raw):
                    finished = finished or isinstance(event, Finished)
                    yield event
            if finished:
                return
            error: GatewayError = UnavailableError(grpc.StatusCode.UNAVAILABLE, NO_FINISH)
        except grpc.RpcError as exc:
            error, cause = gateway_error(exc), exc
        finally:
            call.cancel()
        wait = None if received else policy.wait_before(retry, error, deadline)
        if wait is None:
            raise error from cause
        if current.closing.wait(wait):
            raise GatewayError(grpc.StatusCode.CANCELLED, CLOSED)
        retry += 1
