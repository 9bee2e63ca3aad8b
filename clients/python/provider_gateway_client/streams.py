"""Stream helpers in the manner of the official SDKs' `messages.stream()`:

    with gateway.chat_stream("mock/echo", "Hi") as stream:
        for text in stream.text_stream:
            print(text, end="")
        result = stream.final()          # the accumulated ChatResult

Iterating gives typed events; `final()` (alias `get_final_message()`) reads what is left and
returns the whole answer. Leaving the block (or `close()`) cancels the call, which stops the
provider's work. A failed stream raises a typed `GatewayError`; one that failed before its first
event is retried as `max_retries` allows, since nothing can be shown twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import grpc

from provider_gateway_client.errors import gateway_error
from provider_gateway_client.events import Event, Text, TypedEvents
from provider_gateway_client.results import Accumulator, ChatResult
from provider_gateway_client.retries import RetryPolicy, remaining

# Starts one attempt of the call, given the seconds left of the call's deadline.
Start = Callable[[float | None], Any]


class AsyncChatStream:
    """An async stream: `async with` / `async for`; see the module docstring."""

    def __init__(self, start: Start, policy: RetryPolicy, deadline: float | None) -> None:
        self._accumulator = Accumulator()
        self._events = _async_attempts(start, policy, deadline)

    def __aiter__(self) -> AsyncChatStream:
        return self

    async def __anext__(self) -> Event:
        event = await self._events.__anext__()
        self._accumulator.add(event)
        return event

    @property
    async def text_stream(self) -> AsyncIterator[str]:
        """Only the answer text, piece by piece (the other events still count for `final()`)."""
        async for event in self:
            if isinstance(event, Text):
                yield event.text

    async def final(self) -> ChatResult:
        """Reads the rest of the stream; the whole answer: text, reasoning, tool calls, usage, finish."""
        async for _ in self:
            pass
        return self._accumulator.result()

    get_final_message = final

    async def aclose(self) -> None:
        await self._events.aclose()

    async def __aenter__(self) -> AsyncChatStream:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()


class ChatStream:
    """A blocking stream: `with` / `for`; see the module docstring."""

    def __init__(self, start: Start, policy: RetryPolicy, deadline: float | None) -> None:
        self._accumulator = Accumulator()
        self._events = _attempts(start, policy, deadline)

    def __iter__(self) -> ChatStream:
        return self

    def __next__(self) -> Event:
        event = next(self._events)
        self._accumulator.add(event)
        return event

    @property
    def text_stream(self) -> Iterator[str]:
        """Only the answer text, piece by piece (the other events still count for `final()`)."""
        return (event.text for event in self if isinstance(event, Text))

    def final(self) -> ChatResult:
        """Reads the rest of the stream; the whole answer: text, reasoning, tool calls, usage, finish."""
        for _ in self:
            pass
        return self._accumulator.result()

    get_final_message = final

    def close(self) -> None:
        self._events.close()

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


# The attempts are module functions, not methods: a generator holding its stream would make a
# cycle, and a stream dropped after `return` from a loop would then cancel only at the next GC.
async def _async_attempts(start: Start, policy: RetryPolicy, deadline: float | None) -> AsyncIterator[Event]:
    retry = 0
    while True:
        call = start(remaining(deadline))
        received = False
        events = TypedEvents()
        try:
            async for raw in call:
                received = True
                for event in events.of(raw):
                    yield event
            return
        except grpc.RpcError as exc:
            error = gateway_error(exc)
            wait = None if received else policy.wait_before(retry, error, deadline)
            if wait is None:
                raise error from exc
        finally:
            call.cancel()  # a no-op after a clean end; stops the gateway's work after a `break`
        await asyncio.sleep(wait)
        retry += 1


def _attempts(start: Start, policy: RetryPolicy, deadline: float | None) -> Iterator[Event]:
    retry = 0
    while True:
        call = start(remaining(deadline))
        received = False
        events = TypedEvents()
        try:
            for raw in call:
                received = True
                yield from events.of(raw)
            return
        except grpc.RpcError as exc:
            error = gateway_error(exc)
            wait = None if received else policy.wait_before(retry, error, deadline)
            if wait is None:
                raise error from exc
        finally:
            call.cancel()
        time.sleep(wait)
        retry += 1
