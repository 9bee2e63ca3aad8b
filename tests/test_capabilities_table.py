"""The capability table is data (catalog/features.toml) and docs/capabilities.md shows exactly that
data, so the two cannot drift; every kind the gateway serves has a row, every cell a status."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import RunningGateway
from every_kind import default_fakes_gateway

from provider_gateway.catalog.features import Cell, FeatureTable
from provider_gateway.providers.registry import ADAPTERS

DOC = Path(__file__).resolve().parents[1] / "docs" / "capabilities.md"
MARKER = "<!-- generated from catalog/features.toml: do not edit below -->\n\n"


def test_the_docs_show_the_data_file() -> None:
    text = DOC.read_text()
    assert MARKER in text
    generated = text.split(MARKER, 1)[1]
    assert generated == FeatureTable.builtin().markdown(), (
        "docs/capabilities.md is stale: run python -m provider_gateway.catalog.features"
    )


def test_every_provider_kind_has_a_row_with_every_feature() -> None:
    table = FeatureTable.builtin()
    assert set(table.rows) == set(ADAPTERS)
    for kind, cells in table.rows.items():
        assert list(cells) == list(table.features), kind


def test_the_issue_columns_are_all_there() -> None:
    wanted = {"json_mode", "json_schema", "strict", "tools", "parallel_tool_calls", "tool_choice_auto",
              "tool_choice_none", "tool_choice_required", "tool_choice_named", "vision", "reasoning",
              "stop", "seed", "logprobs", "embeddings", "count_tokens"}  # fmt: skip
    assert wanted <= set(FeatureTable.builtin().features)


@pytest.mark.parametrize("text", ["maybe: sometimes", "native", "refused:  "])
def test_a_cell_without_a_status_and_a_how_is_rejected(text: str) -> None:
    with pytest.raises(ValueError, match=r"native\|emulated\|refused"):
        Cell.parse(text, "here")


def test_like_rows_inherit_and_override() -> None:
    features = {"a": "A", "b": "B"}
    data = {
        "features": features,
        "kinds": {"x": {"a": "native: x a", "b": "refused: no"}, "y": {"like": "x", "b": "emulated: y b"}},
    }
    table = FeatureTable.parse(data)
    assert table.cell("y", "a") == Cell("native", "x a")
    assert table.cell("y", "b") == Cell("emulated", "y b")
    with pytest.raises(ValueError, match="lacks"):
        FeatureTable.parse({"features": features, "kinds": {"z": {"a": "native: z"}}})


@pytest.fixture(scope="module")
async def every_kind() -> AsyncIterator[RunningGateway]:
    async with default_fakes_gateway('[providers.mock]\nkind = "mock"\n') as (running, _):
        yield running


# Capabilities flag -> the table's feature: what an adapter declares must match the data.
FLAG_FEATURES = {"tools": "tools", "vision": "vision", "reasoning": "reasoning", "embeddings": "embeddings"}


async def test_each_adapters_declared_capabilities_agree_with_the_table(every_kind: RunningGateway) -> None:
    table = FeatureTable.builtin()
    for name in every_kind.server.registry.names():
        provider = every_kind.provider(name)
        capabilities = provider.capabilities()
        for flag, feature in FLAG_FEATURES.items():
            cell = table.cell(provider.kind, feature)
            assert cell is not None
            assert getattr(capabilities, flag) == (cell.status != "refused"), (
                f"{name} ({provider.kind}) {flag}: {cell}"
            )
        schema = table.cell(provider.kind, "json_schema")
        assert schema is not None
        assert capabilities.json_output == (schema.status != "refused"), name
