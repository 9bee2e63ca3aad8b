"""What a failed attempt tells the router, alike for a chat's attempts (attempts.py, retry.py) and
for the quick calls (quick_calls.py): what the deployment's breaker and limiter learn from it, and
when the request may try that deployment again; whether a deployment held only by a breaker's
ejection takes the request as an early probe; and what a request refused meanwhile is told."""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from typing import Protocol

from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.http.errors import OutOfCredit
from provider_gateway.routing.breaker import Ticket
from provider_gateway.routing.deployments import Deployment
from provider_gateway.routing.plans import Plan
from provider_gateway.routing.settings import RoutingSettings
from provider_gateway.routing.shared_state import SharedState

PROBE_RETRY_S = 1.0  # the retry delay of a request refused while a probe is in flight: it ends soon


async def judge(deployment: Deployment, ticket: Ticket | None, exc: GatewayError, store: SharedState) -> None:
    """Overloaded (a 429: slow down, and hold it for the wait the provider named), broken, or
    nothing (a bad request). `ticket`: the attempt's permission from the breaker, so that a verdict
    given after the breaker moved on is dropped. An account out of credit is held as a rate limit
    is, but says nothing of the deployment's load: the limiter keeps its concurrency."""
    if exc.kind is ErrorKind.RESOURCE_EXHAUSTED:
        if isinstance(exc, OutOfCredit):
            deployment.out_of_credit(exc.retry_after or 0.0)
        else:
            deployment.limiter.on_rate_limited(exc.retry_after)
        deployment.breaker.release(ticket)
        if exc.retry_after:  # shared by kind: other replicas word their refusals as this one does
            await store.eject(deployment.held_keys[2 if isinstance(exc, OutOfCredit) else 1], exc.retry_after)
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


class EarlyProbe(enum.Enum):
    GO = "go"  # the request goes to it now
    PROBED = "probed"  # its probe slots are taken, or its next early probe waits
    AT_CAPACITY = "at_capacity"  # its concurrency is taken: a release frees it


def early_probe(deployment: Deployment, held_until: float) -> EarlyProbe:
    """Whether `deployment`, held only by a breaker's ejection until `held_until` (its breaker
    open here, or another replica's ejection read from the store), takes the request now as an
    early probe. Another replica's ejection is probed as an open breaker here is (breaker.py,
    `hold`): `half_open_probes` at a time, the next a second after a failed one."""
    breaker = deployment.breaker
    breaker.hold(held_until)
    if not breaker.available(early=True):
        return EarlyProbe.PROBED
    if not deployment.limiter.has_capacity():
        return EarlyProbe.AT_CAPACITY
    return EarlyProbe.GO


def breaker_refused(deployment: Deployment) -> GatewayError:
    """The breaker gave no ticket for a deployment the retry loop picked (breaker.py's invariant
    says it cannot): the attempt is not sent, since a failure without a ticket would not count.
    Not retried here: a refusal is no attempt, so the loop's count of attempts would never end it;
    the client may retry (UNAVAILABLE)."""
    return GatewayError(
        ErrorKind.UNAVAILABLE,
        f"{deployment.key}'s circuit breaker refused the attempt",
        provider=deployment.spec.provider,
        retryable=False,
    )


def probed_refusal(plan: Plan, probed: Deployment) -> GatewayError:
    """A request that only `probed` could take, which its breaker holds: its probes are in flight
    (their verdict comes soon), or its last early probe failed and the next one waits."""
    if next_probe := round(probed.breaker.early_probe_in(), 3):
        why = (
            "another replica's circuit breaker ejected it"
            if probed.breaker.held
            else "its circuit breaker is open"
        )
        return GatewayError(
            ErrorKind.UNAVAILABLE,
            f"{probed.key} keeps failing ({why}; the next probe goes in "
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


def held_refusal(plan: Plan, soonest: Deployment, wait: float) -> GatewayError:
    """Every deployment of `plan` is held by its provider's refusal, `soonest` for the shortest
    `wait`: an account out of credit (held here since its 429 `insufficient_quota`) is named with
    what to do about it; any other hold is a rate limit to wait out."""
    retry_after = round(wait, 3)
    if soonest.out_of_credit_for() > 0:
        return GatewayError(
            ErrorKind.RESOURCE_EXHAUSTED,
            f"the account behind {soonest.spec.provider} ({soonest.key}) is out of credit: add credit or "
            f"raise its billing limit with the vendor, or route to another deployment; the gateway "
            f"tries {soonest.key} again in {retry_after:g} s, and no other deployment of {plan.name!r} "
            f"is available before then",
            provider=soonest.spec.provider,
            retry_after=retry_after,
        )
    return GatewayError(
        ErrorKind.RESOURCE_EXHAUSTED,
        f"every deployment of {plan.name!r} is held by its provider's rate limit; retry after {retry_after} s",
        retry_after=retry_after,
    )
