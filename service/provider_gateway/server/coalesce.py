"""Adaptive coalescing of a stream's deltas, with no added delay.

A task reads the router's events into a bounded buffer while the gRPC side writes; each write takes
every event already in hand and merges runs of consecutive deltas of one kind (text, reasoning of
one block, one tool call's arguments) into one message. Nothing ever waits for more data in
order to merge: when the writer is idle a lone token goes out at once, so at light load every
token is its own message and time to first token is unchanged, while under load, when writes
queue behind each other, the number of messages per stream (about 70 us of grpc.aio each) falls by
itself. The accumulated text, reasoning and tool-call arguments are the same either way.

Half of a UTF-16 surrogate pair that ends a text or reasoning delta (an upstream that escapes an
emoji's halves in two events, server/well_formed.py) is the one thing held back: that character
alone, until the next take, which sends it with the delta of its kind that follows (the pair
becomes the emoji, as a UTF-16 client joining the SDK's deltas sees it) or alone (U+FFFD) before
any other event, the end or an error. Everything before it in the delta goes at once.

The writer takes events in the servicer's own loop (`Relay`: `arrival`, `take`, `end`, `close`)
rather than from a generator between the two: an async generator's hop costs about 2.4k
instructions per message, and its creation and closing about 15k more per stream (issue 15).
`relayed` is that loop as a generator, for callers that want one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncGenerator, Awaitable
from typing import Protocol, cast

from provider_gateway.domain import (
    GatewayEvent,
    ReasoningDelta,
    TextDelta,
    TextDeltaWithLogprobs,
    ToolCallDelta,
)
from provider_gateway.routing.attempt import CURRENT_ATTEMPT
from provider_gateway.wire.merge import merge_deltas

# Events read ahead of the writer: enough to merge a burst, few enough that a client that stops
# reading soon stops the upstream read too (HTTP flow control does the rest).
READ_AHEAD = 64
_END = object()
DELTAS = (TextDelta, ReasoningDelta, ToolCallDelta)  # what merging joins (wire/merge.py)


def _ends_in_first_half(event: object) -> bool:
    """Whether `event` is a plain text delta, or a reasoning delta that leaves its block open, ending
    in the first half of a surrogate pair (ASCII text, nearly every token, is answered by one C call;
    a block's closing delta keeps its text, which belongs with its signature)."""
    if type(event) is TextDelta or (type(event) is ReasoningDelta and not event.closes_block):
        text = event.text
        return not text.isascii() and "\ud800" <= text[-1:] <= "\udbff"
    return False


class Relay(Protocol):
    """A stream's events as its writer takes them. The loop (as in `relayed`):
    `while not relay.ended`: await `arrival()` when nothing is in hand (`items` empty), then write
    each event of `take()`; after it `end()` raises the error that ended the events, if one did;
    `close()` always (it closes the events and their upstream call)."""

    items: list[object]
    ended: bool

    def answering(self) -> str:
        """The deployment key of the attempt whose signed reasoning the writer has taken ("" when
        unknown): once output started no other attempt follows, so it is the answer's."""
        ...

    def arrival(self) -> Awaitable[None]: ...
    def take(self) -> list[GatewayEvent]: ...
    def end(self) -> None: ...
    async def close(self) -> None: ...


def answering_key() -> str:
    """The deployment key of the router's attempt in progress in this task's context, if any."""
    attempt = CURRENT_ATTEMPT.get()
    return attempt.deployment if attempt is not None else ""


def _neighbouring_deltas(items: list[object]) -> bool:
    """Whether two deltas follow each other in `items`: else merging gives the same events back.
    Under load a stream's batch is often one read's text (the adapter merged it), its usage and
    the finish: this look costs a fraction of forming the runs (issue 15)."""
    previous = False
    for item in items:
        delta = isinstance(item, DELTAS)
        if delta and previous:
            return True
        previous = delta
    return False


class _Hand:
    """The events read and not yet taken, ended by `_END` or the exception that ended them."""

    __slots__ = ("_error", "_half", "_half_of_reasoning", "ended", "items")

    def __init__(self) -> None:
        self.items: list[object] = []
        self.ended = False
        self._error: Exception | None = None
        self._half = ""  # the first half of a surrogate pair held back from the last take
        self._half_of_reasoning = False  # held from reasoning (else from text)

    def _taken(self, items: list[object]) -> list[GatewayEvent]:
        last = items[-1]
        if last is _END or isinstance(last, Exception):
            self.ended = True
            self._error = None if last is _END else cast(Exception, last)
            items.pop()
        events = cast("list[GatewayEvent]", items)  # (a string: no alias object made per take)
        if len(events) > 1 and _neighbouring_deltas(items):
            events = merge_deltas(events)
        if self._half or (events and _ends_in_first_half(events[-1])):
            return self._paired(events)
        return events

    def _paired(self, events: list[GatewayEvent]) -> list[GatewayEvent]:
        """`events` with the half held from the last take first (joined to a delta of its kind that
        follows: text, its log-probabilities kept, or reasoning of the same block), and a trailing
        first half held back unless the events have ended."""
        if half := self._half:
            first = events[0] if events else None
            if self._half_of_reasoning:
                if type(first) is ReasoningDelta:
                    events[0] = dataclasses.replace(first, text=half + first.text)
                else:
                    events.insert(0, ReasoningDelta(half))
            elif type(first) is TextDelta:
                events[0] = TextDelta(half + first.text)
            elif type(first) is TextDeltaWithLogprobs:
                events[0] = TextDeltaWithLogprobs(half + first.text, first.logprobs)
            else:
                events.insert(0, TextDelta(half))
            self._half = ""
        if not self.ended and events and _ends_in_first_half(last := events[-1]):
            kept = cast(TextDelta | ReasoningDelta, last)
            self._half, self._half_of_reasoning = kept.text[-1], type(kept) is ReasoningDelta
            if len(kept.text) > 1:
                events[-1] = dataclasses.replace(kept, text=kept.text[:-1])
            else:
                events.pop()
        return events

    def end(self) -> None:
        if self._error is not None:  # after every event that preceded it
            raise self._error


class ReadAhead(_Hand):
    """Coalescing: a task reads `events` into the hand while the writer writes. A buffer between
    one reader and one writer that makes a future only when a side must wait. (An asyncio.Queue made
    a coroutine for every put and every get, and the writer took a batch one get at a time.)"""

    __slots__ = ("_answering", "_arrival", "_events", "_loop", "_reader", "_room")

    def __init__(self, events: AsyncGenerator[GatewayEvent, None]) -> None:
        super().__init__()
        self._events = events
        self._answering = ""
        self._loop = asyncio.get_running_loop()
        self._arrival: asyncio.Future[None] | None = None  # the writer waits for an event
        self._room: asyncio.Future[None] | None = None  # the reader waits for the writer to take
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        try:
            async for event in self._events:
                # The router's attempt is set in this task's context only until it ends, which may
                # be before the writer takes the event: noted here, for block-closing reasoning only.
                if type(event) is ReasoningDelta and event.closes_block:
                    self._answering = answering_key()
                room = self._put(event)
                if room is not None:
                    await room
            self._put(_END)
        except Exception as exc:  # handed to the writer, after what came before it
            self._put(exc)
        except asyncio.CancelledError:
            # The writer cancels the reader only once it stops reading. Any other cancel leaking up
            # from below would leave the writer waiting for ever: it gets an error instead (a bug:
            # INTERNAL, with an incident id in the log), and the client a status.
            self._put(RuntimeError("the stream's reader was cancelled inside the gateway"))
            raise

    def _put(self, item: object) -> asyncio.Future[None] | None:
        """Hand `item` to the writer; a future to await before reading on when READ_AHEAD are in hand."""
        self.items.append(item)
        arrival, self._arrival = self._arrival, None
        if arrival is not None and not arrival.done():
            arrival.set_result(None)
        if len(self.items) < READ_AHEAD:
            return None
        self._room = self._loop.create_future()
        return self._room

    def answering(self) -> str:
        return self._answering

    def arrival(self) -> asyncio.Future[None]:
        """Resolved when the reader puts the next event (await only when nothing is in hand)."""
        self._arrival = self._loop.create_future()
        return self._arrival

    def take(self) -> list[GatewayEvent]:
        """Everything in hand, in order, runs of deltas merged."""
        items, self.items = self.items, []
        room, self._room = self._room, None
        if room is not None and not room.done():
            room.set_result(None)
        if len(items) == 1 and items[0] is not _END and not isinstance(items[0], Exception):
            events = cast("list[GatewayEvent]", items)
            if self._half or _ends_in_first_half(events[0]):
                return self._paired(events)
            return events  # a lone event, the light-load case (inline)
        return self._taken(items)

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self._events.aclose()


class OneByOne(_Hand):
    """Coalescing off ([server] coalesce_deltas = false): one message per event, each read when
    the writer asks for it."""

    __slots__ = ("_events",)

    def __init__(self, events: AsyncGenerator[GatewayEvent, None]) -> None:
        super().__init__()
        self._events = events

    def answering(self) -> str:
        return answering_key()  # read in this task, which the router's attempt runs in

    async def arrival(self) -> None:
        try:
            self.items.append(await anext(self._events))
        except StopAsyncIteration:
            self.items.append(_END)
        except Exception as exc:
            self.items.append(exc)

    def take(self) -> list[GatewayEvent]:
        items, self.items = self.items, []
        return self._taken(items)

    async def close(self) -> None:
        await self._events.aclose()


async def relayed(relay: Relay) -> AsyncGenerator[GatewayEvent, None]:
    """The events `relay` hands its writer, as a generator. Closing this closes the relay (and its
    upstream call); an error from the events comes after every event that preceded it."""
    try:
        while not relay.ended:
            if not relay.items:
                await relay.arrival()
            for event in relay.take():
                yield event
        relay.end()
    finally:
        await relay.close()


def coalesced(events: AsyncGenerator[GatewayEvent, None]) -> AsyncGenerator[GatewayEvent, None]:
    """`events`, read ahead and merged as described above (the reader starts at once)."""
    return relayed(ReadAhead(events))
