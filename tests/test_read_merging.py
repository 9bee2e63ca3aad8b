"""The deltas of one upstream read go on as one event from the adapter itself (wire/merge.py), so a
burst of tokens crosses the router and telemetry layers once instead of once per token; with
`[server] coalesce_deltas = false` every upstream delta stays its own event. What a client
accumulates is the same, and an error in a read comes after the events that preceded it."""

from __future__ import annotations

import tomllib
from typing import Any

import grpc
import orjson
import pytest
from conftest import run_gateway, use_fake_aws_credentials
from test_cross_provider import (
    BEDROCK_MODEL,
    bedrock_canonical_frames,
    ollama_canonical_reply,
    openai_canonical_chunks,
)
from upstream_support import chat_stream, user

from provider_gateway import config as config_module
from provider_gateway.domain import (
    ChatRequest,
    Message,
    ReasoningDelta,
    Role,
    StreamEvent,
    TextDelta,
    TextPart,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    UsageEvent,
)
from provider_gateway.fakes import FakeUpstream, Reply
from provider_gateway.fakes.anthropic import message_frames as anthropic_frames
from provider_gateway.fakes.bedrock import FakeBedrock
from provider_gateway.fakes.bedrock import Reply as BedrockReply
from provider_gateway.fakes.cohere import chat_frames as cohere_frames
from provider_gateway.fakes.gemini import frames_for as gemini_frames
from provider_gateway.providers.context import ProviderContext
from provider_gateway.providers.ollama import codec as ollama_codec
from provider_gateway.providers.registry import ProviderRegistry
from provider_gateway.v1 import provider_service_pb2 as pb


def one_read(chunks: list[dict[str, Any]]) -> Reply:
    """The whole stream in one write, as an upstream that answers faster than it is read."""
    body = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    return Reply(chunks=[body], content_type="text/event-stream")


async def provider_events(fake: FakeUpstream, merge_reads: bool) -> list[StreamEvent]:
    table = f'[providers.v]\nkind = "openai"\nbase_url = "{fake.url}/v1"\napi_key_env = "PG_X_KEY"\n'
    return await registry_events(table, merge_reads, "gpt-4o")


@pytest.mark.parametrize("merge_reads", [True, False])
async def test_one_read_of_many_frames_leaves_the_adapter_as_one_delta_per_run(
    merge_reads: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PG_X_KEY", "k")
    async with FakeUpstream() as fake:
        fake.script("/v1/chat/completions", one_read(openai_canonical_chunks("gpt-4o")))
        events = await provider_events(fake, merge_reads)
    texts = [e for e in events if isinstance(e, TextDelta)]
    arguments = [e for e in events if isinstance(e, ToolCallDelta)]
    if merge_reads:
        assert (len(texts), len(arguments)) == (1, 1)
    else:
        assert len(texts) > 1  # one per upstream frame
        assert len(arguments) > 1
    calls = [e.call for e in events if isinstance(e, ToolCallEnd)]
    assert len(calls) == 1
    assert calls[0].arguments_json == "".join(a.arguments_delta for a in arguments)
    assert "".join(t.text for t in texts)
    assert any(isinstance(e, UsageEvent) for e in events)


async def test_merged_or_not_the_adapter_gives_the_same_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PG_X_KEY", "k")
    async with FakeUpstream() as fake:
        for _ in range(2):
            fake.script("/v1/chat/completions", one_read(openai_canonical_chunks("gpt-4o")))
        merged, apart = await provider_events(fake, True), await provider_events(fake, False)

    def answer(events: list[StreamEvent]) -> tuple[str, list[ToolCall], list[Any]]:
        text = "".join(e.text for e in events if isinstance(e, TextDelta))
        calls = [e.call for e in events if isinstance(e, ToolCallEnd)]
        others = [e for e in events if not isinstance(e, TextDelta | ToolCallDelta)]
        return text, calls, others

    assert answer(merged) == answer(apart)


async def test_an_error_in_the_same_read_comes_after_the_text_before_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """OpenRouter reports a failure inside the stream: the text before it still reaches the
    client, then UNAVAILABLE, even when both arrive in one read."""
    monkeypatch.setenv("PG_X_KEY", "k")
    frames = [
        {"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"content": part}}]}
        for part in ("Hel", "lo")
    ]
    body = b"".join(b"data: " + orjson.dumps(f) + b"\n\n" for f in frames)
    body += b'data: {"error": {"code": 502, "message": "Provider returned error"}}\n\n'
    async with FakeUpstream() as fake:
        fake.script("/v1/chat/completions", Reply(chunks=[body], content_type="text/event-stream"))
        table = f'[providers.o]\nkind = "openai"\nbase_url = "{fake.url}/v1"\napi_key_env = "PG_X_KEY"\n'
        async with run_gateway(table) as gateway:
            got = await chat_stream(gateway.stub, pb.ChatRequest(model="o/gpt-4o", messages=[user("Hi")]))
    assert got.text == "Hello"
    assert got.error is not None
    assert got.error.code() == grpc.StatusCode.UNAVAILABLE
    assert "Provider returned error" in (got.error.details() or "")


def vendor_stream(kind: str, model: str) -> tuple[str, str, list[str]]:
    """(provider table line, path, SSE frames) of a reasoning-then-text answer for each SSE vendor."""
    if kind == "anthropic":
        return 'kind = "anthropic"', "/v1/messages", anthropic_frames("reasoning", model)[0]
    if kind == "gemini":
        path = f"/v1beta/models/{model}:streamGenerateContent"
        return 'kind = "gemini"', path, gemini_frames("reasoning", model)[0]
    return 'kind = "cohere"', "/v2/chat", cohere_frames("reasoning")[0]


@pytest.mark.parametrize("kind", ["anthropic", "gemini", "cohere"])
async def test_sse_vendors_merge_one_read_and_keep_the_answer(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PG_X_KEY", "k")
    model = {"anthropic": "claude-sonnet-4-5", "gemini": "gemini-2.5-flash", "cohere": "command-a-03-2025"}[
        kind
    ]
    line, path, frames = vendor_stream(kind, model)
    body = "".join(frames).encode()
    answers = {}
    async with FakeUpstream() as fake:
        for merge_reads in (True, False):
            fake.script(path, Reply(chunks=[body], content_type="text/event-stream"))
            table = f'[providers.v]\n{line}\nbase_url = "{fake.url}"\napi_key_env = "PG_X_KEY"\n'
            answers[merge_reads] = await registry_events(table, merge_reads, model)
    merged, apart = answers[True], answers[False]
    for events in (merged, apart):
        assert any(isinstance(e, TextDelta) for e in events)
        assert any(isinstance(e, ReasoningDelta) for e in events)
    assert len([e for e in merged if isinstance(e, TextDelta)]) == 1
    assert len([e for e in apart if isinstance(e, TextDelta)]) > 1

    def joined(events: list[StreamEvent], kind: type) -> str:
        return "".join(getattr(e, "text", "") for e in events if isinstance(e, kind))

    assert joined(merged, TextDelta) == joined(apart, TextDelta)
    assert joined(merged, ReasoningDelta) == joined(apart, ReasoningDelta)
    assert [e for e in merged if not isinstance(e, TextDelta | ReasoningDelta)] == [
        e for e in apart if not isinstance(e, TextDelta | ReasoningDelta)
    ]


async def registry_events(table: str, merge_reads: bool, model: str) -> list[StreamEvent]:
    config = config_module.parse(tomllib.loads(table), "test.toml")
    registry = ProviderRegistry.from_config(config, ProviderContext(merge_reads=merge_reads))
    provider = registry.get("v")
    assert provider is not None
    request = ChatRequest(model, [Message(Role.USER, (TextPart("What is the weather?"),))])
    try:
        return [event async for event in provider.chat_stream(request)]
    finally:
        await registry.aclose()


def assert_merged_and_same(merged: list[StreamEvent], apart: list[StreamEvent]) -> None:
    """One text delta and one run of arguments merged, several apart, and the same answer."""
    assert len([e for e in merged if isinstance(e, TextDelta)]) == 1
    assert len([e for e in apart if isinstance(e, TextDelta)]) > 1
    assert "".join(e.text for e in merged if isinstance(e, TextDelta)) == "".join(
        e.text for e in apart if isinstance(e, TextDelta)
    )
    assert [e for e in merged if not isinstance(e, TextDelta | ToolCallDelta)] == [
        e for e in apart if not isinstance(e, TextDelta | ToolCallDelta)
    ]
    assert any(isinstance(e, ToolCallEnd) for e in merged)


async def test_ollama_ndjson_lines_of_one_read_merge(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ollama_codec, "answer_tag", lambda: "0" * 12)  # one made-up id in both answers
    body = b"".join(ollama_canonical_reply().chunks)
    answers = {}
    async with FakeUpstream() as fake:
        for merge_reads in (True, False):
            fake.script("/api/chat", Reply(chunks=[body], content_type="application/x-ndjson"))
            table = f'[providers.v]\nkind = "ollama"\nbase_url = "{fake.url}"\n'
            answers[merge_reads] = await registry_events(table, merge_reads, "llama3.2")
    assert_merged_and_same(answers[True], answers[False])


async def test_bedrock_event_stream_frames_of_one_read_merge(monkeypatch: pytest.MonkeyPatch) -> None:
    use_fake_aws_credentials(monkeypatch)
    answers = {}
    async with FakeBedrock() as bedrock:
        for merge_reads in (True, False):
            bedrock.push(BedrockReply(frames=[b"".join(bedrock_canonical_frames())]))  # one write
            table = f'[providers.v]\nkind = "bedrock"\nregion = "us-west-2"\nendpoint_url = "{bedrock.url}"\n'
            answers[merge_reads] = await registry_events(table, merge_reads, BEDROCK_MODEL)
    assert_merged_and_same(answers[True], answers[False])
