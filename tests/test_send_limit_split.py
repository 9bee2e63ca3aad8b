"""A stream's deltas never outgrow [server] max_message_bytes (server/split_deltas.py): a burst of
small tokens merged into one delta, or one huge upstream event, reaches the client as several
deltas of the same kind, each message within the limit, and the accumulated text, reasoning and
tool-call arguments are byte-identical to the upstream's."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from conftest import run_gateway
from upstream_support import chat_stream
from vendor_cases import chat_request, weather_tool

from provider_gateway.fakes import FakeUpstream, Reply
from provider_gateway.server.split_deltas import chunks
from provider_gateway.v1 import provider_service_pb2 as pb

LIMIT = 4096
# Characters of one to four UTF-8 bytes, so that cuts fall at every offset inside a sequence.
MIXED = "a é 漢 😀 "
OPENAI = '[providers.o]\nkind = "openai"\nbase_url = "{url}/v1"\napi_key_env = "PG_X_KEY"\n'
ANTHROPIC = '[providers.a]\nkind = "anthropic"\nbase_url = "{url}"\napi_key_env = "PG_X_KEY"\n'


def server_table(coalesce: bool = True) -> str:
    return f"[server]\nmax_message_bytes = {LIMIT}\ncoalesce_deltas = {str(coalesce).lower()}\n"


def openai_chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "c", "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def one_read_sse(chunks_: list[dict[str, Any]]) -> Reply:
    """The whole stream in one write, as an upstream that answers faster than it is read."""
    body = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks_) + b"data: [DONE]\n\n"
    return Reply(chunks=[body], content_type="text/event-stream")


def anthropic_frame(kind: str, body: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **body}) + b"\n\n"


def block_delta(index: int, delta: dict[str, Any]) -> bytes:
    return anthropic_frame("content_block_delta", {"index": index, "delta": delta})


def anthropic_reasoning(thinking: list[str], signature: str, text: str) -> list[bytes]:
    """An Anthropic stream: a thinking block of `thinking` deltas closed by `signature`, then `text`."""
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5"}
    message |= {"content": [], "stop_reason": None, "stop_sequence": None}
    message["usage"] = {"input_tokens": 5, "output_tokens": 1}
    thinking_block = {"type": "thinking", "thinking": ""}
    return [
        anthropic_frame("message_start", {"message": message}),
        anthropic_frame("content_block_start", {"index": 0, "content_block": thinking_block}),
        *(block_delta(0, {"type": "thinking_delta", "thinking": t}) for t in thinking),
        block_delta(0, {"type": "signature_delta", "signature": signature}),
        anthropic_frame("content_block_stop", {"index": 0}),
        anthropic_frame("content_block_start", {"index": 1, "content_block": {"type": "text", "text": ""}}),
        block_delta(1, {"type": "text_delta", "text": text}),
        anthropic_frame("content_block_stop", {"index": 1}),
        anthropic_frame(
            "message_delta", {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}}
        ),
        anthropic_frame("message_stop", {}),
    ]


async def served(table: str, reply: Reply, path: str, request: pb.ChatRequest) -> list[pb.StreamEvent]:
    """The messages of one ChatStream through the gateway; the stream must end OK."""
    async with FakeUpstream() as fake:
        fake.script(path, reply)
        async with run_gateway(table.format(url=fake.url)) as gateway:
            got = await chat_stream(gateway.stub, request)
    assert got.error is None, got.error
    assert got.events[-1].HasField("finish")
    for event in got.events:
        assert event.ByteSize() <= LIMIT
    return got.events


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PG_X_KEY", "k")


async def test_a_burst_of_small_tokens_arrives_split_within_the_limit() -> None:
    tokens = [MIXED[i % len(MIXED)] + str(i) for i in range(3000)]
    reply = one_read_sse([*(openai_chunk({"content": t}) for t in tokens), openai_chunk({}, "stop")])
    events = await served(server_table() + OPENAI, reply, "/v1/chat/completions", chat_request("o/m"))
    texts = [e.text_delta.text for e in events if e.HasField("text_delta")]
    assert "".join(texts) == "".join(tokens)
    assert len(texts) > 1


@pytest.mark.parametrize("coalesce", [True, False])
async def test_one_upstream_text_event_over_the_limit_arrives_split(coalesce: bool) -> None:
    huge = MIXED * 2000  # about 26 KB in one event
    reply = one_read_sse([openai_chunk({"content": huge}), openai_chunk({}, "stop")])
    events = await served(server_table(coalesce) + OPENAI, reply, "/v1/chat/completions", chat_request("o/m"))
    texts = [e.text_delta.text for e in events if e.HasField("text_delta")]
    assert "".join(texts) == huge
    assert len(texts) > 1


async def test_reasoning_arrives_split_and_its_signature_closes_the_block_after_all_its_text() -> None:
    thinking = [MIXED[i % len(MIXED)] + str(i) for i in range(3000)]
    frames = anthropic_reasoning(thinking, signature="sig-1", text="Sunny.")
    reply = Reply(chunks=[b"".join(frames)], content_type="text/event-stream")
    request = chat_request(
        "a/claude-sonnet-4-5", reasoning=pb.ReasoningOptions(enabled=True, budget_tokens=2048)
    )
    events = await served(server_table() + ANTHROPIC, reply, "/v1/messages", request)
    reasoning = [e.reasoning_delta for e in events if e.HasField("reasoning_delta")]
    assert "".join(r.text for r in reasoning) == "".join(thinking)
    assert len(reasoning) > 1
    assert [r.signature for r in reasoning] == [""] * (len(reasoning) - 1) + ["sig-1"]
    assert "".join(e.text_delta.text for e in events if e.HasField("text_delta")) == "Sunny."


async def test_tool_call_arguments_arrive_split_within_the_limit() -> None:
    """Arguments just under the limit (the call's end carries them whole, so a call must fit the
    limit): their deltas, merged from a burst, arrive in pieces with room for the other fields."""
    value = (MIXED * 400)[:2250]  # about 3.5 KB: over the text bound, the whole call within the limit
    arguments = orjson.dumps({"city": value}).decode()
    pieces = [arguments[i : i + 7] for i in range(0, len(arguments), 7)]
    start = {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    chunks_ = [
        openai_chunk({"tool_calls": [start]}),
        *(openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}) for p in pieces),
        openai_chunk({}, "tool_calls"),
    ]
    request = chat_request("o/m", tools=[weather_tool()])
    events = await served(server_table() + OPENAI, one_read_sse(chunks_), "/v1/chat/completions", request)
    deltas = [e.tool_call_delta.arguments_delta for e in events if e.HasField("tool_call_delta")]
    assert "".join(deltas) == arguments
    assert len(deltas) > 1
    ends = [e.tool_call_end.call for e in events if e.HasField("tool_call_end")]
    assert [c.arguments_json for c in ends] == [arguments]


@pytest.mark.parametrize("bound", range(4, 13))
def test_pieces_end_on_character_boundaries_and_join_to_the_text(bound: int) -> None:
    text = MIXED * 7
    pieces = chunks(text, bound)
    assert "".join(pieces) == text
    assert all(0 < len(p.encode()) <= bound for p in pieces)
