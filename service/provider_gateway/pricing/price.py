"""One price row: what a model's tokens, cache, reasoning, images and requests cost, with its tiers.

Token prices are USD per million tokens (= micro-USD per token); per-image and per-request prices
are USD per image and per request. A row read from prices.toml and one from the configuration go
through the same `price_from`, so both accept the same keys (PRICE_KEYS).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

TOKEN_KEYS = ("input", "output", "cache_read", "cache_write", "cache_write_1h", "reasoning")
LONG_CONTEXT_KEYS = tuple(f"long_context_{key}" for key in ("tokens", *TOKEN_KEYS[:5]))
PRICE_KEYS = (
    *TOKEN_KEYS,
    "per_image",
    "per_request",
    "batch_input",
    "batch_output",
    *LONG_CONTEXT_KEYS,
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

    def tier(self, prompt_tokens: int) -> TokenPrices:
        """The token prices of a prompt of `prompt_tokens` (the long-context tier past its threshold)."""
        if self.long_context is not None and prompt_tokens > self.long_context_tokens:
            return self.long_context
        return self.tokens


def price_from(row: Mapping[str, Any], default_source: str = "") -> Price:
    """A price row from its TOML keys (numbers already checked when they come from the config)."""

    def number(key: str) -> float | None:
        return float(row[key]) if key in row else None

    long_context = None
    if "long_context_tokens" in row:
        long_context = TokenPrices(
            input=float(row["long_context_input"]),
            output=float(row["long_context_output"]),
            cache_read=number("long_context_cache_read"),
            cache_write=number("long_context_cache_write"),
            cache_write_1h=number("long_context_cache_write_1h"),
            reasoning=number("reasoning"),
        )
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
    )
