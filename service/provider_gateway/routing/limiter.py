"""Adaptive concurrency per deployment (AIMD) and the hook adapters use to report rate-limit headers.

The allowed concurrency grows by one for every `limit` successful calls (additive increase) and is
halved on a 429 or when the provider says little of a per-minute budget is left (multiplicative
decrease; a daily budget only reorders deployments), so the gateway slows down before the provider
starts refusing and speeds up again as answers come back.

The shared HTTP layer reports what every response's rate-limit headers say (http/rate_limits.py),
on success and on failure alike; the router installs the sink for the attempt in progress. What a
provider announced also steers balancing (deployments.py): a deployment low on headroom goes after
those with room, until the budget it announced has refilled.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from provider_gateway.http.rate_limits import RateLimitInfo


@dataclass(slots=True, frozen=True)
class LimiterSettings:
    # Concurrent requests per deployment. Start high: vendors allow hundreds of concurrent streams,
    # and the limit only needs to fall when the upstream signals overload (429, low headroom).
    initial: int = 256
    minimum: int = 1
    maximum: int = 2048
    backoff: float = 0.5  # the multiplicative decrease
    low_headroom: float = 0.1  # decrease when less than this fraction of a budget remains
    decrease_interval_s: float = 1.0  # at most one decrease per interval: one burst of 429s is one signal


# How long an announcement that names no reset time is believed: vendors' budgets are per minute.
ANNOUNCEMENT_TTL_S = 60.0
# How long a 429 that names no wait (Bedrock's ThrottlingException) keeps a deployment behind the
# others: long enough for a burst to pass, short enough not to idle a deployment that recovered.
REFUSAL_MEMORY_S = 10.0


class AdaptiveLimiter:
    def __init__(
        self, settings: LimiterSettings = LimiterSettings(), clock: Callable[[], float] = time.monotonic
    ):
        self.settings = settings
        self._clock = clock
        self.limit = float(settings.initial)
        self.announced: RateLimitInfo | None = None
        self._announced_at = 0.0
        self._refused_until = -1e9
        self.rate_limited = False  # the provider refused for rate at least once (a 429 or its like)
        self.in_flight = 0
        self._last_decrease = -1e9

    def has_capacity(self) -> bool:
        return self.in_flight < int(self.limit)

    def acquire(self) -> None:
        self.in_flight += 1

    def release(self) -> None:
        self.in_flight = max(self.in_flight - 1, 0)

    def on_success(self) -> None:
        self.limit = min(self.limit + 1.0 / max(self.limit, 1.0), float(self.settings.maximum))

    def on_overload(self) -> None:
        now = self._clock()
        if now - self._last_decrease < self.settings.decrease_interval_s:
            return
        self._last_decrease = now
        self.limit = max(self.limit * self.settings.backoff, float(self.settings.minimum))

    def on_rate_limited(self, retry_after_s: float | None) -> None:
        """A 429 or its like (RetryInfo from Gemini and Vertex, Bedrock's ThrottlingException), with
        or without headers: slow down, and go after the deployments with room until the wait ends."""
        self.rate_limited = True
        self.on_overload()
        wait = REFUSAL_MEMORY_S if retry_after_s is None else retry_after_s
        self._refused_until = max(self._refused_until, self._clock() + wait)

    def on_rate_limit_info(self, info: RateLimitInfo) -> None:
        self.announced = info  # the provider's own figures, shown by ListProviders
        self._announced_at = self._clock()
        if self._low(info.minute_headroom()):  # a daily budget only reorders (low_on_headroom)
            self.on_overload()

    def learned(self) -> bool:
        """Whether it remembers what the provider taught it: a limit it lowered on overload (and has
        not yet grown back), or a refusal or low headroom it still acts on. A plain route's state is
        forgotten only without it: the lesson would be paid for again with the provider's 429s."""
        return self.limit < self.settings.initial or self.low_on_headroom()

    def low_on_headroom(self) -> bool:
        """Whether the provider last said that little of a budget remains, and that budget has not
        refilled since (by the reset it announced), or refused for rate within the wait it named."""
        return self._clock() < self._refused_until or self._announced_low()

    def _announced_low(self) -> bool:
        info = self.announced
        if info is None:
            return False
        believed_for = ANNOUNCEMENT_TTL_S if info.reset_s is None else info.reset_s
        if self._clock() - self._announced_at > believed_for:
            return False
        return self._low(info.headroom())

    def _low(self, headroom: float | None) -> bool:
        return headroom is not None and headroom < self.settings.low_headroom
