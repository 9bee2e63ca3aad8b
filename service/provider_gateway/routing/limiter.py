"""Adaptive concurrency per deployment (AIMD) and the hook adapters use to report rate-limit headers.

The allowed concurrency grows by one for every `limit` successful calls (additive increase) and is
halved on a 429 or when the provider says little headroom is left (multiplicative decrease), so the
gateway slows down before the provider starts refusing and speeds up again as answers come back.

The shared HTTP layer reports what every response's rate-limit headers say (http/rate_limits.py),
on success and on failure alike; the router installs the sink for the attempt in progress.
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


class AdaptiveLimiter:
    def __init__(
        self, settings: LimiterSettings = LimiterSettings(), clock: Callable[[], float] = time.monotonic
    ):
        self.settings = settings
        self._clock = clock
        self.limit = float(settings.initial)
        self.announced: RateLimitInfo | None = None
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

    def on_rate_limit_info(self, info: RateLimitInfo) -> None:
        self.announced = info  # the provider's own figures, shown by ListProviders
        headroom = info.headroom()
        if headroom is not None and headroom < self.settings.low_headroom:
            self.on_overload()
