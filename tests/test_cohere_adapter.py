"""The Cohere v2 adapter through the real gRPC API against the fake Cohere API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from conftest import run_gateway
from vendor_cases import (
    assert_canonical,
    cancel_mid_stream,
    chat,
    chat_error,
    chat_request,
    image_request,
    retry_after_ms,
    weather_tool,
)

from provider_gateway.fakes import conversation as conv
from provider_gateway.fakes.cohere import FakeCohere
from provider_gateway.v1 import provider_service_pb2 as pb

KEY_ENV = "PG_TEST_COHERE_KEY"


def config(base_url: str) -> str:
    return f'[providers.cohere]\nkind = "cohere"\nbase_url = "{base_url}"\napi_key_env = "{KEY_ENV}"\n'


@pytest.fixture
async def setup(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[FakeCohere, Any]]:
    async with FakeCohere() as fake:
        monkeypatch.setenv(KEY_ENV, fake.api_key)
        async with run_gateway(config(fake.base_url)) as gateway:
            yield fake, gateway.stub
        assert fake.problems == []


async def test_text_stream_request_shape(setup: Any) -> None:
    fake, stub = setup
    summary = await chat(stub, chat_request("cohere/text", top_p=0.9, stop=["END"]))
    assert_canonical(summary, tools=False)
    assert (summary.finish.raw_finish_reason, summary.finish.model) == ("COMPLETE", "text")
    (request,) = fake.calls
    assert request.path == "/v2/chat"
    assert request.headers["authorization"] == f"Bearer {fake.api_key}"
    assert request.body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
    ]
    assert (request.body["p"], request.body["stop_sequences"], request.body["stream"]) == (0.9, ["END"], True)


async def test_tool_call_stream_and_cached_tokens(setup: Any) -> None:
    fake, stub = setup
    request = chat_request(
        "cohere/tools", tools=[weather_tool()], tool_choice=pb.ToolChoice(mode=pb.ToolChoice.MODE_REQUIRED)
    )
    summary = await chat(stub, request)
    assert_canonical(summary, tools=True)
    assert summary.tool_ids == ["fake_call_1"]
    assert summary.usage.raw["billed_units"]["input_tokens"] == conv.INPUT_TOKENS - conv.CACHE_READ_TOKENS
    body = fake.calls[0].body
    assert body["tool_choice"] == "REQUIRED"
    assert body["tools"][0]["function"]["name"] == conv.TOOL_NAME


async def test_reasoning_and_vision(setup: Any) -> None:
    fake, stub = setup
    summary = await chat(
        stub, chat_request("cohere/reasoning", reasoning=pb.ReasoningOptions(enabled=True, budget_tokens=900))
    )
    assert summary.reasoning == "".join(conv.REASONING_CHUNKS)
    assert fake.calls[0].body["thinking"] == {"type": "enabled", "token_budget": 900}
    await chat(stub, image_request("cohere/vision"))
    image = fake.calls[1].body["messages"][0]["content"][1]
    assert image["type"] == "image_url"
    assert image["image_url"]["url"].startswith("data:image/png;base64,")


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (401, grpc.StatusCode.UNAUTHENTICATED),
        (498, grpc.StatusCode.UNAUTHENTICATED),  # Cohere's invalid token
        (404, grpc.StatusCode.NOT_FOUND),
        (400, grpc.StatusCode.INVALID_ARGUMENT),
        (429, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (500, grpc.StatusCode.UNAVAILABLE),
    ],
)
async def test_errors_before_first_byte(setup: Any, status: int, code: grpc.StatusCode) -> None:
    _, stub = setup
    error, seen = await chat_error(stub, chat_request(f"cohere/error-{status}"))
    assert (error.code(), seen) == (code, [])
    if status == 429:
        assert retry_after_ms(error) == 2000  # from the retry-after header


@pytest.mark.parametrize("scenario", ["cut", "malformed", "midstream-error"])
async def test_stream_failures_after_output(setup: Any, scenario: str) -> None:
    _, stub = setup
    error, seen = await chat_error(stub, chat_request(f"cohere/{scenario}"))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert [e.text_delta.text for e in seen] == [conv.TEXT_CHUNKS[0]]


async def test_client_cancel_closes_the_upstream_connection(setup: Any) -> None:
    fake, stub = setup
    await cancel_mid_stream(stub, chat_request("cohere/hang"), fake)


async def test_embed_models_and_tokenize(setup: Any) -> None:
    fake, stub = setup
    embedded = await stub.Embed(
        pb.EmbedRequest(model="cohere/embed-v4.0", inputs=["a", "b"], dimensions=256), timeout=20
    )
    assert [list(e.values) for e in embedded.embeddings] == [[0.5] * 256, [0.5] * 256]
    assert embedded.usage.input_tokens == 3
    models = await stub.ListModels(pb.ListModelsRequest(provider="cohere"), timeout=20)
    assert {m.id: m.embeddings for m in models.models} == {"command-a-03-2025": False, "embed-v4.0": True}
    counted = await stub.CountTokens(
        pb.CountTokensRequest(model="cohere/command-a-03-2025", text="one two three"), timeout=20
    )
    assert (counted.input_tokens, counted.estimated) == (3, False)
    assert fake.calls[-1].body == {"text": "one two three", "model": "command-a-03-2025"}


async def test_a_dropped_connection_after_message_end_is_not_an_error(setup: Any) -> None:
    _, stub = setup
    summary = await chat(stub, chat_request("cohere/cut-after-end"))
    assert_canonical(summary, tools=False)


async def test_complete_is_a_one_message_chat(setup: Any) -> None:
    fake, stub = setup
    response = await stub.Complete(pb.CompleteRequest(model="cohere/text", prompt="Say hi"), timeout=20)
    assert response.text == "".join(conv.TEXT_CHUNKS)
    assert fake.calls[-1].body["messages"] == [{"role": "user", "content": "Say hi"}]
