"""Unary Chat and Complete on Anthropic are one `stream: false` call (issue 15.2), read with the
stream's normalisation. The fake serves the documented unary Message; the official `anthropic` SDK,
reading the same bytes from the same fake, is the oracle.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import grpc
import pytest
from conftest import ADAPTER_ROUTING, run_gateway
from vendor_cases import (
    assert_unary_matches_stream,
    chat,
    chat_request,
    retry_after_ms,
    unary_error,
    weather_tool,
)

from provider_gateway.fakes.anthropic import FakeAnthropic
from provider_gateway.v1 import provider_service_pb2 as pb

KEY_ENV = "PG_TEST_ANTHROPIC_UNARY_KEY"


@pytest.fixture
async def setup(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[FakeAnthropic, Any]]:
    async with FakeAnthropic() as fake:
        monkeypatch.setenv(KEY_ENV, fake.api_key)
        config = f"""
[providers.claude]
kind = "anthropic"
base_url = "{fake.base_url}"
api_key_env = "{KEY_ENV}"
{ADAPTER_ROUTING}"""
        async with run_gateway(config) as gateway:
            yield fake, gateway.stub
        assert fake.problems == []


def scenario_request(scenario: str) -> pb.ChatRequest:
    if scenario == "reasoning":
        return chat_request(
            "claude/reasoning", reasoning=pb.ReasoningOptions(enabled=True, budget_tokens=2048)
        )
    return chat_request(f"claude/{scenario}", tools=[weather_tool()] if scenario == "tools" else [])


@pytest.mark.parametrize("scenario", ["text", "tools", "reasoning"])
async def test_chat_is_one_unary_call_that_answers_what_the_stream_does(setup: Any, scenario: str) -> None:
    fake, stub = setup
    summary = await chat(stub, scenario_request(scenario))
    answer = await stub.Chat(scenario_request(scenario), timeout=20)
    assert_unary_matches_stream(answer, summary)
    streamed, unary = fake.calls
    assert (streamed.path, unary.path) == ("/v1/messages", "/v1/messages")
    assert streamed.body["stream"] is True
    assert "stream" not in unary.body
    assert {k: v for k, v in streamed.body.items() if k != "stream"} == unary.body
    assert unary.headers["anthropic-beta"] == streamed.headers["anthropic-beta"]


@pytest.mark.parametrize("scenario", ["text", "tools", "reasoning"])
async def test_the_sdk_reads_the_same_unary_bytes(setup: Any, scenario: str) -> None:
    fake, stub = setup
    answer = await stub.Chat(scenario_request(scenario), timeout=20)
    # This SDK version sends a newer anthropic-version; the fake checks the documented one.
    headers = {"x-api-key": fake.api_key, "anthropic-version": "2023-06-01"}
    sdk = anthropic.AsyncAnthropic(
        api_key=fake.api_key, base_url=fake.base_url, max_retries=0, default_headers=headers
    )
    message = await sdk.messages.create(
        model=scenario, max_tokens=4096, messages=[{"role": "user", "content": "Weather in Paris?"}]
    )
    await sdk.close()
    assert answer.text == "".join(b.text for b in message.content if b.type == "text")
    thinking = [b for b in message.content if b.type == "thinking"]
    assert answer.reasoning == "".join(b.thinking for b in thinking)
    assert [(p.text, p.signature) for p in answer.reasoning_parts] == [
        (b.thinking, b.signature) for b in thinking
    ]
    calls = [(b.id, b.name, b.input) for b in message.content if b.type == "tool_use"]
    assert [(c.id, c.name, json.loads(c.arguments_json)) for c in answer.tool_calls] == calls
    usage = message.usage
    cache_write = usage.cache_creation_input_tokens or 0
    cache_read = usage.cache_read_input_tokens or 0
    got = answer.usage
    assert (got.input_tokens, got.output_tokens, got.cache_read_tokens, got.cache_write_tokens) == (
        usage.input_tokens + cache_write + cache_read,
        usage.output_tokens,
        cache_read,
        cache_write,
    )
    finish = answer.finish
    assert (finish.raw_finish_reason, finish.model, finish.response_id) == (
        message.stop_reason,
        message.model,
        message.id,
    )


async def test_complete_is_one_unary_legacy_call_that_answers_what_the_stream_does(setup: Any) -> None:
    fake, stub = setup
    request = pb.CompleteRequest(model="claude/claude-2.1", prompt="Say hi")
    events = [e async for e in stub.CompleteStream(request, timeout=20)]
    answer = await stub.Complete(request, timeout=20)
    streamed = [e for e in events if e.HasField("usage")][-1].usage
    finish = [e for e in events if e.HasField("finish")][-1].finish
    assert answer.text == "".join(e.text_delta.text for e in events if e.HasField("text_delta"))
    assert answer.usage == streamed
    assert answer.usage.estimated
    assert (answer.finish.reason, answer.finish.raw_finish_reason, answer.finish.model) == (
        finish.reason,
        finish.raw_finish_reason,
        finish.model,
    )
    assert [c.path for c in fake.calls] == ["/v1/complete", "/v1/complete"]
    assert "stream" not in fake.calls[-1].body


@pytest.mark.parametrize(
    ("model", "code"),
    [
        ("error-401", grpc.StatusCode.UNAUTHENTICATED),
        ("error-400", grpc.StatusCode.INVALID_ARGUMENT),
        ("error-429", grpc.StatusCode.RESOURCE_EXHAUSTED),
        ("error-529", grpc.StatusCode.UNAVAILABLE),
        ("early-error", grpc.StatusCode.UNAVAILABLE),  # 529 overloaded_error
        ("malformed", grpc.StatusCode.UNAVAILABLE),  # a body that is not JSON
        ("cut", grpc.StatusCode.UNAVAILABLE),  # half a body, then the connection drops
    ],
)
async def test_unary_errors_map_as_the_stream_maps_them(
    setup: Any, model: str, code: grpc.StatusCode
) -> None:
    _, stub = setup
    error = await unary_error(stub, chat_request(f"claude/{model}"))
    assert error.code() == code
    if model == "error-429":
        assert retry_after_ms(error) == 3000
    if model in ("error-529", "early-error"):
        assert "overloaded_error" in (error.details() or "")
    if model == "error-401":
        assert "check the provider key" in (error.details() or "")
