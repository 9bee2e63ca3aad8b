"""The Vertex AI adapter (Gemini and Claude publishers) through the gRPC API against a fake Vertex."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import run_gateway
from made_up_ids_support import untagged
from vendor_cases import (
    assert_canonical,
    cancel_mid_stream,
    chat,
    chat_error,
    chat_request,
    retry_after_ms,
    weather_tool,
)

from provider_gateway.config import register_secret
from provider_gateway.fakes import conversation as conv
from provider_gateway.fakes.vertex import FakeVertex
from provider_gateway.observability import logs
from provider_gateway.providers.vertex import adapter as vertex_adapter
from provider_gateway.providers.vertex import codec
from provider_gateway.v1 import provider_service_pb2 as pb

TOKEN_ENV = "PG_TEST_VERTEX_TOKEN"
PROJECT_PATH = "/v1/projects/demo-project/locations/europe-west4/publishers"


@pytest.fixture
async def setup(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[FakeVertex, Any]]:
    async with FakeVertex() as fake:
        monkeypatch.setenv(TOKEN_ENV, fake.vertex_token)
        config = f"""
[providers.vertex]
kind = "vertex"
project = "demo-project"
location = "europe-west4"
base_url = "{fake.base_url}"
access_token_env = "{TOKEN_ENV}"
"""
        async with run_gateway(config) as gateway:
            yield fake, gateway.stub
        assert fake.problems == []


def test_default_endpoint_is_regional() -> None:
    assert codec.default_base_url("us-central1") == "https://us-central1-aiplatform.googleapis.com"
    assert codec.default_base_url("global") == "https://aiplatform.googleapis.com"
    url = codec.model_url("https://x", "p", "l", "claude-sonnet-4-5@20250929", "streamRawPredict")
    assert (
        url
        == "https://x/v1/projects/p/locations/l/publishers/anthropic/models/claude-sonnet-4-5@20250929:streamRawPredict"
    )


async def test_gemini_on_vertex_streams_with_a_bearer_token(setup: Any) -> None:
    fake, stub = setup
    summary = await chat(stub, chat_request("vertex/tools", tools=[weather_tool()]))
    assert_canonical(summary, tools=True)
    assert [untagged(i) for i in summary.tool_ids] == [f"{conv.TOOL_NAME}-0"]  # `name-<tag>_0`
    (request,) = fake.calls
    assert request.path == f"{PROJECT_PATH}/google/models/tools:streamGenerateContent"
    assert request.query == {"alt": "sse"}
    assert request.headers["authorization"] == f"Bearer {fake.vertex_token}"
    assert "x-goog-api-key" not in {k.lower() for k in request.headers}


async def test_claude_on_vertex_reuses_the_messages_format(setup: Any) -> None:
    fake, stub = setup
    summary = await chat(stub, chat_request("vertex/claude-tools", tools=[weather_tool()]))
    assert_canonical(summary, tools=True)
    (request,) = fake.calls
    assert request.path == f"{PROJECT_PATH}/anthropic/models/claude-tools:streamRawPredict"
    assert request.headers["authorization"] == f"Bearer {fake.vertex_token}"
    assert request.body["anthropic_version"] == "vertex-2023-10-16"
    assert "model" not in request.body
    assert request.body["system"][0]["cache_control"] == {"type": "ephemeral"}


@pytest.mark.parametrize("model", ["gemini-err", "claude-err"])
async def test_rate_limit_and_auth_errors(setup: Any, model: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fake, stub = setup
    publisher_model = "error-429" if model == "gemini-err" else "claude-error-429"
    error, _ = await chat_error(stub, chat_request(f"vertex/{publisher_model}"))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    monkeypatch.setenv(TOKEN_ENV, "expired")
    config = f'[providers.vertex]\nkind = "vertex"\nproject = "p"\nbase_url = "{fake.base_url}"\naccess_token_env = "{TOKEN_ENV}"\n'
    async with run_gateway(config) as gateway:
        error, _ = await chat_error(
            gateway.stub, chat_request("vertex/claude-x" if model == "claude-err" else "vertex/text")
        )
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_gemini_429_retry_info_reaches_the_client(setup: Any) -> None:
    _, stub = setup
    error, _ = await chat_error(stub, chat_request("vertex/error-429"))
    assert retry_after_ms(error) == 7000


@pytest.mark.parametrize(
    "model",
    ["cut", "claude-cut", "malformed", "claude-malformed", "midstream-error", "claude-midstream-error"],
)
async def test_stream_failures(setup: Any, model: str) -> None:
    _, stub = setup
    error, seen = await chat_error(stub, chat_request(f"vertex/{model}"))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert [e.text_delta.text for e in seen] == [conv.TEXT_CHUNKS[0]]


@pytest.mark.parametrize("model", ["hang", "claude-hang"])
async def test_client_cancel_closes_the_upstream_connection(setup: Any, model: str) -> None:
    fake, stub = setup
    await cancel_mid_stream(stub, chat_request(f"vertex/{model}"), fake)


async def test_count_tokens_on_vertex_gemini(setup: Any) -> None:
    fake, stub = setup
    counted = await stub.CountTokens(
        pb.CountTokensRequest(model="vertex/gemini-2.5-pro", text="hello"), timeout=20
    )
    assert (counted.input_tokens, counted.estimated) == (42, False)
    assert fake.calls[-1].path == f"{PROJECT_PATH}/google/models/gemini-2.5-pro:countTokens"
    claude = await stub.CountTokens(
        pb.CountTokensRequest(model="vertex/claude-x", text="hello there"), timeout=20
    )
    assert claude.estimated


async def test_a_refreshed_token_file_is_used_without_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Access tokens expire within the hour: when a refresher rewrites access_token_file, the next
    request carries the new token (the file is rechecked at most every TOKEN_RECHECK_S)."""
    monkeypatch.setattr(vertex_adapter, "TOKEN_RECHECK_S", 0.0)
    token_file = tmp_path / "token"
    token_file.write_text("expired-token\n")
    async with FakeVertex(vertex_token="fresh-token") as fake:
        config = (
            f'[providers.vertex]\nkind = "vertex"\nproject = "p"\nbase_url = "{fake.base_url}"\n'
            f'access_token_file = "{token_file}"\n'
        )
        async with run_gateway(config) as gateway:
            error, _ = await chat_error(gateway.stub, chat_request("vertex/tools"))
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED
            token_file.write_text("fresh-token\n")
            os.utime(token_file, ns=(time.time_ns(), time.time_ns() + 1_000_000_000))  # a new mtime
            summary = await chat(gateway.stub, chat_request("vertex/tools", tools=[weather_tool()]))
            assert_canonical(summary, tools=True)
        assert fake.calls[-1].headers["authorization"] == "Bearer fresh-token"


async def test_embeddings_through_predict(setup: Any) -> None:
    """Vertex's text embedding models answer `:predict` (instances in, predictions out, token
    counts in `statistics`); gemini-embedding-* take one input per call, so one call per input."""
    fake, stub = setup
    embedded = await stub.Embed(
        pb.EmbedRequest(model="vertex/text-embedding-005", inputs=["a b", "c"], dimensions=3), timeout=20
    )
    assert [list(e.values) for e in embedded.embeddings] == [[0.25] * 3, [0.5] * 3]
    assert embedded.usage.input_tokens == 3
    assert not embedded.usage.estimated
    (call,) = fake.calls
    assert call.path == f"{PROJECT_PATH}/google/models/text-embedding-005:predict"
    assert call.body == {
        "instances": [{"content": "a b"}, {"content": "c"}],
        # autoTruncate off: an over-long input refused, never embedded in part (Vertex's default cuts).
        "parameters": {"autoTruncate": False, "outputDimensionality": 3},
    }
    single = await stub.Embed(
        pb.EmbedRequest(model="vertex/gemini-embedding-001", inputs=["x", "y z"]), timeout=20
    )
    assert [len(e.values) for e in single.embeddings] == [4, 4]
    assert single.usage.input_tokens == 3
    # One call per input, sent together: they may reach the upstream in either order.
    sent = sorted(c.body["instances"][0]["content"] for c in fake.calls[1:])
    assert (sent, [len(c.body["instances"]) for c in fake.calls[1:]]) == (["x", "y z"], [1, 1])
    providers = await stub.ListProviders(pb.ListProvidersRequest(), timeout=20)
    (vertex,) = [p for p in providers.providers if p.name == "vertex"]
    assert vertex.capabilities.embeddings


async def test_an_embedding_error_maps_like_any_other(setup: Any) -> None:
    fake, stub = setup
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Embed(
            pb.EmbedRequest(model="vertex/gemini-embedding-error-429", inputs=["a", "b"]), timeout=20
        )
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert {c.path.rsplit("/", 1)[-1] for c in fake.calls} == {"gemini-embedding-error-429:predict"}


def test_rotated_token_files_leave_the_redaction_set_bounded(tmp_path: Path) -> None:
    """A refresher rewrites the token file every hour for months: each new token is redacted from
    logs and errors, the ones it replaced are forgotten (each one recompiles the redaction pattern
    on the event loop), and the configured token stays redacted."""
    token_file = tmp_path / "token"
    token_file.write_text("configured-token-0123456789\n")
    configured = register_secret("configured-token-0123456789")  # as options.secret registers it
    tokens = vertex_adapter.TokenFile(str(token_file), configured, recheck_s=0.0)
    before = len(logs.known_secrets())
    for hour in range(1, 6):
        token_file.write_text(f"rotated-token-{hour:02d}-abcdefghij\n")
        os.utime(token_file, ns=(time.time_ns(), time.time_ns() + hour * 1_000_000_000))
        assert tokens.changed()
        assert tokens.token in logs.known_secrets()
    known = logs.known_secrets()
    assert "rotated-token-05-abcdefghij" in known
    assert not {f"rotated-token-{hour:02d}-abcdefghij" for hour in range(1, 5)} & known
    assert configured in known
    assert len(known) <= before + 1
