"""The Python client asks for `StreamOptions.batch_events` and reads a batch's events as if each
had come in its own message: the same typed events, the same `final()` answer (reasoning with its
issuer, text with logprobs, tool calls rebuilt from fragments, usage made from the finish, raw
content), a stream whose finish is inside a batch is whole, and one that ends after a batch without
its finish was cut. A scripted server sends both forms (batch_support.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from batch_support import BATCHED, CUT, ONE_PER_MESSAGE, SHORT, SHORT_BATCHED, SIGNATURE, USAGE
from client_fakes import scripted_gateway

from provider_gateway.v1 import provider_service_pb2 as pb
from provider_gateway_client import (
    AsyncChatStream,
    ChatResult,
    Event,
    GatewayClient,
    SyncGatewayClient,
    ToolCall,
    UnavailableError,
    text_of,
    unbatched,
)
from provider_gateway_client import pb as client_pb


async def read_async(
    script: Sequence[pb.StreamEvent], complete: bool = False
) -> tuple[list[Event], ChatResult]:
    async with scripted_gateway(script) as (target, _), GatewayClient(target, timeout=10) as client:
        stream = client.complete_stream("m/x", "x") if complete else client.chat_stream("m/x", "x")
        events = [event async for event in stream]
        return events, await stream.final()


def read_sync(target: str) -> tuple[list[Event], ChatResult]:
    with SyncGatewayClient(target, timeout=10) as client:
        stream = client.chat_stream("m/x", "x")
        return list(stream), stream.final()


async def test_a_batched_stream_gives_what_one_event_per_message_gives() -> None:
    one_per_message = await read_async(ONE_PER_MESSAGE)
    batched = await read_async(BATCHED)
    async with scripted_gateway(BATCHED) as (target, _):
        batched_sync = await asyncio.to_thread(read_sync, target)
    assert batched == batched_sync == one_per_message
    _, answer = batched
    assert answer.text == "Hello there"
    assert answer.logprobs == tuple(ONE_PER_MESSAGE[2].text_delta.logprobs)
    assert [(p.text, p.signature, p.issuer) for p in answer.reasoning_parts] == [
        ("Checking the weather.", SIGNATURE, "gemini")
    ]
    assert answer.tool_calls == (ToolCall("call_1", "get_weather", {"city": "Paris"}, '{"city": "Paris"}'),)
    assert answer.usage is not None
    assert (answer.usage.input_tokens, answer.usage.output_tokens) == (
        USAGE.input_tokens,
        USAGE.output_tokens,
    )
    assert answer.finish is not None
    assert answer.finish.reason == "tool_calls"
    assert [c.type for c in answer.raw_content] == ["reference"]


async def test_a_batch_holding_the_finish_completes_a_short_answer() -> None:
    for complete in (False, True):
        events, answer = await read_async(SHORT_BATCHED, complete)
        assert (events, answer) == await read_async(SHORT, complete)
        assert answer.text == "Hi"
        assert answer.finish is not None
        assert answer.finish.reason == "stop"
        assert answer.usage is not None
        assert answer.usage.total_tokens == USAGE.total_tokens


async def show(stream: AsyncChatStream, shown: list[str]) -> None:
    async for piece in stream.text_stream:
        shown.append(piece)


async def test_a_batch_then_the_end_without_a_finish_was_cut() -> None:
    """Its text is shown, then the stream fails; `final()` never passes it off as the whole."""
    shown: list[str] = []
    async with scripted_gateway(CUT) as (target, service):
        async with GatewayClient(target, max_retries=2, timeout=10) as client:
            stream = client.chat_stream("m/x", "x")
            with pytest.raises(UnavailableError) as in_async:
                await show(stream, shown)
            with pytest.raises(UnavailableError):
                await stream.final()

        def use() -> None:
            with SyncGatewayClient(target, max_retries=2, timeout=10) as sync_client:
                held = sync_client.chat_stream("m/x", "x")
                for piece in held.text_stream:
                    shown.append(piece)
                held.final()

        with pytest.raises(UnavailableError) as in_sync:
            await asyncio.to_thread(use)
    assert shown == ["Hello", " there"] * 2
    assert in_async.value.details == in_sync.value.details == "stream ended without a finish"
    assert service.streams == 2  # its text was shown: never retried


async def test_streams_ask_for_batches_unless_the_caller_set_stream_options() -> None:
    own = client_pb.StreamOptions(usage_in_finish=True)
    async with scripted_gateway(SHORT) as (target, service), GatewayClient(target, timeout=10) as client:
        await client.chat_stream("m/x", "x").final()
        await client.complete_stream("m/x", "x").final()
        await client.chat_stream("m/x", "x", stream_options=own).final()

        def use() -> None:
            with SyncGatewayClient(target, timeout=10) as sync_client:
                sync_client.complete_stream("m/x", "x").final()

        await asyncio.to_thread(use)
    asked = [(r.stream_options.usage_in_finish, r.stream_options.batch_events) for r in service.requests]
    assert asked == [(True, True), (True, True), (True, False), (True, True)]
    assert [type(r) for r in service.requests] == [
        pb.ChatRequest,
        pb.CompleteRequest,
        pb.ChatRequest,
        pb.CompleteRequest,
    ]


def test_protobuf_messages_read_with_their_batches_flattened() -> None:
    """For code that reads the generated stub itself."""
    batched = [client_pb.StreamEvent.FromString(e.SerializeToString()) for e in BATCHED]
    flattened = [inner.SerializeToString() for event in batched for inner in unbatched(event)]
    assert flattened == [e.SerializeToString() for e in ONE_PER_MESSAGE]
    assert text_of(batched) == "Hello there"
