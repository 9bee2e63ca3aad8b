"""Token log-probabilities and tool calls within [server] max_message_bytes (server/split_deltas.py).

A merged text delta with top_logprobs = 20 carries about half a kilobyte of entries a token: its
entries, not its text, outgrow the limit. Before, they all rode on the delta's last piece, and the
stream failed RESOURCE_EXHAUSTED; now they are split with the text, in order. A tool call's
arguments sent whole in one upstream event arrive in pieces, and its end, which would repeat them
over the limit, comes without them (clients join the deltas)."""

from __future__ import annotations

from typing import Any

import grpc
import orjson
import pytest
from conftest import run_gateway
from upstream_support import chat_stream
from vendor_cases import chat_request, weather_tool

from provider_gateway.domain import TextDelta, TextDeltaWithLogprobs, TokenLogprob
from provider_gateway.fakes import FakeUpstream, Reply
from provider_gateway.server.split_deltas import FIELD_ROOM, delta_bytes, within
from provider_gateway.v1 import provider_service_pb2 as pb

LIMIT = 4096
MOCK = "[providers.mock.models.long]\ntokens = 600\n"
SMALL = f"[server]\nmax_message_bytes = {LIMIT}\n"


def scored(model: str = "mock/long") -> pb.ChatRequest:
    return chat_request(model, logprobs=pb.LogprobsOptions(enabled=True, top_logprobs=20))


async def streamed(config: str, request: pb.ChatRequest) -> list[pb.StreamEvent]:
    async with run_gateway(config) as gateway:
        got = await chat_stream(gateway.stub, request)
    assert got.error is None, got.error
    assert got.events[-1].HasField("finish")
    return got.events


def text_and_entries(events: list[pb.StreamEvent]) -> tuple[str, list[pb.TokenLogprob]]:
    deltas = [e.text_delta for e in events if e.HasField("text_delta")]
    return "".join(d.text for d in deltas), [entry for d in deltas for entry in d.logprobs]


async def test_a_stream_with_top_logprobs_arrives_whole_within_a_small_limit() -> None:
    split = await streamed(SMALL + MOCK, scored())
    whole = await streamed(MOCK, scored())  # the default limit: nothing split
    assert max(e.ByteSize() for e in split) <= LIMIT
    text, entries = text_and_entries(split)
    assert (text, entries) == text_and_entries(whole)
    assert len(entries) == 600
    assert all(len(e.top_logprobs) == 20 for e in entries)
    # Each entry on the piece whose text its token is: the pieces' texts are their tokens'.
    for event in split:
        if event.text_delta.logprobs:
            assert event.text_delta.text == "".join(e.token for e in event.text_delta.logprobs)


async def test_a_unary_answer_whose_logprobs_outgrow_the_limit_is_refused_as_too_large() -> None:
    """The unary answer's measure (server/answer_size.py) counts its entries: refused with what to do
    instead, not failed by gRPC after the handler has returned."""
    async with run_gateway(SMALL + MOCK) as gateway:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await gateway.stub.Chat(scored(), timeout=20)
        plain = await gateway.stub.Chat(chat_request("mock/long"), timeout=20)  # the same text fits
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "use ChatStream" in (caught.value.details() or "")
    assert plain.ByteSize() <= LIMIT


def entry(token: str, alternatives: int = 20) -> TokenLogprob:
    tops = tuple(
        TokenLogprob(f"{token}~{i}", -float(i), f"{token}~{i}".encode()) for i in range(alternatives)
    )
    return TokenLogprob(token, -0.5, token.encode(), tops)


@pytest.mark.parametrize("limit", [1024, 2048, LIMIT])
def test_entries_whose_tokens_do_not_spell_the_text_are_spread_so_that_each_message_fits(limit: int) -> None:
    """Tokens that do not spell the text (a character split across tokens, a provider's own
    spelling): the text and the entries still arrive whole and in order, every message within the
    limit."""
    tokens = [f"t{i}" for i in range(200)]
    delta = TextDeltaWithLogprobs("é漢😀 " * 300, tuple(entry(t, 5) for t in tokens))
    pieces = within([TextDelta("before"), delta], delta_bytes(limit))
    messages = [pb.TextDelta(text=p.text, logprobs=_entries(p)) for p in pieces]
    assert max(m.ByteSize() for m in messages) + FIELD_ROOM // 2 <= limit
    assert pieces[0] == TextDelta("before")
    assert "".join(p.text for p in pieces[1:]) == delta.text
    assert [e for p in pieces for e in _domain_entries(p)] == list(delta.logprobs)


def _domain_entries(piece: Any) -> tuple[TokenLogprob, ...]:
    return piece.logprobs if isinstance(piece, TextDeltaWithLogprobs) else ()


def _entries(piece: Any) -> list[pb.TokenLogprob]:
    return [
        pb.TokenLogprob(
            token=e.token,
            logprob=e.logprob,
            bytes=e.utf8,
            top_logprobs=[
                pb.TokenLogprob(token=t.token, logprob=t.logprob, bytes=t.utf8) for t in e.top_logprobs
            ],
        )
        for e in _domain_entries(piece)
    ]


def test_a_delta_that_fits_is_passed_on_as_it_is() -> None:
    events = [TextDeltaWithLogprobs("hi", (entry("hi"),)), TextDelta("there")]
    assert within(events, delta_bytes(LIMIT)) is events


def openai_chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "c", "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


async def test_tool_call_arguments_over_the_limit_in_one_upstream_event_arrive_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PG_X_KEY", "k")
    arguments = orjson.dumps({"city": "Paris " * 3000}).decode()  # 18 KB, in one SSE event
    start = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather"}}
    start["function"]["arguments"] = arguments
    chunks = [openai_chunk({"tool_calls": [start]}), openai_chunk({}, "tool_calls")]
    body = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    async with FakeUpstream() as fake:
        fake.script("/v1/chat/completions", Reply(chunks=[body], content_type="text/event-stream"))
        config = (
            SMALL + f'[providers.o]\nkind = "openai"\nbase_url = "{fake.url}/v1"\napi_key_env = "PG_X_KEY"\n'
        )
        events = await streamed(config, chat_request("o/m", tools=[weather_tool()]))
    assert max(e.ByteSize() for e in events) <= LIMIT
    deltas = [e.tool_call_delta for e in events if e.HasField("tool_call_delta")]
    assert len(deltas) > 1
    assert {d.index for d in deltas} == {0}
    assert "".join(d.arguments_delta for d in deltas) == arguments
    (end,) = [e.tool_call_end for e in events if e.HasField("tool_call_end")]
    # Without its arguments, which could not fit beside it: the call's id and name, not cut.
    assert (end.index, end.call.id, end.call.name, end.call.arguments_json, end.call.incomplete) == (
        0,
        "call_1",
        "get_weather",
        "",
        False,
    )
