"""The rate limits a provider announces on its responses, and the hook that carries them to the router.

Every HTTP response (success or error) is read once here, in the shared HTTP layer, so that every
adapter reports what its vendor announces (../shared/docs/wire-reference-2.md section 1):
- OpenAI, Azure, Groq and most OpenAI-compatible hosts: `x-ratelimit-{limit,remaining,reset}-
  {requests,tokens}` (Azure may send only the remaining figures, and -1 for "no limit");
- Anthropic: `anthropic-ratelimit-*` for requests, tokens, input tokens and output tokens;
- OpenRouter (on its 429s) and Together: unsuffixed `x-ratelimit-{limit,remaining,reset}`, a
  request budget whose reset may be an epoch time (OpenRouter's, in milliseconds);
- Fireworks: `x-ratelimit-limit-tokens-{prompt,generated}` (and remaining figures where sent);
- Mistral: `x-ratelimit-{limit,remaining}-{req,tokens}-minute` (as mistralai/client-ts#169 shows
  them; no reset header seen).
Resets are durations ("6m0s"), RFC 3339 times or epoch times. A host whose request budget is not
per minute (Groq's is per day) says so through `requests_window_s`, so that ListProviders does not
show it as requests per minute. Gemini and Vertex announce nothing on success; their 429's
google.rpc.RetryInfo is read with the error (http/errors.py), as Bedrock's ThrottlingException is by
its adapter: the router hears both as RESOURCE_EXHAUSTED. The router installs a sink for the
attempt in progress (a context variable), and its AIMD limiter slows down before the first 429.
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Protocol

from provider_gateway.domain import Usage, value
from provider_gateway.http.errors import MAX_RETRY_DELAY_S, seconds_until_reset


@value  # built for every response of a provider that announces its limits: see domain.value
class RateLimitInfo:
    """Figures from `x-ratelimit-*` / `anthropic-ratelimit-*` style headers; None when not sent.

    `reset_s` is the number of seconds until the most constrained budget refills;
    `requests_window_s` the window of the request budget (tokens are per minute everywhere).
    """

    remaining_requests: int | None = None
    limit_requests: int | None = None
    remaining_tokens: int | None = None
    limit_tokens: int | None = None
    reset_s: float | None = None
    requests_window_s: float = 60.0

    def headroom(self) -> float | None:
        """The smallest remaining fraction of any budget reported, or None when nothing usable was sent."""
        fractions = [
            remaining / limit
            for remaining, limit in (
                (self.remaining_requests, self.limit_requests),
                (self.remaining_tokens, self.limit_tokens),
            )
            if remaining is not None and limit
        ]
        if self.remaining_requests == 0 or self.remaining_tokens == 0:
            return 0.0
        return min(fractions) if fractions else None

    def minute_headroom(self) -> float | None:
        """`headroom()` of the budgets that refill within a minute. A request budget per day (Groq's)
        running low is a reason to prefer other deployments, not to serve fewer requests at once:
        it refills at its hour whatever the concurrency."""
        if self.requests_window_s <= 60.0:
            return self.headroom()
        return dataclasses.replace(self, remaining_requests=None, limit_requests=None).headroom()


class AttemptSinks(Protocol):
    """Where the provider's code reports to the attempt in progress (the router's AttemptInfo,
    routing/attempt.py): the rate limits its responses announce, and the usage it hears before its
    end (providers/reported_usage.py; the argument is that module's `Heard`). One context variable
    holds the attempt with both: the router sets and resets one variable per attempt, not three."""

    @property
    def rate_limits(self) -> Callable[[RateLimitInfo], None] | None: ...

    @property
    def partial_usage(self) -> Callable[[Usage | Callable[[], Usage | None]], None] | None: ...


# The attempt in progress (None: outside the router); the router names it CURRENT_ATTEMPT.
ATTEMPT_SINKS: ContextVar[AttemptSinks | None] = ContextVar("provider_gateway_attempt", default=None)


def report_rate_limit(info: RateLimitInfo) -> None:
    """Pass what a response announced to the attempt in progress; a no-op outside the router."""
    attempt = ATTEMPT_SINKS.get()
    if attempt is not None and (sink := attempt.rate_limits) is not None:
        sink(info)


@value  # up to two a response, as RateLimitInfo
class _Budget:
    limit: int | None
    remaining: int | None
    reset: str | None  # as sent: read only for the tightest budget, the one whose reset counts

    @property
    def fraction(self) -> float:
        if self.remaining == 0:
            return 0.0
        return self.remaining / self.limit if self.remaining is not None and self.limit else 1.0


# (limit, remaining, reset) header names of each budget, per vendor family
_OPENAI_REQUESTS = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
)
_OPENAI_TOKENS = ("x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens")
_UNSUFFIXED_REQUESTS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")
_MISTRAL_REQUESTS = ("x-ratelimit-limit-req-minute", "x-ratelimit-remaining-req-minute", "")
_MISTRAL_TOKENS = ("x-ratelimit-limit-tokens-minute", "x-ratelimit-remaining-tokens-minute", "")
_FIREWORKS_TOKENS = tuple(
    tuple(f"x-ratelimit-{p}-tokens-{family}" for p in ("limit", "remaining", "reset"))
    for family in ("prompt", "generated")
)
_ANTHROPIC_REQUESTS = tuple(f"anthropic-ratelimit-requests-{p}" for p in ("limit", "remaining", "reset"))
_ANTHROPIC_TOKENS = tuple(
    tuple(f"anthropic-ratelimit-{family}-{p}" for p in ("limit", "remaining", "reset"))
    for family in ("tokens", "input-tokens", "output-tokens")
)


_PREFIXES = ("x-ratelimit-", "anthropic-ratelimit-")
_MARK = "ratelimit-"  # in both prefixes: a response whose names lack it announces nothing


def announced(
    headers: Mapping[str, str], now: float | None = None, requests_window_s: float = 60.0
) -> RateLimitInfo | None:
    """What `headers` say of the caller's budgets; None when they say nothing. Of several token
    budgets, the tightest counts. Names are matched whatever their case.

    Every response passes here: one pass over the headers picks the rate-limit ones, so a response
    without any (most) costs a loop over its names, instead of a case-insensitive lookup per name
    this module knows (33 of them, about 4% of a unary call's CPU through httpx's `Headers`).
    Before that pass, one substring test of all the names joined rejects a response without any
    (every name here contains "ratelimit-"): one join and one lower() instead of a lower() and a
    startswith() per name, about 8k instructions a response fewer (benchmarks/RESULTS.md)."""
    if _MARK not in "\n".join(headers).lower():
        return None
    return read_announced(headers, now, requests_window_s)


def read_announced(
    headers: Mapping[str, str], now: float | None = None, requests_window_s: float = 60.0
) -> RateLimitInfo | None:
    """`announced` without its quick rejection: the general reading, which that must agree with."""
    limits = {key: value for name, value in headers.items() if (key := name.lower()).startswith(_PREFIXES)}
    if not limits:
        return None
    wall = time.time() if now is None else now
    requests = next(
        (
            b
            for names in (_OPENAI_REQUESTS, _ANTHROPIC_REQUESTS, _MISTRAL_REQUESTS, _UNSUFFIXED_REQUESTS)
            if (b := _budget(limits, names))
        ),
        None,
    )
    token_budgets = [
        b
        for names in (_OPENAI_TOKENS, *_ANTHROPIC_TOKENS, _MISTRAL_TOKENS, *_FIREWORKS_TOKENS)
        if (b := _budget(limits, names))
    ]
    tokens = min(token_budgets, key=lambda b: b.fraction) if token_budgets else None
    if requests is None and tokens is None:
        return None
    tightest = min((b for b in (requests, tokens) if b is not None), key=lambda b: b.fraction)
    return RateLimitInfo(
        remaining_requests=requests.remaining if requests else None,
        limit_requests=requests.limit if requests else None,
        remaining_tokens=tokens.remaining if tokens else None,
        limit_tokens=tokens.limit if tokens else None,
        reset_s=_seconds_until(tightest.reset, wall),
        requests_window_s=requests_window_s,
    )


def _budget(limits: dict[str, str], names: tuple[str, ...]) -> _Budget | None:
    limit_name, remaining_name, reset_name = names  # reset_name "" (none sent) is never a key
    limit, remaining = limits.get(limit_name), limits.get(remaining_name)
    if limit is None and remaining is None:
        return None
    return _Budget(_integer(limit), _integer(remaining), limits.get(reset_name))


def _integer(text: str | None) -> int | None:
    """A budget figure; None when absent, unreadable or negative (Azure's -1: no figure)."""
    try:
        value = int(text) if text is not None else None
    except ValueError:
        return None
    return value if value is None or value >= 0 else None


def _seconds_until(text: str | None, now: float) -> float | None:
    """A reset as OpenAI sends it ("6m0s", "20ms"), as an epoch time (OpenRouter's, in ms) or as
    Anthropic does (an RFC 3339 time). None when unreadable ("nan", "inf"); at most a day, as a
    retry delay: the limiter believes an announcement until its reset, and must not for ever."""
    if text is None:
        return None
    if (seconds := seconds_until_reset(text, now)) is None:
        try:
            moment = datetime.datetime.fromisoformat(text)
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.UTC)
        seconds = moment.timestamp() - now
    return min(max(seconds, 0.0), MAX_RETRY_DELAY_S)
