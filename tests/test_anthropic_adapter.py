"""The Anthropic adapter through the real gRPC API against the fake Anthropic API on 127.0.0.1."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from conftest import run_gateway
from vendor_cases import (
    PNG,
    WAIT_S,
    assert_canonical,
    cancel_mid_stream,
    chat,
    chat_error,
    chat_request,
    image_request,
    retry_after_ms,
    summarise,
    weather_tool,
)

from provider_gateway.fakes import conversation as conv
from provider_gateway.fakes.anthropic import FakeAnthropic
from provider_gateway.v1 import provider_service_pb2 as pb

KEY_ENV = "PG_TEST_ANTHROPIC_KEY"


@pytest.fixture
async def setup(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[FakeAnthropic, Any]]:
    async with FakeAnthropic() as fake:
        monkeypatch.setenv(KEY_ENV, fake.api_key)
        config = f"""
[providers.claude]
kind = "anthropic"
base_url = "{fake.base_url}"
api_key_env = "{KEY_ENV}"
context_1m_models = ["tools"]
"""
        async with run_gateway(config) as gateway:
            yield fake, gateway.stub
        assert fake.problems == []


async def test_text_stream_sends_documented_headers_and_body(setup: Any) -> None:
    fake, stub = setup
    summary = await chat(stub, chat_request("claude/text"))
    assert_canonical(summary, tools=False)
    assert summary.finish.raw_finish_reason == "end_turn"
    assert summary.finish.model == "text"
    (request,) = fake.calls
    assert request.path == "/v1/messages"
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert (
        request.headers["anthropic-beta"]
        == "prompt-caching-2024-07-31,fine-grained-tool-streaming-2025-05-14"
    )
    body = request.body
    assert body["max_tokens"] == 8192
    assert body["system"] == [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]
    assert body["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral"}


async def test_tool_call_stream_and_cache_usage(setup: Any) -> None:
    fake, stub = setup
    request = chat_request(
        "claude/tools", tools=[weather_tool()], tool_choice=pb.ToolChoice(mode=pb.ToolChoice.MODE_REQUIRED)
    )
    events = [e async for e in stub.ChatStream(request, timeout=WAIT_S)]
    summary = summarise(events)
    assert_canonical(summary, tools=True)
    assert summary.tool_ids == ["toolu_fake_1"]
    # The empty first partial_json is not forwarded; the others may travel joined (coalescing, under
    # load), never changed.
    deltas = [e.tool_call_delta.arguments_delta for e in events if e.WhichOneof("event") == "tool_call_delta"]
    assert deltas
    assert all(deltas)
    assert json.loads("".join(deltas)) == conv.TOOL_ARGS
    assert summary.usage.raw["cache_read_input_tokens"] == conv.CACHE_READ_TOKENS
    assert summary.usage.raw["input_tokens"] == conv.INPUT_TOKENS - conv.CACHE_READ_TOKENS
    body = fake.calls[0].body
    assert body["tool_choice"] == {"type": "any"}
    assert body["tools"][0]["input_schema"]["required"] == ["city"]
    assert "context-1m-2025-08-07" in fake.calls[0].headers["anthropic-beta"]


async def test_reasoning_with_signature_and_thinking_body(setup: Any) -> None:
    fake, stub = setup
    request = chat_request(
        "claude/reasoning", temperature=1, reasoning=pb.ReasoningOptions(enabled=True, budget_tokens=2048)
    )
    summary = await chat(stub, request)
    assert summary.reasoning == "".join(conv.REASONING_CHUNKS)
    assert summary.signature == "fake-signature"
    assert summary.text == "".join(conv.TEXT_CHUNKS)
    body = fake.calls[0].body
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert body["temperature"] == 1


async def test_vision_is_sent_as_a_base64_block(setup: Any) -> None:
    fake, stub = setup
    await chat(stub, image_request("claude/vision"))
    block = fake.calls[0].body["messages"][0]["content"][1]
    assert block["type"] == "image"
    assert block["source"]["media_type"] == "image/png"
    assert base64.b64decode(block["source"]["data"]) == PNG


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (401, grpc.StatusCode.UNAUTHENTICATED),
        (403, grpc.StatusCode.PERMISSION_DENIED),
        (404, grpc.StatusCode.NOT_FOUND),
        (400, grpc.StatusCode.INVALID_ARGUMENT),
        (429, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (500, grpc.StatusCode.UNAVAILABLE),
        (529, grpc.StatusCode.UNAVAILABLE),
    ],
)
async def test_errors_before_first_byte(setup: Any, status: int, code: grpc.StatusCode) -> None:
    _, stub = setup
    error, seen = await chat_error(stub, chat_request(f"claude/error-{status}"))
    assert error.code() == code
    assert seen == []
    if status == 429:
        assert retry_after_ms(error) == 3000
    if status == 401:
        assert "check the provider key" in (error.details() or "")
    if status == 529:
        assert "overloaded_error" in (error.details() or "")


async def test_wrong_key_is_unauthenticated(setup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    fake, _ = setup
    monkeypatch.setenv(KEY_ENV, "wrong")
    config = (
        f'[providers.claude]\nkind = "anthropic"\nbase_url = "{fake.base_url}"\napi_key_env = "{KEY_ENV}"\n'
    )
    async with run_gateway(config) as gateway:
        error, _ = await chat_error(gateway.stub, chat_request("claude/text"))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "wrong" not in (error.details() or "")


@pytest.mark.parametrize("scenario", ["cut", "malformed", "midstream-error"])
async def test_stream_failures_after_output_end_with_an_error_status(setup: Any, scenario: str) -> None:
    _, stub = setup
    error, seen = await chat_error(stub, chat_request(f"claude/{scenario}"))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert [e.text_delta.text for e in seen] == [conv.TEXT_CHUNKS[0]]
    if scenario == "midstream-error":
        assert "overloaded_error" in (error.details() or "")
    if scenario == "malformed":
        assert "malformed" in (error.details() or "")


async def test_client_cancel_closes_the_upstream_connection(setup: Any) -> None:
    fake, stub = setup
    await cancel_mid_stream(stub, chat_request("claude/hang"), fake)


async def test_complete_uses_the_legacy_prompt_format(setup: Any) -> None:
    fake, stub = setup
    response = await stub.Complete(pb.CompleteRequest(model="claude/claude-2.1", prompt="Say hi"), timeout=20)
    assert response.text == "".join(conv.TEXT_CHUNKS)
    assert response.usage.estimated
    (request,) = fake.calls
    assert request.path == "/v1/complete"
    assert request.body["prompt"] == "\n\nHuman: Say hi\n\nAssistant:"
    assert request.body["max_tokens_to_sample"] == 8192


async def test_count_tokens_and_list_models_use_the_api(setup: Any) -> None:
    fake, stub = setup
    counted = await stub.CountTokens(
        pb.CountTokensRequest(model="claude/claude-sonnet-4-5", text="hello"), timeout=20
    )
    assert (counted.input_tokens, counted.estimated) == (42, False)
    models = await stub.ListModels(pb.ListModelsRequest(provider="claude"), timeout=20)
    assert [m.id for m in models.models] == ["claude-sonnet-4-5", "claude-haiku-4-5"]
    assert [r.path for r in fake.calls] == ["/v1/messages/count_tokens"]
    assert fake.requests[-1].path == "/v1/models"
    assert fake.requests[-1].headers["x-api-key"] == fake.api_key


async def test_unary_chat_accumulates_the_stream(setup: Any) -> None:
    _, stub = setup
    response = await stub.Chat(chat_request("claude/tools", tools=[weather_tool()]), timeout=20)
    assert response.text == "".join(conv.TEXT_CHUNKS)
    assert [c.name for c in response.tool_calls] == [conv.TOOL_NAME]
    assert response.usage.input_tokens == conv.INPUT_TOKENS


async def test_a_dropped_connection_after_message_stop_is_not_an_error(setup: Any) -> None:
    _, stub = setup
    summary = await chat(stub, chat_request("claude/cut-after-end"))
    assert_canonical(summary, tools=False)


async def test_overloaded_before_any_content_fails_over_to_the_fallback(setup: Any) -> None:
    fake, _ = setup
    config = f"""
[providers.claude]
kind = "anthropic"
base_url = "{fake.base_url}"
api_key_env = "{KEY_ENV}"

[providers.mock]
kind = "mock"
"""
    async with run_gateway(config) as gateway:
        summary = await chat(gateway.stub, chat_request("claude/early-error", fallbacks=["mock/echo"]))
    assert summary.text.startswith("Mock answer:")
    attempts = summary.finish.attempts
    assert [(a.provider, a.outcome) for a in attempts] == [("claude", "UNAVAILABLE"), ("mock", "ok")]
    assert "overloaded_error" in attempts[0].error
