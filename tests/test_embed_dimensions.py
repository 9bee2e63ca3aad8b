"""`EmbedRequest.dimensions` on every embedding path, through the real gRPC server on the fakes: a
size is sent where the model takes it, refused with FAILED_PRECONDITION naming `dimensions` and the
model before any call where the model has one width or not that size, and an answer of another
width (a host that ignores the field) is refused, never returned as the size asked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from conftest import RunningGateway
from every_kind import EveryKind, default_fakes_gateway

from provider_gateway.fakes import Reply
from provider_gateway.v1 import provider_service_pb2 as pb


@pytest.fixture(scope="module")
async def setup() -> AsyncIterator[tuple[RunningGateway, EveryKind]]:
    async with default_fakes_gateway() as running:
        yield running


async def embed(gateway: RunningGateway, model: str, dimensions: int) -> pb.EmbedResponse:
    request = pb.EmbedRequest(model=model, inputs=["alpha beta", "gamma"], dimensions=dimensions)
    return await gateway.stub.Embed(request, timeout=20)


@pytest.mark.parametrize(
    ("provider", "model", "dimensions"),
    [
        ("bedrock", "cohere.embed-english-v3", 2),  # Embed v3: one width
        ("bedrock", "cohere.embed-multilingual-v3", 512),
        ("bedrock", "cohere.embed-v4:0", 2),  # v4 offers 256, 512, 1024, 1536
        ("bedrock", "amazon.titan-embed-text-v1", 256),  # only Titan Text Embeddings V2 takes a size
        ("bedrock", "amazon.titan-embed-text-v2:0", 300),  # V2 offers 256, 512, 1024
        ("cohere", "embed-english-v3.0", 256),
        ("cohere", "embed-v4.0", 2),
        ("openai", "text-embedding-ada-002", 256),  # only text-embedding-3 and later
        ("gemini", "embedding-001", 256),  # only the models since 2024
        ("mistral", "mistral-embed", 256),  # one width (1024); codestral-embed takes output_dimension
    ],
)
async def test_a_size_the_model_cannot_give_is_refused_before_any_call(
    setup: Any, provider: str, model: str, dimensions: int
) -> None:
    gateway, fakes = setup
    before = fakes.received(provider)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await embed(gateway, f"{provider}/{model}", dimensions)
    details = caught.value.details() or ""
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION, details
    assert "dimensions: " in details, details
    assert model in details, details
    assert fakes.received(provider) == before, "the refused request reached the upstream"


@pytest.mark.parametrize(
    ("provider", "model", "dimensions", "field"),
    [
        ("bedrock", "cohere.embed-v4:0", 256, "output_dimension"),
        ("bedrock", "amazon.titan-embed-text-v2:0", 512, "dimensions"),
        ("cohere", "embed-v4.0", 1024, "output_dimension"),
        ("gemini", "text-embedding-004", 3, None),  # per item: outputDimensionality
        ("vertex", "text-embedding-005", 3, None),  # parameters.outputDimensionality
    ],
)
async def test_a_size_the_model_offers_is_sent_and_answered(
    setup: Any, provider: str, model: str, dimensions: int, field: str | None
) -> None:
    gateway, fakes = setup
    answer = await embed(gateway, f"{provider}/{model}", dimensions)
    assert [len(e.values) for e in answer.embeddings] == [dimensions, dimensions]
    if field is not None:
        assert fakes.last_body(provider)[field] == dimensions


async def test_an_answer_of_another_width_is_refused_not_passed_off(setup: Any) -> None:
    """An OpenAI-compatible host that ignores `dimensions` answers full-width vectors: the client
    asked for 2 values per vector and must not get 4 as if they were."""
    gateway, fakes = setup
    full_width = {
        "data": [{"index": i, "embedding": [0.5] * 4} for i in range(2)],
        "model": "m",
        "usage": {"prompt_tokens": 3},
    }
    fakes.openai.script("/together/embeddings", Reply.json(full_width))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await embed(gateway, "together/some-embedding-model", 2)
    details = caught.value.details() or ""
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION, details
    assert "dimensions: " in details, details
    assert "4 values, not 2" in details, details
    assert fakes.last_body("together")["dimensions"] == 2  # it was sent, and ignored
