"""One price row: what a model's tokens, cache, reasoning, images and requests cost, with its tiers
(long context; the flex and priority service tiers a provider may serve a request on).

Token prices are USD per million tokens (= micro-USD per token); per-image and per-request prices
are USD per image and per request. A row read from prices.toml and one from the configuration go
through the same `price_from`, so both accept the same keys (PRICE_KEYS).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

TOKEN_KEYS = ("input", "output", "cache_read", "cache_write", "cache_write_1h", "reasoning")
LONG_CONTEXT_KEYS = tuple(f"long_context_{key}" for key in ("tokens", *TOKEN_KEYS[:5]))
# Service tiers priced apart from the standard one (Usage.service_tier's words): `flex_input`,
# `priority_long_context_output`... over the same keys as the standard tier (reasoning aside).
SERVICE_TIERS = ("flex", "priority")
SERVICE_TIER_KEYS = tuple(
    f"{tier}_{key}" for tier in SERVICE_TIERS for key in (*TOKEN_KEYS[:5], *LONG_CONTEXT_KEYS[1:])
)
PRICE_KEYS = (
    *TOKEN_KEYS,
    "per_image",
    "per_request",
    "batch_input",
    "batch_output",
    *LONG_CONTEXT_KEYS,
    *SERVICE_TIER_KEYS,
    "source",
    "date",
)
NUMBER_KEYS = tuple(k for k in PRICE_KEYS if k not in ("source", "date"))


@dataclass(slots=True, frozen=True)
class TokenPrices:
    """USD per million tokens (= micro-USD per token) of one tier."""

    input: float
    output: float
    cache_read: float | None = None  # None: billed as input
    cache_write: float | None = None  # a 5-minute cache write (Anthropic's default TTL); None: as input
    cache_write_1h: float | None = None  # a 1-hour cache write; None: as a 5-minute one
    reasoning: float | None = None  # None: billed as output (every vendor here, today)


@dataclass(slots=True, frozen=True)
class TierPrices:
    """A service tier's prices: its standard and (where the row has one) long-context ones."""

    tokens: TokenPrices
    long_context: TokenPrices | None = None


@dataclass(slots=True, frozen=True)
class Price:
    tokens: TokenPrices
    # Prompts of more than `long_context_tokens` (input, cache included) are billed, whole, at
    # `long_context` (Gemini 2.5 Pro, Claude Sonnet 4/4.5 beyond 200K).
    long_context_tokens: int = 0
    long_context: TokenPrices | None = None
    per_image: float = 0.0  # USD per input image, where a vendor bills images apart from tokens
    per_request: float = 0.0  # USD per request that reached the provider
    # The vendor's batch API prices: documented for the record; the gateway calls no batch API.
    batch_input: float | None = None
    batch_output: float | None = None
    source: str = ""
    date: str = ""
    # The flex and priority tiers' prices, where known (SERVICE_TIERS).
    service_tiers: Mapping[str, TierPrices] = field(default_factory=dict)

    def tier(self, prompt_tokens: int) -> TokenPrices:
        """The token prices of a prompt of `prompt_tokens` (the long-context tier past its threshold)."""
        if self.long_context is not None and prompt_tokens > self.long_context_tokens:
            return self.long_context
        return self.tokens

    def served(self, prompt_tokens: int, service_tier: str) -> TokenPrices | None:
        """The token prices of a prompt served on `service_tier` (Usage.service_tier); None when
        this row does not know that tier's prices (its long-context ones included), so that the
        cost is unknown rather than the standard one."""
        if not service_tier or service_tier == "standard":
            return self.tier(prompt_tokens)
        prices = self.service_tiers.get(service_tier)
        if prices is None:
            return None
        if self.long_context is not None and prompt_tokens > self.long_context_tokens:
            return prices.long_context
        return prices.tokens


def price_from(row: Mapping[str, Any], default_source: str = "") -> Price:
    """A price row from its TOML keys (numbers already checked when they come from the config)."""

    def number(key: str) -> float | None:
        return float(row[key]) if key in row else None

    def token_prices(prefix: str) -> TokenPrices | None:
        if f"{prefix}input" not in row:
            return None
        return TokenPrices(
            input=float(row[f"{prefix}input"]),
            output=float(row[f"{prefix}output"]),
            cache_read=number(f"{prefix}cache_read"),
            cache_write=number(f"{prefix}cache_write"),
            cache_write_1h=number(f"{prefix}cache_write_1h"),
            reasoning=number("reasoning"),
        )

    long_context = token_prices("long_context_") if "long_context_tokens" in row else None
    service_tiers = {
        tier: TierPrices(tokens, token_prices(f"{tier}_long_context_"))
        for tier in SERVICE_TIERS
        if (tokens := token_prices(f"{tier}_")) is not None
    }
    return Price(
        tokens=TokenPrices(
            input=float(row.get("input", 0.0)),
            output=float(row.get("output", 0.0)),
            cache_read=number("cache_read"),
            cache_write=number("cache_write"),
            cache_write_1h=number("cache_write_1h"),
            reasoning=number("reasoning"),
        ),
        long_context_tokens=int(row.get("long_context_tokens", 0)),
        long_context=long_context,
        per_image=float(row.get("per_image", 0.0)),
        per_request=float(row.get("per_request", 0.0)),
        batch_input=number("batch_input"),
        batch_output=number("batch_output"),
        source=str(row.get("source", default_source)),
        date=str(row.get("date", "")),
        service_tiers=service_tiers,
    )
