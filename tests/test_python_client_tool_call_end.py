"""A tool call's end too large for the gateway's send limit comes with `arguments_json` empty
(server/split_deltas.py; proto ToolCallEnd: clients fall back to the deltas). The Python client's
typed `ToolCallFinished` must carry the arguments joined from the deltas, as `final()` does: an
empty end read as is gives `arguments() == {}`, a tool run with no arguments."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from client_fakes import finish, scripted_gateway
from conftest import run_gateway

from provider_gateway.fakes import FakeUpstream, Reply
from provider_gateway.v1 import provider_service_pb2 as pb
from provider_gateway_client import GatewayClient, SyncGatewayClient, ToolCallFinished
from provider_gateway_client import pb as client_pb

LIMIT = 4096


def openai_chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "c", "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


async def test_a_streamed_tool_call_over_the_send_limit_keeps_its_arguments_in_the_typed_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PG_X_KEY", "k")
    arguments = {"city": "Paris " * 3000}  # 18 KB, in one SSE event
    start = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather"}}
    start["function"]["arguments"] = orjson.dumps(arguments).decode()
    chunks = [openai_chunk({"tool_calls": [start]}), openai_chunk({}, "tool_calls")]
    body = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    async with FakeUpstream() as fake:
        fake.script("/v1/chat/completions", Reply(chunks=[body], content_type="text/event-stream"))
        config = (
            f"[server]\nmax_message_bytes = {LIMIT}\n"
            f'[providers.o]\nkind = "openai"\nbase_url = "{fake.url}/v1"\napi_key_env = "PG_X_KEY"\n'
        )
        async with run_gateway(config) as gw, GatewayClient(gw.target) as client:
            stream = client.chat_stream("o/m", "weather?", tools=[client_pb.Tool(name="get_weather")])
            ends = [e async for e in stream if isinstance(e, ToolCallFinished)]
            result = await stream.final()
    assert result.tool_calls[0].arguments == arguments
    (end,) = ends
    assert end.arguments() == arguments


def tool_events(index: int, pieces: list[str], whole: str) -> list[pb.StreamEvent]:
    call = pb.ToolCall(id=f"call_{index}", name="get_weather", arguments_json=whole)
    return [
        pb.StreamEvent(tool_call_start=pb.ToolCallStart(index=index, id=call.id, name=call.name)),
        *(pb.StreamEvent(tool_call_delta=pb.ToolCallDelta(index=index, arguments_delta=p)) for p in pieces),
        pb.StreamEvent(tool_call_end=pb.ToolCallEnd(index=index, call=call)),
    ]


async def test_each_emptied_end_gets_its_own_calls_deltas_and_a_whole_end_is_kept_in_the_sync_client() -> (
    None
):
    events = [
        *tool_events(0, ['{"city":', '"Paris"}'], ""),
        *tool_events(1, ['{"city":"Ro', 'me"}'], '{"city":"Rome"}'),
        *tool_events(2, ['{"city":"Oslo"}'], ""),
        finish(pb.FINISH_REASON_TOOL_CALLS),
    ]

    def ends_read(target: str) -> list[ToolCallFinished]:
        with SyncGatewayClient(target) as client:
            return [e for e in client.chat_stream("m/x", "weather?") if isinstance(e, ToolCallFinished)]

    async with scripted_gateway(events) as (target, _):
        ends = await asyncio.to_thread(ends_read, target)  # the server runs in this loop
    assert [end.arguments() for end in ends] == [{"city": "Paris"}, {"city": "Rome"}, {"city": "Oslo"}]
