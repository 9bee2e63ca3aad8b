"""Counting and embedding: one short answer each, walked through the plan with an attempt's bookkeeping.

No stream, stall limits (the deadline aside) nor cost, but the deployments are used as a chat's
attempts use them (routing/attempts.py, routing/retry.py): each try takes its deployment's
breaker (a probe slot while half-open) and concurrency slot and gives them back; a 429 slows the
limiter and holds the deployment for the wait the provider named, another retryable failure
counts against the breaker; the holds every request reads (a breaker's ejection, a provider's rate limit) and open breakers are
skipped, save for the early probe a chat would make (verdicts.py, `early_probe`). A retryable
failure moves on to the next ready deployment, waiting (bounded by `max_retry_wait_s`, the queue's
timeout and the deadline) when none is; a deployment the provider said not to try again
(`retry_elsewhere_only`) is not, within the call. The deadline is the caller's gRPC deadline, or
`timeout_s` when none was set, as a chat's: it bounds the waits; the caller's also bounds each
attempt, which is cancelled (and the provider's request with it) when it passes. (Without one, the
provider's own timeouts bound an attempt, as before: no timer for calls that need none.)
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from provider_gateway.domain import Route
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.http import deadline as caller_deadline
from provider_gateway.routing.deployments import Deployment, hold_keys, read_holds
from provider_gateway.routing.plans import Plan
from provider_gateway.routing.retry import CapacityQueue
from provider_gateway.routing.retry_budget import RetryBudget
from provider_gateway.routing.settings import RoutingSettings
from provider_gateway.routing.shared_state import SharedState
from provider_gateway.routing.stall import StallWatch, Watchdog
from provider_gateway.routing.verdicts import (
    EarlyProbe,
    breaker_refused,
    early_probe,
    held_refusal,
    judge,
    probed_refusal,
    retry_later,
)

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
        watchdog: Watchdog,
    ) -> None:
        self.budget = budget  # shared with chat calls: routing/retry_budget.py
        self.watchdog = watchdog  # the chat attempts' timer: it cancels an attempt at the deadline
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
            end = caller_deadline.absolute()  # the caller's (on time.monotonic()), else timeout_s
            now = self.clock()
            walk = _Walk(plan, now + plan.settings.timeout_s if end is None else now + end - time.monotonic())
            await self._read_holds(walk)
            while (deployment := await self._next(walk)) is not None:
                retry = walk.tried > 0  # any attempt after the first spends the retry budget
                if retry:
                    budget.take(plan.settings, walk.last_error, deployment.spec.provider)
                walk.tried += 1
                try:
                    early = walk.probing is deployment
                    result = await self._attempt(
                        deployment, call, None if end is None else walk.deadline, early
                    )
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
        """Until when a breaker's ejection (here or on another replica) and a provider's rate limit
        hold each deployment held now."""
        deployments = walk.plan.deployments
        keys = hold_keys(deployments)
        held = self.store.ejections_now(keys)
        if held is None:
            held = await self.store.ejections(keys)
        now = self.clock()
        for deployment, ejected, limited in read_holds(deployments, held):
            if ejected > 0:
                if walk.ejected_until is None:
                    walk.ejected_until = {}
                walk.ejected_until[deployment.key] = now + ejected
            if limited > 0:
                walk.limited_until[deployment.key] = walk.ready_at[deployment.key] = now + limited

    async def _next(self, walk: _Walk) -> Deployment | None:
        """The first deployment ready and free now, waiting (bounded) for one; None once the plan's
        attempts are spent. When the soonest ready is held only by its breaker (open here, or
        ejected by another replica's), it is tried now as an early probe, as a chat's would be
        (retry.py, `_pick`)."""
        plan, ready_at, ejected_until = walk.plan, walk.ready_at, walk.ejected_until
        while walk.tried < walk.max_attempts:
            now = self.clock()
            wait = math.inf  # until the soonest held deployment is ready
            soonest: Deployment | None = None  # that deployment
            rate_limited = False  # whether that one waits on its provider's rate limit
            at_capacity = False
            probed: Deployment | None = None  # half-open, its probes in flight: their verdict decides
            early: Deployment | None = None  # held only by its breaker: the one whose cool-down ends first
            early_at = math.inf
            for deployment in plan.deployments:
                key = deployment.key
                ejected = now + deployment.breaker.open_for()
                if ejected_until is not None and (elsewhere := ejected_until.get(key, 0.0)) > ejected:
                    ejected = elsewhere
                own = ready_at.get(key, 0.0)  # this call's backoff, or its provider's rate limit
                ready = own if own > ejected else ejected
                if ready > now:
                    if ready - now < wait:
                        wait, soonest = ready - now, deployment
                        rate_limited = walk.limited_until.get(key, 0.0) >= ready
                    if own <= now and ejected < early_at:
                        early, early_at = deployment, ejected
                elif not deployment.breaker.available():
                    probed = deployment
                elif deployment.limiter.has_capacity():
                    walk.probing = None
                    return deployment
                else:
                    at_capacity = True  # concurrency taken: a release frees it
            if early is not None and early_at - now <= wait and not at_capacity:
                probe = early_probe(early, early_at)
                if probe is EarlyProbe.GO:
                    walk.probing = early  # its attempt takes a probe slot (breaker.py, `acquire`)
                    return early
                if probe is EarlyProbe.PROBED:
                    probed = early
                else:
                    at_capacity = True
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
                raise walk.unavailable(wait, soonest if rate_limited else None)
        return None

    async def _attempt(
        self,
        deployment: Deployment,
        call: Callable[[Deployment], Awaitable[R]],
        deadline: float | None,
        early: bool,
    ) -> R:
        """One try of `deployment`; `deadline`: the caller's, which cancels it (None: none set);
        `early`: handed out as an early probe, the one kind of pick that takes a probe slot."""
        breaker, limiter = deployment.breaker, deployment.limiter
        # The pick found it available, with the same `early`, in this step of the event loop: a
        # ticket of this generation. Without one it is not sent (breaker.py).
        ticket = breaker.acquire(early=early)
        if ticket is None:
            raise breaker_refused(deployment)
        limiter.acquire()
        judged = False
        try:
            if deadline is None:
                result = await call(deployment)
            else:
                result = await self._before(deadline, call, deployment)
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

    async def _before(
        self, deadline: float, call: Callable[[Deployment], Awaitable[R]], deployment: Deployment
    ) -> R:
        """`call(deployment)`, cancelled when `deadline` passes (the router's timer of chat attempts,
        routing/stall.py): then DEADLINE_EXCEEDED, which says nothing of the deployment."""
        watch = StallWatch(None, deadline - self.clock(), self.watchdog)
        watch.reading(time.perf_counter_ns(), asyncio.current_task())
        try:
            return await call(deployment)
        except asyncio.CancelledError:
            if not watch.stopped_read():
                raise  # the caller left, or the server stops
            raise GatewayError(
                ErrorKind.DEADLINE_EXCEEDED, "the request's deadline passed", retryable=False
            ) from None
        finally:  # the call is over: judging a failure (Redis, maybe) is not cut short
            watch.finished()
            watch.close()


class _Walk:
    """One call's way through its plan: when each deployment is ready again, what failed last."""

    __slots__ = (
        "deadline",
        "ejected_until",
        "failures",
        "last_error",
        "limited_until",
        "max_attempts",
        "plan",
        "probing",
        "queue_ends",
        "queued_after",
        "ready_at",
        "tried",
    )

    def __init__(self, plan: Plan, deadline: float) -> None:
        self.plan, self.deadline = plan, deadline
        self.ready_at: dict[str, float] = {}  # a deployment in neither is ready now
        self.ejected_until: dict[str, float] | None = None  # breakers' ejections the store holds
        self.limited_until: dict[str, float] = {}  # held by its provider's rate limit until then
        self.failures: dict[str, int] = {}
        self.last_error: GatewayError | None = None
        self.tried = 0
        self.probing: Deployment | None = None  # the deployment `_next` last handed out as an early probe
        self.max_attempts = len(plan.deployments) + plan.settings.retries
        self.queued_after = -1  # the attempts made before the current wait for capacity began
        self.queue_ends = math.inf

    def unavailable(self, wait: float, rate_limited: Deployment | None) -> GatewayError:
        """No deployment will be ready in time: the last failure, else why they are all held, with
        the wait for the client (`rate_limited`: the soonest ready, held by its provider's refusal)."""
        retry_after = None if wait is math.inf else round(wait, 3)
        if (last := self.last_error) is not None:
            last.retry_after = retry_after or last.retry_after
            return last
        if rate_limited is not None:  # a wait, not an outage: clients that retry UNAVAILABLE at once must not
            return held_refusal(self.plan, rate_limited, wait)
        return GatewayError(
            ErrorKind.UNAVAILABLE,
            f"every deployment of {self.plan.name!r} is unavailable (circuit open); retry after {retry_after} s",
            retry_after=retry_after,
        )
