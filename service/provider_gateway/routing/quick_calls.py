"""Counting and embedding: one short answer each, walked through the plan with an attempt's bookkeeping.

No stream, stall watch nor cost, but the deployments are used as a chat's attempts use them
(routing/attempts.py, routing/retry.py): each try takes its deployment's breaker (a probe slot
while half-open) and concurrency slot and gives them back; a 429 slows the limiter and holds the
deployment for the wait the provider named, another retryable failure counts against the breaker;
the holds every request reads (a breaker's ejection, a provider's rate limit) and open breakers are
skipped. A retryable failure moves on to the next ready deployment, waiting (bounded by
`max_retry_wait_s`, the queue's timeout and `timeout_s`) when none is; a deployment the provider
said not to try again (`retry_elsewhere_only`) is not, within the call.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import TypeVar

from provider_gateway.domain import Route
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.routing.deployments import Deployment
from provider_gateway.routing.plans import Plan
from provider_gateway.routing.retry import CapacityQueue
from provider_gateway.routing.retry_budget import RetryBudget
from provider_gateway.routing.settings import RoutingSettings
from provider_gateway.routing.shared_state import SharedState
from provider_gateway.routing.verdicts import judge, probed_refusal, retry_later

R = TypeVar("R")


class QuickCalls:
    def __init__(
        self,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[object]],
        store: SharedState,
        capacity: CapacityQueue,
        backoff: Callable[[int, RoutingSettings], float],
        budget: RetryBudget,
    ) -> None:
        self.budget = budget  # shared with chat calls: routing/retry_budget.py
        self.clock = clock
        self.sleep = sleep
        self.store = store
        self.capacity = capacity
        self.backoff = backoff

    async def call(self, plan: Plan, call: Callable[[Deployment], Awaitable[R]]) -> tuple[Route, R]:
        """The first answer of the plan's deployments, tried in order as they are ready."""
        budget = self.budget
        budget.requests += 1
        try:
            walk = _Walk(plan, self.clock() + plan.settings.timeout_s)
            await self._read_holds(walk)
            while (deployment := await self._next(walk)) is not None:
                retry = walk.tried > 0  # any attempt after the first spends the retry budget
                if retry:
                    budget.take(plan.settings, walk.last_error, deployment.spec.provider)
                walk.tried += 1
                try:
                    result = await self._attempt(deployment, call)
                except GatewayError as exc:
                    if not exc.retryable:
                        raise
                    retry_later(walk, deployment, exc, self.backoff, self.clock())
                    continue
                finally:
                    if retry:
                        budget.retries -= 1
                return Route(deployment.spec.provider, deployment.spec.model), result
            raise walk.last_error or GatewayError(
                ErrorKind.UNAVAILABLE, f"no deployment of {plan.name!r} answered"
            )
        finally:
            budget.requests -= 1

    async def _read_holds(self, walk: _Walk) -> None:
        """When each held deployment is ready again: its breaker's ejection (shared by replicas) or
        its provider's rate limit, whichever ends later."""
        deployments = walk.plan.deployments
        keys = [d.held_keys[0] for d in deployments] + [d.held_keys[1] for d in deployments]
        held = self.store.ejections_now(keys)
        if held is None:
            held = await self.store.ejections(keys)
        now = self.clock()
        count = len(deployments)
        for deployment, ejected, limited in zip(deployments, held[:count], held[count:], strict=True):
            if limited > 0:
                walk.limited_until[deployment.key] = now + limited
            if ejected > 0 or limited > 0:
                walk.ready_at[deployment.key] = now + max(ejected, limited)

    async def _next(self, walk: _Walk) -> Deployment | None:
        """The first deployment ready and free now, waiting (bounded) for one; None once the plan's
        attempts are spent."""
        plan = walk.plan
        while walk.tried < walk.max_attempts:
            now = self.clock()
            wait = math.inf  # until the soonest held deployment is ready
            rate_limited = False  # whether that one waits on its provider's rate limit
            at_capacity = False
            probed: Deployment | None = None  # half-open, its probes in flight: their verdict decides
            for deployment in plan.deployments:
                ready = max(walk.ready_at.get(deployment.key, 0.0), now + deployment.breaker.open_for())
                if ready > now:
                    if ready - now < wait:
                        wait = ready - now
                        rate_limited = walk.limited_until.get(deployment.key, 0.0) >= ready
                elif not deployment.breaker.available():
                    probed = deployment
                elif deployment.limiter.has_capacity():
                    return deployment
                else:
                    at_capacity = True  # concurrency taken: a release frees it
            if at_capacity:
                if walk.queued_after != walk.tried:  # a new wait: the queue's timeout counts from now
                    walk.queued_after = walk.tried
                    walk.queue_ends = now + plan.settings.queue_timeout_s
                give_up = min(walk.deadline, walk.queue_ends)
                await self.capacity.wait(
                    plan, min(give_up, now + wait), give_up, queue_timeout=walk.queue_ends < walk.deadline
                )
            elif wait <= plan.settings.max_retry_wait_s and now + wait < walk.deadline:
                await self.sleep(wait)
            elif probed is not None and walk.last_error is None:
                raise probed_refusal(plan, probed)  # neither capacity nor the queue would help
            else:
                raise walk.unavailable(wait, rate_limited=rate_limited)
        return None

    async def _attempt(self, deployment: Deployment, call: Callable[[Deployment], Awaitable[R]]) -> R:
        breaker, limiter = deployment.breaker, deployment.limiter
        ticket = breaker.acquire()  # the pick found it available: a ticket of this generation
        limiter.acquire()
        judged = False
        try:
            result = await call(deployment)
        except GatewayError as exc:
            exc.provider = exc.provider or deployment.spec.provider
            judged = True
            await judge(deployment, ticket, exc, self.store)
            raise
        finally:
            limiter.release()
            if not judged:
                breaker.release(ticket)  # a cancel or an unexpected error says nothing of the deployment
            self.capacity.notify()
        breaker.record_success(ticket)
        limiter.on_success()
        return result


class _Walk:
    """One call's way through its plan: when each deployment is ready again, what failed last."""

    __slots__ = (
        "deadline",
        "failures",
        "last_error",
        "limited_until",
        "max_attempts",
        "plan",
        "queue_ends",
        "queued_after",
        "ready_at",
        "tried",
    )

    def __init__(self, plan: Plan, deadline: float) -> None:
        self.plan, self.deadline = plan, deadline
        self.ready_at: dict[str, float] = {}  # a deployment not in it is ready now
        self.limited_until: dict[str, float] = {}  # held by its provider's rate limit until then
        self.failures: dict[str, int] = {}
        self.last_error: GatewayError | None = None
        self.tried = 0
        self.max_attempts = len(plan.deployments) + plan.settings.retries
        self.queued_after = -1  # the attempts made before the current wait for capacity began
        self.queue_ends = math.inf

    def unavailable(self, wait: float, *, rate_limited: bool) -> GatewayError:
        """No deployment will be ready in time: the last failure, else why they are all held, with
        the wait for the client."""
        retry_after = None if wait is math.inf else round(wait, 3)
        if (last := self.last_error) is not None:
            last.retry_after = retry_after or last.retry_after
            return last
        name = self.plan.name
        if rate_limited:  # a wait, not an outage: clients that retry UNAVAILABLE at once must not
            return GatewayError(
                ErrorKind.RESOURCE_EXHAUSTED,
                f"every deployment of {name!r} is held by its provider's rate limit; retry after {retry_after} s",
                retry_after=retry_after,
            )
        return GatewayError(
            ErrorKind.UNAVAILABLE,
            f"every deployment of {name!r} is unavailable (circuit open); retry after {retry_after} s",
            retry_after=retry_after,
        )
