"""One logical conversation (text and a tool call) through ChatStream on every provider gives the
same text, tool call and normalised usage, whatever each vendor's wire format."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

import grpc
import pytest
from conftest import run_gateway
from vendor_cases import WAIT_S, assert_canonical, chat, chat_error, chat_request, weather_tool

from provider_gateway.domain import ChatRequest, Message, Role, TextDelta, TextPart
from provider_gateway.fakes import FakeUpstream, Reply
from provider_gateway.fakes import conversation as conv
from provider_gateway.fakes.anthropic import FakeAnthropic
from provider_gateway.fakes.cohere import FakeCohere
from provider_gateway.fakes.gemini import FakeGemini
from provider_gateway.fakes.vertex import FakeVertex
from provider_gateway.providers.mock import MockScript
from provider_gateway.v1 import provider_service_pb2 as pb

MODELS = [
    "mock/tools",
    "openai/gpt-4o",
    "anthropic/tools",
    "gemini/tools",
    "vertex/tools",
    "vertex/claude-tools",
    "cohere/tools",
]


def openai_canonical_reply() -> Reply:
    """The canonical conversation as OpenAI Chat Completions chunks (issue 3a's fake upstream)."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return {"id": "chatcmpl-x", "model": "gpt-4o", "choices": [choice]}

    half = len(conv.TOOL_ARGS_JSON) // 2
    call = {
        "index": 0,
        "id": "call_x",
        "type": "function",
        "function": {"name": conv.TOOL_NAME, "arguments": ""},
    }
    usage = {
        "prompt_tokens": conv.INPUT_TOKENS,
        "completion_tokens": conv.OUTPUT_TOKENS,
        "total_tokens": conv.INPUT_TOKENS + conv.OUTPUT_TOKENS,
        "prompt_tokens_details": {"cached_tokens": conv.CACHE_READ_TOKENS},
    }
    return Reply.sse(
        [
            chunk({"role": "assistant", "content": ""}),
            *(chunk({"content": text}) for text in conv.TEXT_CHUNKS),
            chunk({"tool_calls": [call]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": conv.TOOL_ARGS_JSON[:half]}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": conv.TOOL_ARGS_JSON[half:]}}]}),
            chunk({}, "tool_calls"),
            {"id": "chatcmpl-x", "model": "gpt-4o", "choices": [], "usage": usage},
        ]
    )


async def test_same_conversation_same_answer_on_every_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    async with AsyncExitStack() as stack:
        anthropic = await stack.enter_async_context(FakeAnthropic())
        gemini = await stack.enter_async_context(FakeGemini())
        vertex = await stack.enter_async_context(FakeVertex())
        cohere = await stack.enter_async_context(FakeCohere())
        openai = await stack.enter_async_context(FakeUpstream())
        openai.script("/v1/chat/completions", openai_canonical_reply())
        for env, value in [
            ("PG_X_OPENAI", "sk-test-openai"),
            ("PG_X_ANTHROPIC", anthropic.api_key),
            ("PG_X_GEMINI", gemini.api_key),
            ("PG_X_VERTEX", vertex.vertex_token),
            ("PG_X_COHERE", cohere.api_key),
        ]:
            monkeypatch.setenv(env, value)
        config = f"""
[providers.mock]
kind = "mock"

[providers.openai]
base_url = "{openai.url}/v1"
api_key_env = "PG_X_OPENAI"

[providers.anthropic]
base_url = "{anthropic.base_url}"
api_key_env = "PG_X_ANTHROPIC"

[providers.gemini]
base_url = "{gemini.base_url}"
api_key_env = "PG_X_GEMINI"

[providers.vertex]
project = "p"
base_url = "{vertex.base_url}"
access_token_env = "PG_X_VERTEX"

[providers.cohere]
base_url = "{cohere.base_url}"
api_key_env = "PG_X_COHERE"
"""
        gateway = await stack.enter_async_context(run_gateway(config))
        gateway.provider("mock").push(MockScript(events=conv.canonical_events()))
        answers = {}
        for model in MODELS:
            summary = await chat(gateway.stub, chat_request(model, tools=[weather_tool()]))
            assert_canonical(summary, tools=True)
            usage = summary.usage
            answers[model] = (
                summary.text,
                summary.tool_calls,
                (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens, usage.cache_write_tokens),
                summary.finish.reason,
            )
        assert len(set(map(repr, answers.values()))) == 1, answers
        for fake in (anthropic, gemini, vertex, cohere):
            assert fake.problems == []


@pytest.mark.parametrize(
    ("fake_type", "kind", "model"),
    [
        (FakeAnthropic, "anthropic", "hang"),
        (FakeGemini, "gemini", "hang"),
        (FakeVertex, "vertex", "claude-hang"),
        (FakeCohere, "cohere", "hang"),
    ],
)
async def test_abandoned_stream_closes_the_upstream_connection(
    monkeypatch: pytest.MonkeyPatch, fake_type: type, kind: str, model: str
) -> None:
    """The router closes a provider stream with aclose() when a client leaves between events: that
    path (not only task cancellation) must release the upstream request."""
    async with fake_type() as fake:
        monkeypatch.setenv(
            "PG_X_SECRET", getattr(fake, "vertex_token", "") if kind == "vertex" else fake.api_key
        )
        secret = "access_token_env" if kind == "vertex" else "api_key_env"
        extra = 'project = "p"\n' if kind == "vertex" else ""
        config = (
            f'[providers.p]\nkind = "{kind}"\nbase_url = "{fake.base_url}"\n{secret} = "PG_X_SECRET"\n{extra}'
        )
        async with run_gateway(config) as gateway:
            provider = gateway.provider("p")
            stream = provider.chat_stream(ChatRequest(model, [Message(Role.USER, (TextPart("hi"),))]))
            first = await asyncio.wait_for(anext(stream), WAIT_S)
            assert first == TextDelta(conv.TEXT_CHUNKS[0])
            await stream.aclose()
            await asyncio.wait_for(fake.disconnected.wait(), WAIT_S)


async def test_stalled_stream_fails_after_the_between_events_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    async with FakeCohere() as fake:
        monkeypatch.setenv("PG_X_SECRET", fake.api_key)
        config = f"""
[providers.cohere]
base_url = "{fake.base_url}"
api_key_env = "PG_X_SECRET"
idle_timeout_s = 0.2
"""
        async with run_gateway(config) as gateway:
            error, seen = await chat_error(gateway.stub, chat_request("cohere/hang"))
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert "within 0.2 s" in (error.details() or "")
        assert [e.text_delta.text for e in seen] == [conv.TEXT_CHUNKS[0]]
        await asyncio.wait_for(fake.disconnected.wait(), WAIT_S)


@pytest.mark.parametrize("kind", ["anthropic", "gemini", "cohere"])
async def test_refused_connection_is_unavailable_and_names_the_host(
    monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    async with FakeCohere() as fake:  # start and stop a server to get a port nobody listens on
        port = fake.port
    monkeypatch.setenv("PG_X_SECRET", "k")
    config = (
        f'[providers.p]\nkind = "{kind}"\nbase_url = "http://127.0.0.1:{port}"\napi_key_env = "PG_X_SECRET"\n'
    )
    async with run_gateway(config) as gateway:
        error, _ = await chat_error(gateway.stub, chat_request("p/text"))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert f"127.0.0.1:{port}: connection refused" in (error.details() or "")


@pytest.mark.parametrize(
    ("fake_type", "kind"), [(FakeAnthropic, "anthropic"), (FakeGemini, "gemini"), (FakeCohere, "cohere")]
)
async def test_health_probes_the_models_endpoint_with_the_key(
    monkeypatch: pytest.MonkeyPatch, fake_type: type, kind: str
) -> None:
    async with fake_type() as fake:
        config = (
            f'[providers.p]\nkind = "{kind}"\nbase_url = "{fake.base_url}"\napi_key_env = "PG_X_SECRET"\n'
        )
        for key, health in [
            (fake.api_key, pb.PROVIDER_HEALTH_SERVING),
            ("wrong-key", pb.PROVIDER_HEALTH_NOT_SERVING),
        ]:
            monkeypatch.setenv("PG_X_SECRET", key)
            async with run_gateway(config) as gateway:
                answer = await gateway.stub.ListProviders(pb.ListProvidersRequest(), timeout=WAIT_S)
            (info,) = answer.providers
            assert info.health == health, info.health_message
            assert key not in info.health_message
