"""Adaptive coalescing (server/coalesce.py): deltas already in hand go out as one message, none
is held back (but the first half of a surrogate pair that ends a text or reasoning delta), and what
a client accumulates is the same with coalescing on or off."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncGenerator, Callable
from typing import Any

import orjson
import pytest
from conftest import run_gateway
from test_cross_provider import openai_canonical_chunks
from vendor_cases import WAIT_S, answer_of, chat_request, summarise, weather_tool

from provider_gateway.domain import (
    GatewayEvent,
    ReasoningDelta,
    TextDelta,
    TextDeltaWithLogprobs,
    TokenLogprob,
    ToolCallDelta,
    ToolCallStart,
    Usage,
    UsageEvent,
)
from provider_gateway.fakes import FakeUpstream, Reply
from provider_gateway.server.coalesce import _END, READ_AHEAD, OneByOne, ReadAhead, Relay, coalesced, relayed
from provider_gateway.v1 import provider_service_pb2 as pb
from provider_gateway.wire.merge import merge_deltas


def test_merge_joins_runs_of_one_kind_and_keeps_everything_else() -> None:
    usage = UsageEvent(Usage(1, 2))
    events = [
        TextDelta("a"), TextDelta("b"), usage, TextDelta("c"),
        ReasoningDelta("r1"), ReasoningDelta("r2", signature="s"), ReasoningDelta("r3"),
        ToolCallStart(0, "id", "f"), ToolCallDelta(0, '{"x"'), ToolCallDelta(0, ": 1}"), ToolCallDelta(1, "{}"),
    ]  # fmt: skip
    assert merge_deltas(events) == [
        TextDelta("ab"), usage, TextDelta("c"),
        ReasoningDelta("r1r2", signature="s"),  # the signature closes the block both texts are in
        ReasoningDelta("r3"),  # a new block: never joined across a closing delta
        ToolCallStart(0, "id", "f"), ToolCallDelta(0, '{"x": 1}'), ToolCallDelta(1, "{}"),
    ]  # fmt: skip


def sse(chunks: list[dict[str, Any]]) -> bytes:
    return b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


async def streamed(config: str, request: pb.ChatRequest) -> list[pb.StreamEvent]:
    async with run_gateway(config) as gateway:
        return [e async for e in gateway.stub.ChatStream(request, timeout=WAIT_S)]


@pytest.mark.parametrize("model", ["mock/echo", "mock/reasoner", "mock/tools"])
async def test_the_mock_accumulates_the_same_with_coalescing_on_and_off(model: str) -> None:
    request = chat_request(model, tools=[weather_tool()], reasoning=pb.ReasoningOptions(enabled=True))
    on = await streamed("[providers.mock]\nkind = 'mock'", request)
    off = await streamed("[server]\ncoalesce_deltas = false\n[providers.mock]\nkind = 'mock'", request)
    assert len(on) < len(off)  # the mock's tokens are all in hand at once: fewer messages
    assert answer_of(on) == answer_of(off)


async def test_an_upstream_read_of_many_frames_is_one_message_and_the_same_answer(monkeypatch) -> None:
    """The whole OpenAI stream arrives in one write: text and each tool call's arguments merge."""
    monkeypatch.setenv("PG_X_KEY", "k")
    async with FakeUpstream() as fake:
        body = sse(openai_canonical_chunks("gpt-4o"))
        fake.script("/v1/chat/completions", Reply(chunks=[body], content_type="text/event-stream"))
        fake.script("/v1/chat/completions", Reply(chunks=[body], content_type="text/event-stream"))
        table = f'[providers.o]\nkind = "openai"\nbase_url = "{fake.url}/v1"\napi_key_env = "PG_X_KEY"\n'
        request = chat_request("o/gpt-4o", tools=[weather_tool()])
        on = await streamed(table, request)
        off = await streamed("[server]\ncoalesce_deltas = false\n" + table, request)
    kinds_on = [e.WhichOneof("event") for e in on]
    assert kinds_on.count("text_delta") == 1
    assert kinds_on.count("tool_call_delta") == 1
    assert [e.WhichOneof("event") for e in off].count("text_delta") > 1
    a, b = summarise(on), summarise(off)
    assert (a.text, a.tool_calls, a.usage, a.finish.reason) == (
        b.text,
        b.tool_calls,
        b.usage,
        b.finish.reason,
    )
    assert a.tool_calls  # the canonical answer's call, whole


async def test_a_token_is_never_held_back_while_the_upstream_pauses(monkeypatch) -> None:
    """One token, then the upstream goes quiet: the client has that token before anything else comes."""
    monkeypatch.setenv("PG_X_KEY", "k")
    first = sse([{"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"content": "Hello"}}]}])
    first = first.removesuffix(b"data: [DONE]\n\n")
    async with FakeUpstream() as fake:
        fake.script(
            "/v1/chat/completions", Reply(chunks=[first], content_type="text/event-stream", then="hang")
        )
        table = f'[providers.o]\nkind = "openai"\nbase_url = "{fake.url}/v1"\napi_key_env = "PG_X_KEY"\n'
        async with run_gateway(table) as gateway:
            call = gateway.stub.ChatStream(chat_request("o/m"), timeout=WAIT_S)
            event = await asyncio.wait_for(call.read(), WAIT_S)  # bounded: a held token fails, not hangs
            assert event.text_delta.text == "Hello"
            call.cancel()


async def test_each_message_carries_its_own_token(monkeypatch) -> None:
    """Text deltas are written into one reused StreamEvent (server/convert.py StreamMessages): each
    message the client receives still holds its own token, in order, never a later one."""
    monkeypatch.setenv("PG_X_KEY", "k")
    tokens = [f"t{i} " for i in range(40)]
    chunks = [{"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"content": t}}]} for t in tokens]
    chunks.append({"id": "c", "model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    pieces = [sse([c]).removesuffix(b"data: [DONE]\n\n") for c in chunks] + [b"data: [DONE]\n\n"]
    async with FakeUpstream() as fake:
        fake.script("/v1/chat/completions", Reply(chunks=pieces, content_type="text/event-stream"))
        table = f'[providers.o]\nkind = "openai"\nbase_url = "{fake.url}/v1"\napi_key_env = "PG_X_KEY"\n'
        events = await streamed("[server]\ncoalesce_deltas = false\n" + table, chat_request("o/m"))
    assert [e.text_delta.text for e in events if e.WhichOneof("event") == "text_delta"] == tokens
    assert events[-1].finish.reason == pb.FINISH_REASON_STOP


async def test_a_client_that_stops_reading_stops_the_upstream_read_within_the_read_ahead() -> None:
    """An endless upstream, a client that takes one message and then nothing: the relay reads at
    most READ_AHEAD events beyond what was taken, and closing it closes the upstream."""
    read = 0
    closed = asyncio.Event()

    async def endless() -> AsyncGenerator[GatewayEvent, None]:
        nonlocal read
        try:
            while True:
                read += 1
                yield TextDelta("t")
                await asyncio.sleep(0)
        finally:
            closed.set()

    relay = coalesced(endless())
    first = await anext(relay)
    assert isinstance(first, TextDelta)
    for _ in range(5 * READ_AHEAD):
        await asyncio.sleep(0)
    held = read
    assert held <= len(first.text) + READ_AHEAD + 1  # and the one the reader waits to hand over
    for _ in range(READ_AHEAD):
        await asyncio.sleep(0)
    assert read == held  # waiting for the client, not reading on
    await relay.aclose()
    assert closed.is_set()


async def test_a_cancel_leaking_from_below_ends_the_relay_with_an_error_not_a_hang() -> None:
    """A CancelledError the writer did not ask for (a bug below) must not leave the writer waiting
    for events that never come: it raises, after what came before."""

    async def leaking() -> AsyncGenerator[GatewayEvent, None]:
        yield TextDelta("a")
        raise asyncio.CancelledError

    got: list[GatewayEvent] = []

    async def relay() -> None:
        async for event in coalesced(leaking()):
            got.append(event)

    with pytest.raises(RuntimeError, match="cancelled inside the gateway"):
        await asyncio.wait_for(relay(), WAIT_S)
    assert got == [TextDelta("a")]


def _random_upstream(
    rng: random.Random, kinds: list[Callable[[], GatewayEvent]]
) -> tuple[list[list[GatewayEvent]], ValueError | None, Callable[[], AsyncGenerator[GatewayEvent, None]]]:
    """A random stream: upstream reads of 1-4 events of `kinds`, then an error or a clean end; and
    the generator giving it, a read at a time."""
    reads = [[rng.choice(kinds)() for _ in range(rng.randint(1, 4))] for _ in range(rng.randint(0, 8))]
    failure = ValueError("upstream broke") if rng.random() < 0.5 else None

    async def upstream() -> AsyncGenerator[GatewayEvent, None]:
        for read in reads:
            for event in read:
                yield event
            await asyncio.sleep(0)  # the next upstream read
        if failure is not None:
            raise failure

    return reads, failure, upstream


@pytest.mark.parametrize("seed", range(40))
async def test_both_relays_hand_the_same_events_and_the_same_ending(seed: int) -> None:
    """The servicer takes events in its own loop (coalesce.Relay): read ahead and merged, or one by
    one with coalescing off. For random streams (upstream reads of 1-4 events, an error or a clean
    end) both give the same text and tool arguments, the same other events in order, and the error
    only after every event that preceded it."""
    rng = random.Random(seed)
    kinds = [
        lambda: TextDelta(rng.choice("abc")),
        lambda: ReasoningDelta("r", signature=rng.choice(["", "s"])),
        lambda: ToolCallDelta(rng.randrange(2), "{"),
        lambda: UsageEvent(Usage(1, 2)),
    ]
    reads, failure, upstream = _random_upstream(rng, kinds)

    async def taken(relay: Relay) -> tuple[list[GatewayEvent], BaseException | None]:
        got: list[GatewayEvent] = []
        try:
            async for event in relayed(relay):
                got.append(event)
        except ValueError as exc:
            return got, exc
        return got, None

    merged, merged_end = await taken(ReadAhead(upstream()))
    single, single_end = await taken(OneByOne(upstream()))
    assert single == [event for read in reads for event in read]  # one by one: as they came
    assert _accumulated(merged) == _accumulated(single)
    assert len(merged) <= len(single)
    assert merged_end is single_end is failure


def _accumulated(events: list[GatewayEvent]) -> tuple[str, str, dict[int, str], int]:
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    reasoning = "".join(e.text + e.signature for e in events if isinstance(e, ReasoningDelta))
    arguments: dict[int, str] = {}
    for e in events:
        if isinstance(e, ToolCallDelta):
            arguments[e.index] = arguments.get(e.index, "") + e.arguments_delta
    return text, reasoning, arguments, sum(isinstance(e, UsageEvent) for e in events)


@pytest.mark.parametrize("seed", range(200))
def test_a_batch_without_neighbouring_deltas_is_handed_as_it_is_and_any_batch_as_merged(seed: int) -> None:
    """The writer's batch skips merging when no two deltas follow each other: what it hands is
    always what merging the batch gives."""
    rng = random.Random(seed)
    kinds = [
        lambda: TextDelta(rng.choice("ab")),
        lambda: ReasoningDelta("r", signature=rng.choice(["", "s"])),
        lambda: ToolCallDelta(rng.randrange(2), "{"),
        lambda: ToolCallStart(0, "id", "f"),
        lambda: UsageEvent(Usage(1, 2)),
    ]
    batch: list[GatewayEvent] = [rng.choice(kinds)() for _ in range(rng.randint(0, 6))]
    hand = OneByOne(_nothing())
    taken = hand._taken([*batch, _END])
    assert taken == merge_deltas(batch)
    assert hand.ended


async def _nothing() -> AsyncGenerator[GatewayEvent, None]:
    return
    yield


def _ends_in_first_half(event: GatewayEvent) -> bool:
    """A text delta, or a reasoning delta leaving its block open, ending in a first half."""
    if isinstance(event, ReasoningDelta) and event.closes_block:
        return False
    return isinstance(event, TextDelta | ReasoningDelta) and "\ud800" <= event.text[-1:] <= "\udbff"


@pytest.mark.parametrize("seed", range(60))
async def test_a_first_half_waits_for_the_text_after_it_and_nothing_else_waits(seed: int) -> None:
    """An emoji's halves escaped in two events (server/well_formed.py): the trailing first half of a
    text delta, or of a reasoning delta leaving its block open, waits for the next take. For random streams holding halves, both relays give the upstream's
    text and tool arguments, the other events in their order and the same ending, and a pair is
    never split between two deltas (it would become two U+FFFD)."""
    rng = random.Random(seed)
    kinds = [
        lambda: TextDelta(rng.choice(["a", "\ud83d", "\ude00", "b\ud83d", "\ude00c", "\U0001f600"])),
        lambda: ReasoningDelta(rng.choice(["r", "\ud83d", "\ude00s"]), signature=rng.choice(["", "", "sig"])),
        lambda: ToolCallDelta(rng.randrange(2), "{"),
        lambda: UsageEvent(Usage(1, 2)),
    ]
    reads, failure, upstream = _random_upstream(rng, kinds)

    sent = [event for read in reads for event in read]
    for relay in (ReadAhead(upstream()), OneByOne(upstream())):
        got: list[GatewayEvent] = []
        ending: BaseException | None = None
        try:
            async for event in relayed(relay):
                got.append(event)
        except ValueError as exc:
            ending = exc
        assert ending is failure
        assert _accumulated(got) == _accumulated(sent)
        deltas = TextDelta | ToolCallDelta | ReasoningDelta  # accumulated above
        assert [e for e in got if not isinstance(e, deltas)] == [e for e in sent if not isinstance(e, deltas)]
        signed = [e.signature for e in got if isinstance(e, ReasoningDelta) and e.signature]
        assert signed == [e.signature for e in sent if isinstance(e, ReasoningDelta) and e.signature]
        assert not any(  # a pair split between two messages of its kind: two U+FFFD
            _ends_in_first_half(event)
            and type(after) is type(event)
            and "\udc00" <= after.text[:1] <= "\udfff"
            for event, after in itertools.pairwise(got)
        ), got
        if sent and not _ends_in_first_half(sent[-1]):
            assert got
            assert not _ends_in_first_half(got[-1])


async def test_a_held_half_goes_before_the_next_event_of_another_kind_and_before_an_error() -> None:
    async def upstream() -> AsyncGenerator[GatewayEvent, None]:
        yield TextDelta("hi \ud83d")
        yield ToolCallDelta(0, "{}")
        yield TextDelta("\ud83d")
        raise ValueError("upstream broke")

    relay = OneByOne(upstream())
    takes: list[list[GatewayEvent]] = []
    while not relay.ended:
        if not relay.items:
            await relay.arrival()
        takes.append(relay.take())
    with pytest.raises(ValueError, match="upstream broke"):
        relay.end()
    assert takes == [
        [TextDelta("hi ")],  # at once: only the half waits
        [TextDelta("\ud83d"), ToolCallDelta(0, "{}")],  # alone (U+FFFD at the edge), then the call
        [],  # a lone half token: nothing to send yet
        [TextDelta("\ud83d")],  # the error ended the events: the half goes before it
    ]


async def test_a_held_half_joins_the_log_probabilities_text_after_it() -> None:
    scored = (TokenLogprob("\ude00b", -0.1),)

    async def upstream() -> AsyncGenerator[GatewayEvent, None]:
        yield TextDelta("a\ud83d")
        yield TextDeltaWithLogprobs("\ude00b", scored)

    relay = OneByOne(upstream())
    takes = []
    while not relay.ended:
        if not relay.items:
            await relay.arrival()
        takes.append(relay.take())
    assert takes == [[TextDelta("a")], [TextDeltaWithLogprobs("\ud83d\ude00b", scored)], []]
