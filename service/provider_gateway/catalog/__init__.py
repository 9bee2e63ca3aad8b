"""The model catalog: per provider kind and model, what it takes and gives (models.toml, shipped
and versioned, with `[catalog.<kind>."<model>"]` configuration rows over it)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any

from provider_gateway.catalog.features import FeatureTable
from provider_gateway.config import Section
from provider_gateway.domain import ModelInfo
from provider_gateway.model_ids import ModelRows

CATALOG_KEYS = (
    "context_window", "max_output", "input", "output", "tools", "structured_output", "reasoning",
    "embedding_dimensions",
)  # fmt: skip


@dataclass(slots=True, frozen=True)
class ModelEntry:
    context_window: int = 0
    max_output: int = 0  # 0: not documented here
    input: tuple[str, ...] = ("text",)
    output: tuple[str, ...] = ("text",)
    tools: bool = False
    structured_output: bool = False
    reasoning: bool = False
    embedding_dimensions: int = 0

    def filled(self, info: ModelInfo) -> ModelInfo:
        """`info` (a provider's own listing) with what it left at zero or false taken from here."""
        return ModelInfo(
            id=info.id,
            display_name=info.display_name,
            context_window=info.context_window or self.context_window,
            max_output_tokens=info.max_output_tokens or self.max_output,
            vision=info.vision or "image" in self.input,
            tools=info.tools or self.tools,
            reasoning=info.reasoning or self.reasoning,
            embeddings=info.embeddings or self.embedding_dimensions > 0,
        )


class Catalog:
    def __init__(
        self, rows: dict[str, dict[str, ModelEntry]], version: str = "", features: FeatureTable | None = None
    ) -> None:
        self.rows = rows
        self.version = version
        self._rows = ModelRows(rows)
        self.features = features or FeatureTable.builtin()  # per kind (features.toml)

    @classmethod
    def builtin(cls) -> Catalog:
        data = tomllib.loads(resources.files(__package__).joinpath("models.toml").read_text())
        version = str(data.pop("version", ""))
        return cls({k: {m: _entry(v) for m, v in models.items()} for k, models in data.items()}, version)

    @classmethod
    def from_config(cls, section: Section) -> Catalog:
        catalog = cls.builtin()
        for kind in section:
            models = section.table(kind)
            for model in models:
                row = models.table(model)
                row.reject_unknown(CATALOG_KEYS)
                entry = ModelEntry(
                    context_window=row.integer("context_window", 0, minimum=0),
                    max_output=row.integer("max_output", 0, minimum=0),
                    input=tuple(row.strings("input") or ["text"]),
                    output=tuple(row.strings("output") or ["text"]),
                    tools=row.flag("tools", False),
                    structured_output=row.flag("structured_output", False),
                    reasoning=row.flag("reasoning", False),
                    embedding_dimensions=row.integer("embedding_dimensions", 0, minimum=0),
                )
                catalog._rows.put(kind, model, entry)
        return catalog

    def entry(self, kind: str, model: str) -> ModelEntry | None:
        return self._rows.find(kind, model)


def _entry(row: dict[str, Any]) -> ModelEntry:
    return ModelEntry(
        context_window=int(row.get("context_window", 0)),
        max_output=int(row.get("max_output", 0)),
        input=tuple(row.get("input", ["text"])),
        output=tuple(row.get("output", ["text"])),
        tools=bool(row.get("tools", False)),
        structured_output=bool(row.get("structured_output", False)),
        reasoning=bool(row.get("reasoning", False)),
        embedding_dimensions=int(row.get("embedding_dimensions", 0)),
    )
