"""Helpers the per-vendor adapter tests share: drive ChatStream over the real gRPC API against a fake
upstream and summarise what came back."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import grpc
from made_up_ids_support import untagged

from provider_gateway.fakes import conversation as conv
from provider_gateway.fakes.vendor_base import FakeVendor
from provider_gateway.v1 import provider_service_pb2 as pb

# Bounded waits for conditions (never a timing assertion): generous for a loaded machine.
WAIT_S = 20.0
PNG = b"\x89PNG\r\n\x1a\n fake image bytes"


def user(text: str, *extra: pb.ContentPart) -> pb.Message:
    return pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text=text), *extra])


def weather_tool() -> pb.Tool:
    tool = pb.Tool(name=conv.TOOL_NAME, description="Current weather for a city")
    tool.parameters.update(
        {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["city"],
        }
    )
    return tool


def chat_request(model: str, **fields: Any) -> pb.ChatRequest:
    fields.setdefault(
        "messages",
        [
            pb.Message(role=pb.ROLE_SYSTEM, content=[pb.ContentPart(text="Be brief.")]),
            user("Weather in Paris?"),
        ],
    )
    return pb.ChatRequest(model=model, **fields)


def image_request(model: str) -> pb.ChatRequest:
    image = pb.ContentPart(image=pb.Image(data=PNG, media_type="image/png"))
    return chat_request(model, messages=[user("What is in this picture?", image)])


@dataclass
class Summary:
    text: str
    reasoning: str
    signature: str
    tool_calls: list[tuple[str, dict[str, Any]]]
    tool_ids: list[str]
    usage: pb.Usage | None
    finish: pb.Finish | None
    kinds: list[str]


def summarise(events: list[pb.StreamEvent]) -> Summary:
    kinds = [e.WhichOneof("event") or "" for e in events]
    usage = next((e.usage for e in events if e.HasField("usage")), None)
    finish = next((e.finish for e in events if e.HasField("finish")), None)
    ends = [e.tool_call_end.call for e in events if e.HasField("tool_call_end")]
    return Summary(
        text="".join(e.text_delta.text for e in events if e.HasField("text_delta")),
        reasoning="".join(e.reasoning_delta.text for e in events if e.HasField("reasoning_delta")),
        signature="".join(e.reasoning_delta.signature for e in events if e.HasField("reasoning_delta")),
        tool_calls=[(c.name, json.loads(c.arguments_json)) for c in ends],
        tool_ids=[c.id for c in ends],
        usage=usage,
        finish=finish,
        kinds=kinds,
    )


def answer_of(events: list[pb.StreamEvent]) -> tuple[Any, ...]:
    """What a client accumulates from a stream: text, reasoning, tool calls and finish reason
    (the same however the deltas were split into messages)."""
    summary = summarise(events)
    assert summary.finish is not None
    return summary.text, summary.reasoning, summary.tool_calls, summary.finish.reason


async def chat(stub: Any, request: pb.ChatRequest) -> Summary:
    return summarise([e async for e in stub.ChatStream(request, timeout=WAIT_S)])


async def chat_error(stub: Any, request: pb.ChatRequest) -> tuple[grpc.aio.AioRpcError, list[pb.StreamEvent]]:
    """Run a stream expected to fail; return the error and the events seen before it."""
    seen: list[pb.StreamEvent] = []
    try:
        async for event in stub.ChatStream(request, timeout=WAIT_S):
            seen.append(event)
    except grpc.aio.AioRpcError as exc:
        return exc, seen
    raise AssertionError(f"stream did not fail; events: {[e.WhichOneof('event') for e in seen]}")


def retry_after_ms(error: grpc.aio.AioRpcError) -> int | None:
    for key, value in error.trailing_metadata() or ():
        if key == "retry-after-ms":
            return int(value)
    return None


def assert_canonical(summary: Summary, *, tools: bool) -> None:
    assert summary.text == "".join(conv.TEXT_CHUNKS)
    assert summary.tool_calls == ([(conv.TOOL_NAME, conv.TOOL_ARGS)] if tools else [])
    assert summary.usage is not None
    assert (summary.usage.input_tokens, summary.usage.output_tokens) == (
        conv.INPUT_TOKENS,
        conv.OUTPUT_TOKENS,
    )
    assert summary.usage.cache_read_tokens == conv.CACHE_READ_TOKENS
    assert summary.usage.total_tokens == conv.INPUT_TOKENS + conv.OUTPUT_TOKENS
    assert summary.finish is not None
    assert summary.finish.reason == (pb.FINISH_REASON_TOOL_CALLS if tools else pb.FINISH_REASON_STOP)
    assert summary.kinds[-2:] == ["usage", "finish"]


async def cancel_mid_stream(stub: Any, request: pb.ChatRequest, fake: FakeVendor) -> None:
    """Read the first event, cancel the call, and wait for the fake to see its connection close."""
    call = stub.ChatStream(request, timeout=WAIT_S)
    first = await call.read()
    assert first.WhichOneof("event") == "text_delta"
    await asyncio.wait_for(fake.hanging.wait(), WAIT_S)
    call.cancel()
    await asyncio.wait_for(fake.disconnected.wait(), WAIT_S)


async def unary_error(stub: Any, request: pb.ChatRequest) -> grpc.aio.AioRpcError:
    try:
        await stub.Chat(request, timeout=WAIT_S)
    except grpc.aio.AioRpcError as exc:
        return exc
    raise AssertionError("Chat did not fail")


def assert_unary_matches_stream(answer: pb.ChatResponse, summary: Summary) -> None:
    """A unary answer says what the stream of the same conversation said: text, reasoning and its
    signature, tool calls, usage (raw figures too), finish."""
    assert (answer.text, answer.reasoning, answer.reasoning_signature) == (
        summary.text,
        summary.reasoning,
        summary.signature,
    )
    # Made-up ids (Gemini, Ollama) differ between the two answers by their random tag alone.
    calls = [(untagged(c.id), c.name, json.loads(c.arguments_json), c.incomplete) for c in answer.tool_calls]
    ids = [untagged(i) for i in summary.tool_ids]
    assert calls == [(i, n, a, False) for i, (n, a) in zip(ids, summary.tool_calls, strict=True)]
    assert answer.usage == summary.usage
    assert summary.finish is not None
    got, streamed = answer.finish, summary.finish
    assert (got.reason, got.raw_finish_reason, got.provider, got.model, got.response_id) == (
        streamed.reason,
        streamed.raw_finish_reason,
        streamed.provider,
        streamed.model,
        streamed.response_id,
    )
