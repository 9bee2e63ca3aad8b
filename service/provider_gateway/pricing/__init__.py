"""What a call cost: a price table per provider kind and model, and the cost of one usage.

The table ships with the package (prices.toml, versioned, each row with its source and date) and
the configuration's `[prices.<kind>."<model>"]` rows override or add to it. A model with no row
has an unknown cost, never 0. Amounts are integer micro-units of USD: a price per million tokens
is exactly micro-dollars per token, so the sums are exact.

What is priced apart, where the row says so: cache writes by TTL (Anthropic's 1-hour writes cost
more than its 5-minute ones; the provider's usage names them), reasoning tokens, input images and
requests; and a prompt past a long-context threshold is billed whole at the long-context tier.

The service tier the provider says it served the request on (Usage.service_tier) picks the row's
prices: standard ("" or "standard"), or the row's flex or priority prices. A tier the row has no
prices for (a flex answer on a row without `flex_*`; tiers bought as capacity, with no per-token
list price: Anthropic's Priority Tier, OpenAI's scale, Bedrock's reserved, Vertex's provisioned
throughput) is priced at the row's standard prices, the best estimate there is, and said once in
the log per row and tier: an unknown cost would leave a money budget charged the request's whole
worst case, and cost dashboards without it.
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Mapping
from importlib import resources
from typing import Any

from provider_gateway.config import Section
from provider_gateway.domain import Cost, Usage
from provider_gateway.model_ids import ModelRows
from provider_gateway.pricing.price import (
    NUMBER_KEYS,
    PRICE_KEYS,
    SERVICE_TIERS,
    TOKEN_KEYS,
    Price,
    TokenPrices,
    price_from,
)

__all__ = ["PRICE_KEYS", "Price", "PriceTable", "TokenPrices", "one_hour_cache_writes", "total"]

log = logging.getLogger("provider_gateway.pricing")
# Rows and tiers already said to be priced at standard (bounded: rows are configured, tiers few).
MAX_UNPRICED_SAID = 1024

# Where Anthropic's usage (kept whole in Usage.raw) names its 1-hour cache writes.
ONE_HOUR_WRITES = ("cache_creation", "ephemeral_1h_input_tokens")


class PriceTable:
    def __init__(self, rows: dict[str, dict[str, Price]], version: str = "") -> None:
        self.rows = rows
        self.version = version
        self._rows = ModelRows(rows)
        self._unpriced_said: set[tuple[str, str]] = set()

    @classmethod
    def builtin(cls) -> PriceTable:
        data = tomllib.loads(resources.files(__package__).joinpath("prices.toml").read_text())
        version = str(data.pop("version", ""))
        return cls(
            {kind: {m: price_from(v) for m, v in models.items()} for kind, models in data.items()}, version
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
                for key in NUMBER_KEYS:
                    if key in row:
                        row.number(key, 0.0, minimum=0)  # checked here, with the key named
                _check_long_context(row)
                _check_service_tiers(row)
                table._rows.put(kind, model, price_from(row.raw(), "configuration"))
        return table

    def _unpriced(self, price: Price, tier: str) -> None:
        tier = tier[:64]  # the vendor's word, as it came
        said = (price.source, tier)
        if said not in self._unpriced_said and len(self._unpriced_said) < MAX_UNPRICED_SAID:
            self._unpriced_said.add(said)
            log.warning(
                "priced at standard rates: an answer was served on the %r tier, which the price row "
                "(%s) has no prices for; add its %s_* keys under [prices] to price it",
                tier,
                price.source,
                tier,
            )

    def price(self, kind: str, model: str) -> Price | None:
        return self._rows.find(kind, model)

    def cost(self, kind: str, model: str, usage: Usage | None, source: str = "", images: int = 0) -> Cost:
        """The cost of `usage` on `model` (and of `images` input images); unknown without a price (or
        without usage). `source`: where the usage comes from ("provider", "partial", "estimated");
        by default, as it says."""
        return self.cost_at(self.price(kind, model), usage, source, images)

    def cost_at(self, price: Price | None, usage: Usage | None, source: str = "", images: int = 0) -> Cost:
        """`cost` at the price row `price` (`price(kind, model)`), for a caller that needs the row
        first: the router counts a request's images only when its row prices them."""
        if usage is None:
            source = "none"
        elif not source:
            source = "estimated" if usage.estimated else "provider"
        # (Cost's fields positionally: amount_micros, known, usage_source; keywords cost more)
        if usage is None or price is None:
            return Cost(0, False, source)
        prices = price.served(usage.input_tokens, usage.service_tier)
        if prices is None:  # served on a tier this row has no prices for: its standard ones
            self._unpriced(price, usage.service_tier)
            prices = price.tier(usage.input_tokens)
        micros = _token_micros(prices, usage)
        micros += (images * price.per_image + price.per_request) * 1e6
        return Cost(round(micros), True, source)


def _check_long_context(row: Section) -> None:
    """The long-context prices and their threshold come together: no key is ignored. Each error
    names the key to add, and the key that requires it."""
    long = [k for k in (f"long_context_{key}" for key in TOKEN_KEYS[:5]) if k in row]
    if "long_context_tokens" in row:
        _require(row, ("long_context_input", "long_context_output"), "long_context_tokens")
    elif long:  # prices for a tier that never starts
        raise row.error("long_context_tokens", f"required with {long[0]}")


def _check_service_tiers(row: Section) -> None:
    """A tier's input and output prices come together (as the standard tier's do), and its
    long-context ones with them, on a row with a long-context threshold: no key is ignored. Each
    error names the key to add, and a key of the same group that requires it."""
    for tier in SERVICE_TIERS:
        tokens = [k for k in (f"{tier}_{key}" for key in TOKEN_KEYS[:5]) if k in row]
        long = [k for k in (f"{tier}_long_context_{key}" for key in TOKEN_KEYS[:5]) if k in row]
        if long and "long_context_tokens" not in row:
            raise row.error("long_context_tokens", f"required with {long[0]}")
        if tokens or long:
            _require(row, (f"{tier}_input", f"{tier}_output"), (tokens or long)[0])
        if long:
            _require(row, (f"{tier}_long_context_input", f"{tier}_long_context_output"), long[0])


def _require(row: Section, keys: tuple[str, ...], given: str) -> None:
    for key in keys:
        if key not in row:
            raise row.error(key, f"required with {given}")


def _token_micros(prices: TokenPrices, usage: Usage) -> float:
    cached = usage.cache_read_tokens + usage.cache_write_tokens
    uncached = max(usage.input_tokens - cached, 0)  # input_tokens includes the cache's, normalised
    read = prices.input if prices.cache_read is None else prices.cache_read
    write = prices.input if prices.cache_write is None else prices.cache_write
    write_1h = write if prices.cache_write_1h is None else prices.cache_write_1h
    long_writes = min(one_hour_cache_writes(usage), usage.cache_write_tokens)
    reasoning = min(usage.reasoning_tokens, usage.output_tokens) if prices.reasoning is not None else 0
    return (
        uncached * prices.input
        + usage.cache_read_tokens * read
        + (usage.cache_write_tokens - long_writes) * write
        + long_writes * write_1h
        + (usage.output_tokens - reasoning) * prices.output
        + reasoning * (prices.reasoning or 0.0)
    )


def one_hour_cache_writes(usage: Usage) -> int:
    """The cache writes the provider says were for one hour (priced apart); 0 when it does not say."""
    section, name = ONE_HOUR_WRITES
    writes: Any = usage.raw.get(section)
    value: Any = writes.get(name, 0) if isinstance(writes, Mapping) else 0
    return int(value) if isinstance(value, int | float) else 0


# Where a cost's usage comes from, as `Cost.usage_source` names it.
USAGE_SOURCES = frozenset(("provider", "partial", "estimated", "none"))


def total(costs: list[Cost]) -> Cost:
    """A request's cost: its attempts' together, known only when each is."""
    if not costs:
        return Cost(0, known=False, usage_source="none")
    if len(costs) == 1 and costs[0].usage_source in USAGE_SOURCES:
        return costs[0]  # one attempt (nearly every request): the same total, without building it
    sources = {c.usage_source for c in costs if c.usage_source != "none"}
    # The least certain source names the whole: one estimate makes the total an estimate.
    source = next((s for s in ("estimated", "partial", "provider") if s in sources), "none")
    return Cost(sum(c.amount_micros for c in costs), known=all(c.known for c in costs), usage_source=source)
