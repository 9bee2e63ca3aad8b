"""What a failed attempt tells the router, alike for a chat's attempts (attempts.py, retry.py) and
for the quick calls (quick_calls.py): what the deployment's breaker and limiter learn from it, and
when the request may try that deployment again."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.routing.breaker import Ticket
from provider_gateway.routing.deployments import Deployment
from provider_gateway.routing.plans import Plan
from provider_gateway.routing.settings import RoutingSettings
from provider_gateway.routing.shared_state import SharedState

PROBE_RETRY_S = 1.0  # the retry delay of a request refused while a probe is in flight: it ends soon


async def judge(deployment: Deployment, ticket: Ticket | None, exc: GatewayError, store: SharedState) -> None:
    """Overloaded (a 429: slow down, and hold it for the wait the provider named), broken, or
    nothing (a bad request). `ticket`: the attempt's permission from the breaker, so that a verdict
    given after the breaker moved on is dropped."""
    if exc.kind is ErrorKind.RESOURCE_EXHAUSTED:
        deployment.limiter.on_rate_limited(exc.retry_after)
        deployment.breaker.release(ticket)
        if exc.retry_after:
            await store.eject(deployment.held_keys[1], exc.retry_after)
    elif exc.retryable:
        deployment.breaker.record_failure(ticket)
    else:
        deployment.breaker.release(ticket)


class Walk(Protocol):
    """One request's way through its plan, as a retry needs it."""

    plan: Plan
    ready_at: dict[str, float]  # deployment key -> when the request may try it again
    failures: dict[str, int]
    last_error: GatewayError | None


def retry_later(
    walk: Walk,
    deployment: Deployment,
    exc: GatewayError,
    backoff: Callable[[int, RoutingSettings], float],
    now: float,
) -> None:
    """A retryable failure: the deployment waits out its backoff, or the delay the provider asked
    for; or, when the provider said another try there would not help, it is never ready again for
    this request (the plan's other deployments still are). When every one said so, a client's
    retry would meet them again: the error says so (`retry_nowhere`)."""
    walk.last_error = exc
    failures = walk.failures.get(deployment.key, 0)
    walk.failures[deployment.key] = failures + 1
    ready_at = walk.ready_at
    if exc.retry_elsewhere_only:
        ready_at[deployment.key] = math.inf
        exc.refused_everywhere = all(ready_at.get(d.key) == math.inf for d in walk.plan.deployments)
        return
    ready_at[deployment.key] = now + max(backoff(failures, walk.plan.settings), exc.retry_after or 0.0)


def probed_refusal(plan: Plan, probed: Deployment) -> GatewayError:
    """A request that only `probed` could take, which its breaker holds: its probes are in flight
    (their verdict comes soon), or its last early probe failed and the next one waits."""
    if next_probe := round(probed.breaker.early_probe_in(), 3):
        return GatewayError(
            ErrorKind.UNAVAILABLE,
            f"{probed.key} keeps failing (its circuit breaker is open; the next probe goes in "
            f"{next_probe:g} s) and no other deployment of {plan.name!r} is available; "
            f"retry after {next_probe:g} s",
            retry_after=next_probe,
        )
    probes = probed.breaker.settings.half_open_probes
    return GatewayError(
        ErrorKind.UNAVAILABLE,
        f"{probed.key} is being probed after failures (its circuit breaker lets {probes} "
        f"request(s) through at a time, [routing.breaker] half_open_probes) and no other "
        f"deployment of {plan.name!r} is available; retry after {PROBE_RETRY_S:g} s",
        retry_after=PROBE_RETRY_S,
    )
