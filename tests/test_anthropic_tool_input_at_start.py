"""A tool_use block whose `input` comes whole in content_block_start, as Anthropic-compatible hosts
(and whole messages replayed as streams) send it, read by the real gateway from a fake upstream and
compared with the official SDK's MessageStream reading the same bytes: it keeps that input unless
input_json_delta text follows, which then replaces it."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import pytest
from replay.support import KEY, ask, gateway_stream, pieces, replay_gateway

from provider_gateway.domain import TextDelta
from provider_gateway.fakes import Reply
from provider_gateway.providers.anthropic.codec import MessagesStreamDecoder

MESSAGE = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [],
           "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 1}}  # fmt: skip


def tool_use(index: int, call_id: str, given: dict[str, Any]) -> dict[str, Any]:
    block = {"type": "tool_use", "id": call_id, "name": "get", "input": given}
    return {"type": "content_block_start", "index": index, "content_block": block}


def streamed(index: int, partial_json: str) -> dict[str, Any]:
    delta = {"type": "input_json_delta", "partial_json": partial_json}
    return {"type": "content_block_delta", "index": index, "delta": delta}


def stop(index: int) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": index}


def message(*blocks: dict[str, Any]) -> list[dict[str, Any]]:
    end = {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
           "usage": {"output_tokens": 9}}  # fmt: skip
    return [{"type": "message_start", "message": MESSAGE}, *blocks, end, {"type": "message_stop"}]


CASES = {
    "whole at the start": message(tool_use(0, "toolu_1", {"city": "Rome"}), stop(0)),
    "whole at the start, with an empty delta": message(
        tool_use(0, "toolu_1", {"city": "Rome", "days": [1, 2]}), streamed(0, ""), stop(0)
    ),
    "replaced by streamed input": message(
        tool_use(0, "toolu_1", {"city": "Rome"}), streamed(0, '{"city":'), streamed(0, '"Paris"}'), stop(0)
    ),
    "two calls, one of each": message(
        tool_use(0, "toolu_1", {}),
        streamed(0, '{"city":"Oslo"}'),
        stop(0),
        tool_use(1, "toolu_2", {"city": "Rome"}),
        stop(1),
    ),
}


def sse(events: list[dict[str, Any]]) -> Reply:
    text = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)
    return Reply(status=200, chunks=pieces(text.encode()), content_type="text/event-stream")


@pytest.mark.parametrize("events", CASES.values(), ids=CASES.keys())
async def test_tool_input_as_the_sdk_reads_it(events: list[dict[str, Any]]) -> None:
    async with replay_gateway("anthropic") as (fake, stub):
        fake.script("/v1/messages", sse(events), sse(events))
        ours, error = await gateway_stream(stub, ask("anthropic/claude-sonnet-4-5"))
        client = anthropic.AsyncAnthropic(base_url=fake.url, api_key=KEY, max_retries=0)
        async with client.messages.stream(
            model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "x"}]
        ) as stream:
            final = await stream.get_final_message()
    theirs = [(b.id, b.name, b.input) for b in final.content if b.type == "tool_use"]
    assert error is None, error.details()
    assert ours.tool_calls == theirs


def test_forced_output_given_whole_at_the_start_is_the_answer() -> None:
    """With structured output forced through a tool (models before Claude 4.5), that tool's input
    is the answer's text: a host giving it whole at the start must not answer with nothing."""
    decoder = MessagesStreamDecoder(output_tool="answer")
    start = tool_use(0, "toolu_1", {"colour": "blue"})
    start["content_block"]["name"] = "answer"
    events = [e for event in message(start, stop(0)) for e in decoder.feed(event)]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == '{"colour":"blue"}'
