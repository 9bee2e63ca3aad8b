"""ListModels reports the catalog (issue 17.4) for the models each kind's fake lists, through the
real gRPC API: what a provider's own listing leaves out (limits, modalities, tools, reasoning,
embeddings) comes from catalog/models.toml, and every fake's models have a row."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from conftest import RunningGateway
from every_kind import default_fakes_gateway

from provider_gateway.catalog import Catalog
from provider_gateway.v1 import provider_service_pb2 as pb

# provider -> (kind, a model its fake lists without the figures; a provider's own figures win)
LISTED = {
    "anthropic": ("anthropic", "claude-haiku-4-5"),
    "cohere": ("cohere", "embed-v4.0"),
    "ollama": ("ollama", "llama3.2:latest"),
}


@pytest.fixture(scope="module")
async def gateway() -> AsyncIterator[RunningGateway]:
    async with default_fakes_gateway() as (running, _):
        yield running


@pytest.mark.parametrize("provider", list(LISTED))
async def test_list_models_reports_the_catalog(gateway: Any, provider: str) -> None:
    kind, model_id = LISTED[provider]
    entry = Catalog.builtin().entry(kind, model_id)
    assert entry is not None, f"{kind} {model_id}: the fake lists it, the catalog has no row"
    listed = await gateway.stub.ListModels(pb.ListModelsRequest(provider=provider), timeout=20)
    (model,) = [m for m in listed.models if m.id == model_id]
    assert model.context_window == entry.context_window
    assert model.max_output_tokens == entry.max_output
    assert (model.vision, model.tools, model.embeddings) == (
        "image" in entry.input,
        entry.tools,
        entry.embedding_dimensions > 0,
    )
    assert model.reasoning == entry.reasoning


def test_the_presets_and_examples_models_have_rows() -> None:
    """Models the fakes, presets' tests and docs examples name (sources in models.toml)."""
    catalog = Catalog.builtin()
    named = {
        "openai": ["gpt-4o-2024-08-06", "o3-mini", "gpt-5-mini", "text-embedding-3-small"],
        "anthropic": ["claude-3-5-haiku-20241022", "claude-opus-4-1-20250805"],
        "vertex": ["claude-sonnet-4-5@20250929", "claude-3-5-haiku@20241022", "text-embedding-005"],
        "gemini": ["gemini-2.5-flash", "gemini-embedding-001"],
        "groq": ["llama-3.3-70b-versatile"],
        "deepseek": ["deepseek-chat", "deepseek-reasoner"],
        "mistral": ["mistral-small-latest", "mistral-large-latest"],
        "cohere": ["command-a-03-2025", "embed-v4.0"],
        "ollama": ["llama3.2", "llama3.2:latest"],
        "bedrock": ["anthropic.claude-sonnet-4-5-20250929-v1:0", "us.anthropic.claude-haiku-4-5-20251001-v1:0", "amazon.titan-embed-text-v2:0"],
    }  # fmt: skip
    missing = [
        f"{kind}/{m}" for kind, models in named.items() for m in models if catalog.entry(kind, m) is None
    ]
    assert missing == []
