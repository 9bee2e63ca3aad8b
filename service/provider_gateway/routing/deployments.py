"""Deployments (one provider + model, with its breaker, limiter and latency estimate) and balancing.

`order` returns every deployment of a group, best first, so that failover walks the rest in a
sensible order: weighted random without replacement, or power of two choices over the expected
wait (EWMA of time to first token times requests in flight) for the first pick. Either way, a
deployment whose provider announced that little of its budget remains goes after those with room
(backups stay last), so load moves away before the provider starts answering 429.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence

from provider_gateway.providers.base import Provider
from provider_gateway.routing.breaker import BreakerState, CircuitBreaker
from provider_gateway.routing.limiter import AdaptiveLimiter
from provider_gateway.routing.settings import DeploymentSpec, RoutingSettings

EWMA_ALPHA = 0.3  # weight of the newest sample: adapts within a handful of requests
UNKNOWN_TTFT_S = 0.0  # an unmeasured deployment looks fast, so it gets measured


class Deployment:
    def __init__(
        self,
        key: str,
        spec: DeploymentSpec,
        provider: Provider,
        settings: RoutingSettings,
        clock: Callable[[], float],
        on_breaker_change: Callable[[Deployment, BreakerState], None],
    ) -> None:
        self.key = key
        # The store's keys of its holds (the breaker's ejection, its provider's rate limit, its
        # account out of credit), read for every request: made once here.
        self.held_keys = (key, rate_limit_hold(key), credit_hold(key))
        self.spec = spec
        self.provider = provider
        self.kind = provider.kind  # its adapter's kind (prices, catalog), read per call: kept here
        self.settings = settings
        self.breaker = CircuitBreaker(settings.breaker, clock, lambda state: on_breaker_change(self, state))
        self.limiter = AdaptiveLimiter(settings.limiter, clock)
        self.ewma_ttft_s = UNKNOWN_TTFT_S
        self._measured = False
        self._clock = clock
        # Until when its account is out of credit (a 429 `insufficient_quota` here): its hold is
        # then told as that, not as a rate limit.
        self._out_of_credit_until = 0.0

    def out_of_credit(self, hold_s: float) -> None:
        # The later end: another replica's hold, read again while it runs, never shortens this one.
        self._out_of_credit_until = max(self._out_of_credit_until, self._clock() + hold_s)

    def out_of_credit_for(self) -> float:
        """Seconds its out-of-credit hold still runs (0.0: none)."""
        return max(self._out_of_credit_until - self._clock(), 0.0)

    def record_ttft(self, seconds: float) -> None:
        if not self._measured:
            self.ewma_ttft_s, self._measured = seconds, True
        else:
            self.ewma_ttft_s += EWMA_ALPHA * (seconds - self.ewma_ttft_s)

    def expected_wait(self) -> float:
        return (self.ewma_ttft_s or 1e-3) * (self.limiter.in_flight + 1)

    def is_idle(self) -> bool:
        """Nothing in flight and nothing remembered that routing needs: a closed breaker, a limiter
        that learned nothing from the provider's overload signals, and no account out of credit
        (whose refusals name it)."""
        limiter = self.limiter
        return (
            limiter.in_flight == 0
            and self.breaker.state is BreakerState.CLOSED
            and not limiter.learned()
            and not self.out_of_credit_for()
        )

    def is_unused(self) -> bool:
        """Nothing in flight and a closed breaker (what its limiter learned aside)."""
        return self.limiter.in_flight == 0 and self.breaker.state is BreakerState.CLOSED

    def __repr__(self) -> str:
        return f"Deployment({self.key})"


def rate_limit_hold(key: str) -> str:
    """The ejection a provider's rate limit puts on a deployment, apart from its breaker's, so that a
    request nothing else can serve is told RESOURCE_EXHAUSTED (wait and retry), not UNAVAILABLE."""
    return f"{key}#rate-limited"


def credit_hold(key: str) -> str:
    """The hold an account out of credit puts on a deployment, apart from a rate limit's, so that
    another replica refusing a request during it says what to change, not "rate limit"."""
    return f"{key}#out-of-credit"


def hold_keys(deployments: Sequence[Deployment]) -> list[str]:
    """The store's keys of these deployments' holds, by kind: the breakers' ejections, then the
    providers' rate limits, then the accounts out of credit."""
    if len(deployments) == 1:  # a plain route (most calls): its keys as they are
        return list(deployments[0].held_keys)
    return (
        [d.key for d in deployments]
        + [d.held_keys[1] for d in deployments]
        + [d.held_keys[2] for d in deployments]
    )


def read_holds(
    deployments: Sequence[Deployment], held: Sequence[float]
) -> Iterator[tuple[Deployment, float, float]]:
    """Each deployment with the seconds its breaker's ejection and its provider's hold still run,
    from the store's answer for `hold_keys`. An account out of credit, maybe on another replica's
    word, is remembered on the deployment, so that a refusal here names it too."""
    count = len(deployments)
    for i, deployment in enumerate(deployments):
        limited, credit = held[count + i], held[2 * count + i]
        if credit > 0:
            deployment.out_of_credit(credit)
        yield deployment, held[i], max(limited, credit)


def _weighted_pick(pool: list[Deployment], rng: random.Random) -> Deployment:
    total = sum(d.spec.weight for d in pool)
    if total <= 0:
        return pool[0]
    point = rng.random() * total
    for deployment in pool:
        point -= deployment.spec.weight
        if point < 0:
            return deployment
    return pool[-1]


def weighted_order(deployments: Sequence[Deployment], rng: random.Random) -> list[Deployment]:
    """Weighted random order without replacement; weight-0 deployments are backups, kept last."""
    pool = [d for d in deployments if d.spec.weight > 0]
    ordered: list[Deployment] = []
    while pool:
        chosen = _weighted_pick(pool, rng)
        ordered.append(chosen)
        pool.remove(chosen)
    return ordered + [d for d in deployments if d.spec.weight <= 0]


def latency_order(deployments: Sequence[Deployment], rng: random.Random) -> list[Deployment]:
    """Power of two choices: of two weighted random picks, the one with the lower expected wait first."""
    ordered = weighted_order(deployments, rng)
    primaries = [d for d in ordered if d.spec.weight > 0]
    if len(primaries) >= 2:
        first, second = primaries[0], primaries[1]
        if second.expected_wait() < first.expected_wait():
            ordered[0], ordered[1] = second, first
    rest = sorted(ordered[1:], key=lambda d: (d.spec.weight <= 0, d.expected_wait()))
    return [ordered[0], *rest]


def prefer_headroom(ordered: list[Deployment]) -> list[Deployment]:
    """`ordered` with the deployments low on announced headroom after the others (a stable sort:
    the balancing order holds within each part); backups (weight 0) stay last."""
    return sorted(ordered, key=lambda d: (d.spec.weight <= 0, d.limiter.low_on_headroom()))


def order(deployments: Sequence[Deployment], strategy: str, rng: random.Random) -> list[Deployment]:
    if len(deployments) <= 1:
        return list(deployments)
    ordered = latency_order(deployments, rng) if strategy == "latency" else weighted_order(deployments, rng)
    return prefer_headroom(ordered)
