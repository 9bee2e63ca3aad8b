"""Background health monitor: probes each provider on an interval, with jitter, never overlapping.

Each provider has one task that sleeps, probes (`health_check` under a timeout), combines the
answer with the live circuit-breaker state (an open breaker means not serving), and records the
result in a `HealthRecord` (the server's `ProviderHealthBook`, which mirrors it into the standard
gRPC health service: the `provider/<name>` entry flips, Watch subscribers see it, and the overall
entry stays SERVING while any provider serves). Probes run one after another per provider, so a slow probe delays the next
one instead of piling up.

    [health]
    enabled = true      # false: only the probe at start-up
    interval_s = 30     # between the end of one probe and the start of the next
    jitter = 0.1        # each wait is interval_s * (1 ± jitter)
    timeout_s = 5       # a probe that takes longer counts as not serving
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass
from typing import Protocol

from provider_gateway.config import Section
from provider_gateway.observability.gauges import GaugeSources
from provider_gateway.providers.base import Provider

HEALTH_KEYS = ("enabled", "interval_s", "jitter", "timeout_s")
log = logging.getLogger("provider_gateway.health")


class HealthRecord(Protocol):
    """Where probe results are kept and published. The server implements it (imports run down the
    layers: this module must not know the server's health service)."""

    def differs(self, provider: str, healthy: bool, message: str) -> bool: ...

    async def set(self, provider: str, healthy: bool, message: str = "") -> None: ...


@dataclass(slots=True, frozen=True)
class MonitorSettings:
    enabled: bool = True
    interval_s: float = 30.0
    jitter: float = 0.1  # each wait is interval * (1 ± jitter), so providers do not probe in lockstep
    timeout_s: float = 5.0

    @classmethod
    def from_section(cls, section: Section) -> MonitorSettings:
        section.reject_unknown(HEALTH_KEYS)
        jitter = section.number("jitter", 0.1, minimum=0)
        if jitter >= 1:
            raise section.error("jitter", f"must be below 1 (a fraction of the interval), got {jitter}")
        return cls(
            enabled=section.flag("enabled", True),
            interval_s=section.number("interval_s", 30.0, minimum=0.01),
            jitter=jitter,
            timeout_s=section.number("timeout_s", 5.0, minimum=0.01),
        )


class HealthMonitor:
    def __init__(
        self,
        providers: list[Provider],
        book: HealthRecord,
        settings: MonitorSettings,
        gauges: GaugeSources | None = None,
    ) -> None:
        self.providers = providers
        self.book = book
        self.settings = settings
        self.gauges = gauges or GaugeSources()
        self._tasks: list[asyncio.Task[None]] = []
        self.probes = 0  # completed probes, for tests and debugging

    def start(self) -> None:
        if not self.settings.enabled or self._tasks:
            return
        self._tasks = [
            asyncio.create_task(self._watch(p), name=f"health-monitor-{p.name}") for p in self.providers
        ]

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _delay(self) -> float:
        spread = self.settings.jitter
        return self.settings.interval_s * random.uniform(1 - spread, 1 + spread)

    async def _watch(self, provider: Provider) -> None:
        while True:
            await asyncio.sleep(self._delay())
            try:
                await self.probe(provider)
            except asyncio.CancelledError:
                raise
            except Exception:  # the monitor must outlive any one bad probe
                log.exception("health probe of %s failed", provider.name)

    async def probe(self, provider: Provider) -> None:
        """One probe: the provider's answer, overruled by an open breaker; recorded only on change."""
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                status = await provider.health_check()
            healthy, message = status.healthy, status.message
        except TimeoutError:
            healthy, message = False, f"health check timed out after {self.settings.timeout_s:g} s"
        except Exception as exc:
            healthy, message = False, f"health check failed: {type(exc).__name__}"
        breaker = self.gauges.breaker_states().get(provider.name, "closed")
        if healthy and breaker == "open":
            healthy, message = False, "circuit breaker open"
        self.probes += 1
        if self.book.differs(provider.name, healthy, message):
            await self.book.set(provider.name, healthy, message)
