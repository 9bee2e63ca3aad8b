"""What a call cost: a price table per provider kind and model, and the cost of one usage.

The table ships with the package (prices.toml, versioned, each row with its source and date) and
the configuration's `[prices.<kind>."<model>"]` rows override or add to it. A model with no row
has an unknown cost, never 0. Amounts are integer micro-units of USD: a price per million tokens
is exactly micro-dollars per token, so the sums are exact.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any

from provider_gateway.config import Section
from provider_gateway.domain import Cost, Usage
from provider_gateway.model_ids import row_for

PRICE_KEYS = ("input", "output", "cache_read", "cache_write", "source", "date")


@dataclass(slots=True, frozen=True)
class Price:
    """USD per million tokens (= micro-USD per token)."""

    input: float
    output: float
    cache_read: float | None = None  # None: billed as input
    cache_write: float | None = None
    source: str = ""
    date: str = ""


class PriceTable:
    def __init__(self, rows: dict[str, dict[str, Price]], version: str = "") -> None:
        self.rows = rows
        self.version = version

    @classmethod
    def builtin(cls) -> PriceTable:
        data = tomllib.loads(resources.files(__package__).joinpath("prices.toml").read_text())
        version = str(data.pop("version", ""))
        return cls(
            {kind: {m: _price(v) for m, v in models.items()} for kind, models in data.items()}, version
        )

    @classmethod
    def from_config(cls, section: Section) -> PriceTable:
        """The built-in table with the config's `[prices.<kind>."<model>"]` rows over it."""
        table = cls.builtin()
        for kind in section:
            models = section.table(kind)
            for model in models:
                row = models.table(model)
                row.reject_unknown(PRICE_KEYS)
                table.rows.setdefault(kind, {})[model] = Price(
                    input=row.number("input", 0.0, minimum=0),
                    output=row.number("output", 0.0, minimum=0),
                    cache_read=row.number("cache_read", 0.0, minimum=0) if "cache_read" in row else None,
                    cache_write=row.number("cache_write", 0.0, minimum=0) if "cache_write" in row else None,
                    source=row.string("source", "configuration"),
                    date=row.string("date", ""),
                )
        return table

    def price(self, kind: str, model: str) -> Price | None:
        return row_for(self.rows.get(kind, {}), model)

    def cost(self, kind: str, model: str, usage: Usage | None, source: str = "") -> Cost:
        """The cost of `usage` on `model`; unknown without a price (or without usage). `source`:
        where the usage comes from ("provider", "partial", "estimated"); by default, as it says."""
        if usage is None:
            source = "none"
        elif not source:
            source = "estimated" if usage.estimated else "provider"
        price = self.price(kind, model)
        if usage is None or price is None:
            return Cost(0, known=False, usage_source=source)
        cached = usage.cache_read_tokens + usage.cache_write_tokens
        uncached = max(usage.input_tokens - cached, 0)  # input_tokens includes the cache's, normalised
        read = price.input if price.cache_read is None else price.cache_read
        write = price.input if price.cache_write is None else price.cache_write
        micros = (
            uncached * price.input
            + usage.cache_read_tokens * read
            + usage.cache_write_tokens * write
            + usage.output_tokens * price.output
        )
        return Cost(round(micros), known=True, usage_source=source)


def _price(row: dict[str, Any]) -> Price:
    return Price(
        input=float(row["input"]),
        output=float(row["output"]),
        cache_read=float(row["cache_read"]) if "cache_read" in row else None,
        cache_write=float(row["cache_write"]) if "cache_write" in row else None,
        source=str(row.get("source", "")),
        date=str(row.get("date", "")),
    )


def total(costs: list[Cost]) -> Cost:
    """A request's cost: its attempts' together, known only when each is."""
    if not costs:
        return Cost(0, known=False, usage_source="none")
    sources = {c.usage_source for c in costs if c.usage_source != "none"}
    # The least certain source names the whole: one estimate makes the total an estimate.
    source = next((s for s in ("estimated", "partial", "provider") if s in sources), "none")
    return Cost(sum(c.amount_micros for c in costs), known=all(c.known for c in costs), usage_source=source)
