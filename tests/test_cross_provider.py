"""One logical conversation (text and a tool call) through ChatStream on every provider gives the
same text, tool call and normalised usage, whatever each vendor's wire format."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from conftest import RunningGateway, run_gateway, use_fake_aws_credentials
from vendor_cases import (
    WAIT_S,
    Summary,
    assert_canonical,
    chat,
    chat_error,
    chat_request,
    weather_tool,
)

from provider_gateway.domain import ChatRequest, Message, Role, TextDelta, TextPart
from provider_gateway.fakes import FakeUpstream, Reply
from provider_gateway.fakes import conversation as conv
from provider_gateway.fakes.anthropic import FakeAnthropic
from provider_gateway.fakes.bedrock import FakeBedrock, event_frame
from provider_gateway.fakes.bedrock import Reply as BedrockReply
from provider_gateway.fakes.cohere import FakeCohere
from provider_gateway.fakes.gemini import FakeGemini
from provider_gateway.fakes.vertex import FakeVertex
from provider_gateway.providers.mock import MockScript
from provider_gateway.v1 import provider_service_pb2 as pb

AZURE_DEPLOYMENT = "prod-gpt-4o"
AZURE_KEY = "azure-test-key"
BEDROCK_MODEL = "anthropic.claude-3-5-sonnet-20241022-v2:0"
AZURE_PATH = f"/openai/deployments/{AZURE_DEPLOYMENT}/chat/completions"
MODELS = [
    "mock/tools",
    "openai/gpt-4o",
    "azure/gpt-4o",
    "mistral/mistral-large-latest",
    "anthropic/tools",
    "gemini/tools",
    "vertex/tools",
    "vertex/claude-tools",
    "cohere/tools",
    f"bedrock/{BEDROCK_MODEL}",
]
# Asked separately: Ollama reports no cache tokens (see assert_canonical_without_cache).
OLLAMA_MODEL = "ollama/llama3.2"


def openai_canonical_chunks(model: str) -> list[dict[str, Any]]:
    """The canonical conversation as OpenAI Chat Completions chunks (issue 3a's fake upstream)."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return {"id": "chatcmpl-x", "model": model, "choices": [choice]}

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
    return [
        chunk({"role": "assistant", "content": ""}),
        *(chunk({"content": text}) for text in conv.TEXT_CHUNKS),
        chunk({"tool_calls": [call]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": conv.TOOL_ARGS_JSON[:half]}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": conv.TOOL_ARGS_JSON[half:]}}]}),
        chunk({}, "tool_calls"),
        {"id": "chatcmpl-x", "model": model, "choices": [], "usage": usage},
    ]


def openai_canonical_reply() -> Reply:
    return Reply.sse(openai_canonical_chunks("gpt-4o"))


AZURE_SAFE = {
    name: {"filtered": False, "severity": "safe"} for name in ("hate", "self_harm", "sexual", "violence")
}


def azure_canonical_reply() -> Reply:
    """Azure OpenAI differs from OpenAI by its content filter: the stream opens with a chunk that has
    no choices and only the prompt's filter results, and every choice carries its own results. The
    adapter must pass over both and give the same answer."""
    prompt_filters = {
        "id": "",
        "object": "",
        "created": 0,
        "model": "",
        "choices": [],
        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": AZURE_SAFE}],
    }
    chunks = openai_canonical_chunks("gpt-4o-2024-08-06")
    for chunk in chunks:
        for choice in chunk["choices"]:
            choice["content_filter_results"] = AZURE_SAFE if choice["delta"].get("content") else {}
    return Reply.sse([prompt_filters, *chunks])


def mistral_canonical_reply() -> Reply:
    """Mistral differs from OpenAI: the tool call arrives whole (an id of 9 alphanumerics and all
    its arguments) in the chunk that finishes, and usage comes unasked (no stream_options) on that
    same last chunk, with cache hits in prompt_tokens_details."""

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return {
            "id": "cmpl-x",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": "mistral-large-latest",
            "choices": [choice],
        } | extra

    call = {
        "id": "D681PevKs",
        "function": {"name": conv.TOOL_NAME, "arguments": conv.TOOL_ARGS_JSON},
        "index": 0,
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
            chunk({"tool_calls": [call]}, "tool_calls", usage=usage),
        ]
    )


def ollama_canonical_reply() -> Reply:
    """Ollama's native /api/chat NDJSON: text lines, then the tool call whole (arguments as a JSON
    object, no id) in one line, then the `done` line with the counts. Its done_reason stays "stop"
    even after a tool call, and it has no cache figures at all."""

    def line(**message: Any) -> dict[str, Any]:
        return {
            "model": "llama3.2",
            "created_at": "2026-01-01T00:00:00Z",
            "message": {"role": "assistant", "content": ""} | message,
            "done": False,
        }

    call = {"function": {"name": conv.TOOL_NAME, "arguments": conv.TOOL_ARGS}}
    done = line() | {
        "done": True,
        "done_reason": "stop",
        "total_duration": 5_000_000,
        "load_duration": 1_000_000,
        "prompt_eval_count": conv.INPUT_TOKENS,
        "prompt_eval_duration": 2_000_000,
        "eval_count": conv.OUTPUT_TOKENS,
        "eval_duration": 2_000_000,
    }
    return Reply.ndjson([*(line(content=text) for text in conv.TEXT_CHUNKS), line(tool_calls=[call]), done])


def bedrock_canonical_frames() -> list[bytes]:
    """ConverseStream eventstream frames. Bedrock's inputTokens leave out cache reads (the gateway's
    normalised input includes them), and its totalTokens counts everything."""
    half = len(conv.TOOL_ARGS_JSON) // 2
    tool = {"toolUse": {"toolUseId": "tooluse_canonical", "name": conv.TOOL_NAME}}
    usage = {
        "inputTokens": conv.INPUT_TOKENS - conv.CACHE_READ_TOKENS,
        "outputTokens": conv.OUTPUT_TOKENS,
        "totalTokens": conv.INPUT_TOKENS + conv.OUTPUT_TOKENS,
        "cacheReadInputTokens": conv.CACHE_READ_TOKENS,
    }
    return [
        event_frame("messageStart", {"role": "assistant"}),
        *(
            event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": text}})
            for text in conv.TEXT_CHUNKS
        ),
        event_frame("contentBlockStop", {"contentBlockIndex": 0}),
        event_frame("contentBlockStart", {"contentBlockIndex": 1, "start": tool}),
        *(
            event_frame("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": piece}}})
            for piece in (conv.TOOL_ARGS_JSON[:half], conv.TOOL_ARGS_JSON[half:])
        ),
        event_frame("contentBlockStop", {"contentBlockIndex": 1}),
        event_frame("messageStop", {"stopReason": "tool_use"}),
        event_frame("metadata", {"usage": usage, "metrics": {"latencyMs": 42}}),
    ]


def assert_canonical_without_cache(summary: Summary) -> None:
    """The canonical answer from a vendor that reports no cache tokens: the same text, tool call,
    input and output tokens, and finish, with both cache fields 0 (not invented, not estimated)."""
    assert summary.text == "".join(conv.TEXT_CHUNKS)
    assert summary.tool_calls == [(conv.TOOL_NAME, conv.TOOL_ARGS)]
    assert all(summary.tool_ids), summary.tool_ids
    assert summary.usage is not None
    usage = summary.usage
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (
        conv.INPUT_TOKENS,
        conv.OUTPUT_TOKENS,
        conv.INPUT_TOKENS + conv.OUTPUT_TOKENS,
    )
    assert (usage.cache_read_tokens, usage.cache_write_tokens) == (0, 0)
    assert not usage.estimated
    assert summary.finish is not None
    assert summary.finish.reason == pb.FINISH_REASON_TOOL_CALLS
    assert summary.kinds[-2:] == ["usage", "finish"]


@dataclass
class EveryVendor:
    """A gateway in front of every vendor's fake, and the fakes."""

    gateway: RunningGateway
    openai: FakeUpstream
    azure: FakeUpstream
    mistral: FakeUpstream
    ollama: FakeUpstream
    anthropic: FakeAnthropic
    gemini: FakeGemini
    vertex: FakeVertex
    cohere: FakeCohere
    bedrock: FakeBedrock


@asynccontextmanager
async def every_vendor(
    monkeypatch: pytest.MonkeyPatch, *, answers: int = 1, server: str = ""
) -> AsyncIterator[EveryVendor]:
    """A gateway (with `server`, a `[server]` table) in front of every provider kind's fake, each
    answering the canonical conversation: the scripted fakes `answers` times, the others always."""
    async with AsyncExitStack() as stack:
        anthropic = await stack.enter_async_context(FakeAnthropic())
        gemini = await stack.enter_async_context(FakeGemini())
        vertex = await stack.enter_async_context(FakeVertex())
        cohere = await stack.enter_async_context(FakeCohere())
        bedrock = await stack.enter_async_context(FakeBedrock())
        openai, azure, mistral, ollama = [await stack.enter_async_context(FakeUpstream()) for _ in range(4)]
        for _ in range(answers):
            openai.script("/v1/chat/completions", openai_canonical_reply())
            azure.script(AZURE_PATH, azure_canonical_reply())
            mistral.script("/v1/chat/completions", mistral_canonical_reply())
            ollama.script("/api/chat", ollama_canonical_reply())
            bedrock.push(BedrockReply(frames=bedrock_canonical_frames()))
        use_fake_aws_credentials(monkeypatch)
        for env, value in [
            ("PG_X_OPENAI", "sk-test-openai"),
            ("PG_X_AZURE", AZURE_KEY),
            ("PG_X_MISTRAL", "mistral-test-key"),
            ("PG_X_ANTHROPIC", anthropic.api_key),
            ("PG_X_GEMINI", gemini.api_key),
            ("PG_X_VERTEX", vertex.vertex_token),
            ("PG_X_COHERE", cohere.api_key),
        ]:
            monkeypatch.setenv(env, value)
        config = f"""{server}
[providers.mock]
kind = "mock"

[providers.openai]
base_url = "{openai.url}/v1"
api_key_env = "PG_X_OPENAI"

[providers.azure]
kind = "azure"
base_url = "{azure.url}"
api_key_env = "PG_X_AZURE"
deployments = {{ "gpt-4o" = "{AZURE_DEPLOYMENT}" }}

[providers.mistral]
kind = "mistral"
base_url = "{mistral.url}/v1"
api_key_env = "PG_X_MISTRAL"

[providers.ollama]
kind = "ollama"
base_url = "{ollama.url}"

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

[providers.bedrock]
kind = "bedrock"
region = "us-west-2"
endpoint_url = "{bedrock.url}"
"""
        gateway = await stack.enter_async_context(run_gateway(config))
        yield EveryVendor(gateway, openai, azure, mistral, ollama, anthropic, gemini, vertex, cohere, bedrock)


async def test_same_conversation_same_answer_on_every_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    async with every_vendor(monkeypatch) as vendors:
        gateway = vendors.gateway
        anthropic, gemini, vertex, cohere = vendors.anthropic, vendors.gemini, vendors.vertex, vendors.cohere
        azure, bedrock = vendors.azure, vendors.bedrock
        gateway.provider("mock").push(MockScript(events=conv.canonical_events()))
        answers = {}
        for model in MODELS:
            summary = await chat(gateway.stub, chat_request(model, tools=[weather_tool()]))
            assert_canonical(summary, tools=True)
            assert all(summary.tool_ids), (model, summary.tool_ids)  # a client answers a call by its id
            usage = summary.usage
            answers[model] = (
                summary.text,
                summary.tool_calls,
                (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens, usage.cache_write_tokens),
                summary.finish.reason,
            )
        assert len(set(map(repr, answers.values()))) == 1, answers
        ollama_summary = await chat(gateway.stub, chat_request(OLLAMA_MODEL, tools=[weather_tool()]))
        assert_canonical_without_cache(ollama_summary)
        for fake in (anthropic, gemini, vertex, cohere):
            assert fake.problems == []
        # Azure mode is the deployment path (scripted above: any other path is a 404), the api-key
        # header instead of a bearer token, and the documented default api-version.
        sent = azure.last(AZURE_PATH)
        assert sent.headers["api-key"] == AZURE_KEY
        assert "authorization" not in sent.headers
        assert sent.query == {"api-version": "2024-08-01-preview"}
        converse = [seen for seen in bedrock.seen if seen.operation == "converse-stream"]
        assert [(seen.model_id, seen.signature_valid) for seen in converse] == [(BEDROCK_MODEL, True)]


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
async def test_refused_connection_is_unavailable_and_the_log_names_the_host(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    async with FakeCohere() as fake:  # start and stop a server to get a port nobody listens on
        port = fake.port
    monkeypatch.setenv("PG_X_SECRET", "k")
    config = (
        f'[providers.p]\nkind = "{kind}"\nbase_url = "http://127.0.0.1:{port}"\napi_key_env = "PG_X_SECRET"\n'
    )
    with caplog.at_level(logging.WARNING, logger="provider_gateway.rpc"):
        async with run_gateway(config) as gateway:
            error, _ = await chat_error(gateway.stub, chat_request("p/text"))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert error.details() == "p: connection refused"  # the client is not told where the upstream is
    assert any(f"http://127.0.0.1:{port}" in r.getMessage() for r in caplog.records)  # the operator is


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
