"""Hooks through which other components feed state-like metrics, read only when metrics are scraped.

The router registers its circuit breakers and limiters, the HTTP layer its connection counters:

    server.telemetry.gauges.add_breaker_source(lambda: {"openai": "closed", "azure": "open"})
    server.telemetry.gauges.add_limiter_source(lambda: [({"provider": "openai", "limit": "rpm"}, 42.0)])
    server.telemetry.gauges.add_connection_source(lambda: {"openai": (3, 120)})  # (opened, reused)

The shared HTTP pool is wired by `Telemetry.watch_upstreams` (keys are origins, e.g.
`https://api.openai.com`); a provider with `connection_stats()` is picked up by `wrap_registry`.

Callbacks must be cheap and must not block: they run at each scrape or export, and the health
monitor reads breaker states at each probe. Registering costs nothing when metrics are off.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

BreakerSource = Callable[[], Mapping[str, str]]  # provider -> "closed" | "half_open" | "open"
LimiterSource = Callable[[], Iterable[tuple[Mapping[str, str], float]]]  # (attributes, spare capacity)
ConnectionSource = Callable[[], Mapping[str, tuple[int, int]]]  # upstream -> (opened, reused), cumulative
BREAKER_LEVELS = {"closed": 0, "half_open": 1, "half-open": 1, "open": 2}
log = logging.getLogger("provider_gateway.observability")


class GaugeSources:
    def __init__(self) -> None:
        self._breakers: list[BreakerSource] = []
        self._limiters: list[LimiterSource] = []
        self._connections: list[ConnectionSource] = []

    def add_breaker_source(self, source: BreakerSource) -> None:
        self._breakers.append(source)

    def add_limiter_source(self, source: LimiterSource) -> None:
        self._limiters.append(source)

    def add_connection_source(self, source: ConnectionSource) -> None:
        self._connections.append(source)

    def breaker_states(self) -> dict[str, str]:
        states: dict[str, str] = {}
        empty: Mapping[str, str] = {}
        for source in self._breakers:
            states.update(_safely(source, empty))
        return states

    def limiter_capacity(self) -> list[tuple[Mapping[str, str], float]]:
        nothing: Iterable[tuple[Mapping[str, str], float]] = ()
        return [item for source in self._limiters for item in _safely(source, nothing)]

    def connections(self) -> dict[str, tuple[int, int]]:
        totals: dict[str, tuple[int, int]] = {}
        empty: Mapping[str, tuple[int, int]] = {}
        for source in self._connections:
            for provider, (opened, reused) in _safely(source, empty).items():
                old = totals.get(provider, (0, 0))
                totals[provider] = (old[0] + opened, old[1] + reused)
        return totals


def _safely[T](source: Callable[[], T], default: T) -> T:
    """A broken source must not break a scrape or the health monitor."""
    try:
        return source()
    except Exception:
        log.exception("a metrics source failed")
        return default
