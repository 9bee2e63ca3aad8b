"""A tool call cut by max_tokens (issue 18.10): every started call ends with a ToolCallEnd before the
finish, on every provider, and one whose arguments are not whole says so (`ToolCall.incomplete`)
in streams and in unary answers alike, so that no client runs a tool on half its arguments or
loses the call.

Anthropic and Cohere stop the message without ending the call (the fakes' `tools-max-tokens`);
OpenAI ends every call at the finish, with arguments that are not JSON. The official SDKs, reading
the same bytes from the same fakes, are the oracle for what the call and its arguments are.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from conftest import ADAPTER_ROUTING, RunningGateway, run_gateway
from upstream_support import Collected, chat_stream
from vendor_cases import chat_request, user, weather_tool

from provider_gateway.domain import (
    FinishReason,
    ProviderFinish,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
)
from provider_gateway.fakes import FakeUpstream, Reply
from provider_gateway.fakes import chat_completions as cc
from provider_gateway.fakes import conversation as conv
from provider_gateway.fakes.anthropic import FakeAnthropic, message_body
from provider_gateway.fakes.cohere import FakeCohere
from provider_gateway.providers.mock import MockScript
from provider_gateway.v1 import provider_service_pb2 as pb
from provider_gateway_client import GatewayClient, ToolCallFinished

OPENAI_KEY = "sk-test-cut-tool"
HALF_ARGS = conv.TOOL_ARGS_JSON[: len(conv.TOOL_ARGS_JSON) // 2]


class Env:
    def __init__(
        self, anthropic_fake: FakeAnthropic, openai_fake: FakeUpstream, gateway: RunningGateway
    ) -> None:
        self.anthropic = anthropic_fake
        self.openai = openai_fake
        self.stub = gateway.stub
        self.target = gateway.target


@pytest.fixture(scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    keys = Path(tmp_path_factory.mktemp("keys"))
    async with FakeAnthropic() as claude, FakeCohere() as cohere, FakeUpstream() as oa:
        for name, key in (("claude", claude.api_key), ("cohere", cohere.api_key), ("oa", OPENAI_KEY)):
            (keys / name).write_text(key)
        config = f"""
[providers.claude]
kind = "anthropic"
base_url = "{claude.base_url}"
api_key_file = "{keys / "claude"}"
[providers.cohere]
kind = "cohere"
base_url = "{cohere.base_url}"
api_key_file = "{keys / "cohere"}"
[providers.oa]
kind = "openai"
base_url = "{oa.url}/v1"
api_key_file = "{keys / "oa"}"
{ADAPTER_ROUTING}"""
        async with run_gateway(config) as gateway:
            yield Env(claude, oa, gateway)
        assert claude.problems == cohere.problems == []


def tools_request(model: str) -> pb.ChatRequest:
    return chat_request(model, tools=[weather_tool()])


def ends_before_finish(got: Collected) -> list[pb.ToolCall]:
    """Every started call's ToolCallEnd, checked to come after its start and before the finish."""
    assert got.error is None, got.error
    kinds = got.kinds()
    starts = [(i, e.tool_call_start.index) for i, e in enumerate(got.events) if e.HasField("tool_call_start")]
    ends = {e.tool_call_end.index: i for i, e in enumerate(got.events) if e.HasField("tool_call_end")}
    assert starts, kinds
    for position, index in starts:
        assert index in ends, f"call {index} started and never ended: {kinds}"
        assert position < ends[index] < kinds.index("finish"), kinds
    return [e.tool_call_end.call for e in got.events if e.HasField("tool_call_end")]


def assert_cut_call(call: pb.ToolCall, call_id: str, arguments: str) -> None:
    assert (call.id, call.name, call.arguments_json) == (call_id, conv.TOOL_NAME, arguments)
    assert call.incomplete


# The unary bodies carry what was generated: Cohere the half arguments string, Anthropic the input
# object as far as it got (valid JSON, yet cut: the stop reason says so).
@pytest.mark.parametrize(
    ("provider", "call_id", "unary_args"),
    [("claude", "toolu_fake_1", '{"city":"Paris"}'), ("cohere", "fake_call_1", HALF_ARGS)],
)
async def test_call_the_vendor_never_ended(env: Env, provider: str, call_id: str, unary_args: str) -> None:
    got = await chat_stream(env.stub, tools_request(f"{provider}/tools-max-tokens"))
    (call,) = ends_before_finish(got)
    assert_cut_call(call, call_id, HALF_ARGS)  # what arrived, flagged: not valid JSON, never ended
    assert got.finish.reason == pb.FINISH_REASON_LENGTH

    answer = await env.stub.Chat(tools_request(f"{provider}/tools-max-tokens"), timeout=20)
    (unary,) = answer.tool_calls
    assert_cut_call(unary, call_id, unary_args)
    assert answer.finish.reason == pb.FINISH_REASON_LENGTH


async def test_anthropic_sdk_reads_the_same_cut_call_in_a_unary_message(env: Env) -> None:
    answer = await env.stub.Chat(tools_request("claude/tools-max-tokens"), timeout=20)
    assert env.anthropic.calls[-1].body.get("stream") is None
    message = anthropic.types.Message.model_validate(message_body("tools-max-tokens", "tools-max-tokens"))
    (block,) = [b for b in message.content if b.type == "tool_use"]
    (call,) = answer.tool_calls
    assert (call.id, call.name, json.loads(call.arguments_json)) == (block.id, block.name, block.input)
    assert call.incomplete
    assert answer.finish.raw_finish_reason == message.stop_reason == "max_tokens"


async def test_anthropic_sdk_reads_the_same_cut_call(env: Env) -> None:
    got = await chat_stream(env.stub, tools_request("claude/tools-max-tokens"))
    (call,) = ends_before_finish(got)
    # This SDK version authenticates with a bearer token and a newer version; the fake checks
    # the documented headers the gateway sends, so the oracle sends those too.
    headers = {"x-api-key": env.anthropic.api_key, "anthropic-version": "2023-06-01"}
    sdk = anthropic.AsyncAnthropic(
        api_key=env.anthropic.api_key, base_url=env.anthropic.base_url, max_retries=0, default_headers=headers
    )
    stream = await sdk.messages.create(
        model="tools-max-tokens",
        max_tokens=64,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        stream=True,
    )
    events = [event async for event in stream]
    await sdk.close()
    (block,) = [
        e.content_block
        for e in events
        if e.type == "content_block_start" and e.content_block.type == "tool_use"
    ]
    partial = "".join(
        e.delta.partial_json
        for e in events
        if e.type == "content_block_delta" and e.delta.type == "input_json_delta"
    )
    stop = next(e.delta.stop_reason for e in events if e.type == "message_delta")
    assert (call.id, call.name, call.arguments_json) == (block.id, block.name, partial)
    assert got.finish.raw_finish_reason == stop == "max_tokens"
    assert not any(e.type == "content_block_stop" and e.index == 1 for e in events)  # never ended


def openai_cut_stream(model: str) -> Reply:
    """A complete first call, then a second cut by max_tokens; the finish ends both."""
    first = cc.tool_call("call_A", conv.TOOL_NAME, "")
    second = cc.tool_call("call_B", conv.TOOL_NAME, "")
    chunks: list[Any] = [cc.chunk(model, {"role": "assistant", "content": None})]
    chunks.append(cc.chunk(model, {"tool_calls": [{"index": 0, **first}]}))
    chunks.append(
        cc.chunk(model, {"tool_calls": [{"index": 0, "function": {"arguments": conv.TOOL_ARGS_JSON}}]})
    )
    chunks.append(cc.chunk(model, {"tool_calls": [{"index": 1, **second}]}))
    chunks.append(cc.chunk(model, {"tool_calls": [{"index": 1, "function": {"arguments": HALF_ARGS}}]}))
    chunks.append(cc.chunk(model, {}, "length"))
    chunks.append(cc.usage_chunk(model, cc.usage(9, 64)))
    return Reply.sse(chunks)


async def test_openai_call_ended_at_the_finish_with_arguments_not_json(env: Env) -> None:
    path = "/v1/chat/completions"
    env.openai.script(path, openai_cut_stream("gpt-x"), openai_cut_stream("gpt-x"))
    got = await chat_stream(env.stub, tools_request("oa/gpt-x"))
    whole, cut = ends_before_finish(got)
    sdk = openai.AsyncOpenAI(api_key=OPENAI_KEY, base_url=env.openai.url + "/v1", max_retries=0)
    stream = await sdk.chat.completions.create(
        model="gpt-x", messages=[{"role": "user", "content": "Q"}], stream=True
    )
    read = [chunk async for chunk in stream]
    await sdk.close()
    fragments = [t for c in read if c.choices for t in c.choices[0].delta.tool_calls or []]
    sdk_args = ["".join(t.function.arguments or "" for t in fragments if t.index == i) for i in (0, 1)]
    assert [whole.arguments_json, cut.arguments_json] == sdk_args == [conv.TOOL_ARGS_JSON, HALF_ARGS]
    assert (whole.id, whole.incomplete) == ("call_A", False)
    assert (cut.id, cut.incomplete) == ("call_B", True)
    assert got.finish.reason == pb.FINISH_REASON_LENGTH


async def test_openai_unary_answer_flags_the_cut_call(env: Env) -> None:
    calls = [
        cc.tool_call("call_A", conv.TOOL_NAME, conv.TOOL_ARGS_JSON),
        cc.tool_call("call_B", conv.TOOL_NAME, HALF_ARGS),
    ]
    body = cc.completion("gpt-x", cc.message(None, tool_calls=calls), "length", cc.usage(9, 64))
    env.openai.script("/v1/chat/completions", Reply.json(body))
    answer = await env.stub.Chat(tools_request("oa/gpt-x"), timeout=20)
    assert [(c.id, c.arguments_json, c.incomplete) for c in answer.tool_calls] == [
        ("call_A", conv.TOOL_ARGS_JSON, False),
        ("call_B", HALF_ARGS, True),
    ]


async def test_python_client_event_says_the_call_is_incomplete(env: Env) -> None:
    async with GatewayClient(env.target) as client:
        events = [e async for e in client.chat_stream("claude/tools-max-tokens", "Q", tools=[weather_tool()])]
    (finished,) = [e for e in events if isinstance(e, ToolCallFinished)]
    assert finished == ToolCallFinished(0, "toolu_fake_1", conv.TOOL_NAME, HALF_ARGS, incomplete=True)


# Any provider's events, through the router: the guarantee does not depend on the adapter.
SCRIPTED = [
    ToolCallStart(0, "a", "f"),
    ToolCallDelta(0, '{"x": 1}'),
    ToolCallEnd(0, ToolCall("a", "f", '{"x": 1}')),
    ToolCallStart(1, "b", "f"),
    ToolCallEnd(1, ToolCall("b", "f", '{"x": ')),  # ended by the vendor, not JSON
    ToolCallStart(2, "c", "f"),
    ToolCallDelta(2, '{"y": "tr'),  # never ended
    ProviderFinish(FinishReason.LENGTH, "length"),
]
EXPECTED = [("a", '{"x": 1}', False), ("b", '{"x": ', True), ("c", '{"y": "tr', True)]


async def test_any_provider_stream_and_unary() -> None:
    async with run_gateway() as gateway:
        mock = gateway.provider("mock")
        mock.push(MockScript(events=SCRIPTED))
        got = await chat_stream(gateway.stub, pb.ChatRequest(model="mock/echo", messages=[user("Q")]))
        assert [(c.id, c.arguments_json, c.incomplete) for c in ends_before_finish(got)] == EXPECTED
        mock.push(MockScript(events=SCRIPTED))
        answer = await gateway.stub.Chat(pb.ChatRequest(model="mock/echo", messages=[user("Q")]), timeout=20)
        assert [(c.id, c.arguments_json, c.incomplete) for c in answer.tool_calls] == EXPECTED
        assert answer.finish.reason == pb.FINISH_REASON_LENGTH
