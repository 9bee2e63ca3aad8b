"""The retry loop: one for every call (adapters never retry), with failover across a plan.

Each deployment has a per-request "not before" time: a retryable failure sets it to now + max(backoff
with full jitter, the delay the provider asked for), and the loop takes the first deployment that is
ready, so a long wait on one deployment sends the request to the next instead of sleeping. It sleeps
only when nothing is ready, never past the request's deadline nor longer than `max_retry_wait_s`
(beyond that it fails at once with a retry delay for the client).

Streams fail over only before their first content event: once a client has seen output, a failure
ends the stream with an error status (an honest error beats a silently spliced answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import random
from collections.abc import AsyncGenerator, Awaitable, Callable

from provider_gateway.catalog import Catalog
from provider_gateway.domain import CONTENT_EVENTS, Attempt, GatewayEvent
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.routing.attempts import Attempts, OpenStream, Req, rate_limit_hold
from provider_gateway.routing.capabilities import honouring
from provider_gateway.routing.deployments import Deployment
from provider_gateway.routing.plans import Plan
from provider_gateway.routing.settings import RoutingSettings
from provider_gateway.routing.shared_state import SharedState
from provider_gateway.routing.timing import RequestClock

RPM_WINDOW_S = 60.0


class CapacityQueue:
    """The bounded queue of requests waiting for a deployment's concurrency to free up, per plan."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.waiters: dict[str, int] = {}
        self._waiting = 0  # over every plan: notify has nothing to do while it is 0
        self._capacity = asyncio.Condition()

    async def wait(self, plan: Plan, until: float, give_up: float) -> None:
        """Wait in the plan's bounded queue until a deployment frees capacity or becomes ready
        (`until`); past `give_up` (the deadline or the queue timeout) the request is refused."""
        waiting = self.waiters.get(plan.name, 0)
        if waiting >= plan.settings.max_queue:
            raise GatewayError(
                ErrorKind.RESOURCE_EXHAUSTED,
                f"{plan.name!r} is at capacity and {waiting} requests are already waiting",
                retry_after=1.0,
            )
        self.waiters[plan.name] = waiting + 1
        self._waiting += 1
        try:
            async with self._capacity:
                await asyncio.wait_for(self._capacity.wait(), max(until - self.clock(), 0.0))
        except TimeoutError:
            if until < give_up:
                return  # another deployment's wait is over: look again
            raise GatewayError(
                ErrorKind.RESOURCE_EXHAUSTED,
                f"{plan.name!r} stayed at capacity until the request's deadline",
                retry_after=1.0,
            ) from None
        finally:
            self._waiting -= 1
            if left := self.waiters[plan.name] - 1:
                self.waiters[plan.name] = left
            else:  # the last one out: plan names can come from callers, so none is kept at zero
                del self.waiters[plan.name]

    async def notify(self) -> None:
        if not self._waiting:  # nobody queued (nearly always): no lock to take per released attempt
            return
        async with self._capacity:
            self._capacity.notify_all()


class RetryLoop:
    def __init__(
        self,
        clock: Callable[[], float],
        rng: random.Random,
        sleep: Callable[[float], Awaitable[object]],
        store: SharedState,
        capacity: CapacityQueue,
        attempts: Attempts,
        catalog: Catalog | None = None,
    ) -> None:
        self.catalog = catalog
        self.clock = clock
        self.rng = rng
        self.sleep = sleep
        self.store = store
        self.capacity = capacity
        self.attempts = attempts

    async def run(
        self,
        plan: Plan,
        request: Req,
        clock: RequestClock,
        open_stream: OpenStream[Req],
        *,
        buffered: bool = False,
    ) -> AsyncGenerator[GatewayEvent, None]:
        """The retry loop. `buffered` (unary calls) holds each attempt's events until it succeeds,
        so that even a failure after some output can fail over: the client has seen nothing yet."""
        usable = honouring(request, plan.deployments, self.catalog)
        if len(usable) < len(plan.deployments):  # usually all can: no new plan per call then
            plan = dataclasses.replace(plan, deployments=usable)
        settings = plan.settings
        deadline = clock.deadline if clock.deadline is not None else self.clock() + settings.timeout_s
        attempts: list[Attempt] = []
        failures: dict[str, int] = {}
        ready_at, limited_until = await self._holds(plan)
        last_error: GatewayError | None = None
        max_attempts = len(plan.deployments) + settings.retries
        while len(attempts) < max_attempts:
            deployment = await self._next_ready(
                plan, ready_at, limited_until, deadline, last_error, retrying=bool(attempts)
            )
            if deployment is None:
                continue
            if deployment.spec.rpm:
                wait = await self.store.hit(f"rpm:{deployment.key}", 1, deployment.spec.rpm, RPM_WINDOW_S)
                if wait:
                    ready_at[deployment.key] = self.clock() + wait
                    last_error = GatewayError(
                        ErrorKind.RESOURCE_EXHAUSTED,
                        f"{deployment.key} is at its rate limit ({deployment.spec.rpm} requests per rolling minute)",
                        provider=deployment.spec.provider,
                        retry_after=wait,
                    )
                    continue
            if not deployment.breaker.available():
                continue  # another request took the last half-open probe slot while we waited
            sent_content = False
            held: list[GatewayEvent] = []
            try:
                # aclosing: a client that stops reading closes this attempt (and its upstream) now,
                # not whenever the garbage collector finalizes the generator.
                attempt = self.attempts.run(
                    deployment, len(attempts) + 1, request, clock, deadline, open_stream, attempts, buffered
                )
                async with contextlib.aclosing(attempt):
                    # The attempt times the client's share of each event (clock.downstream_ns).
                    async for event in attempt:
                        if buffered:
                            held.append(event)
                            continue
                        if not sent_content and isinstance(event, CONTENT_EVENTS):
                            sent_content = True
                        yield event
                for event in held:
                    yield event
                return
            except GatewayError as exc:
                if sent_content or not exc.retryable:
                    raise
                last_error = exc
                n = failures.get(deployment.key, 0)
                failures[deployment.key] = n + 1
                delay = max(self.backoff(n, settings), exc.retry_after or 0.0)
                ready_at[deployment.key] = self.clock() + delay
        raise last_error or GatewayError(ErrorKind.UNAVAILABLE, f"no deployment of {plan.name!r} answered")

    async def _holds(self, plan: Plan) -> tuple[dict[str, float], dict[str, float]]:
        """When each deployment is ready (after any ejection), and until when a provider's rate
        limit holds it; one store call for both."""
        keys = [d.key for d in plan.deployments]
        held = await self.store.ejections(keys + [rate_limit_hold(k) for k in keys])
        now = self.clock()
        limited_until = {k: now + s for k, s in zip(keys, held[len(keys) :], strict=True) if s > 0}
        ready_at = {
            k: max(now + s, limited_until.get(k, 0.0)) for k, s in zip(keys, held[: len(keys)], strict=True)
        }
        return ready_at, limited_until

    def backoff(self, failures: int, settings: RoutingSettings) -> float:
        """Exponential backoff with full jitter (AWS architecture blog): uniform in [0, cap)."""
        cap = min(settings.backoff_max_ms, settings.backoff_base_ms * 2.0**failures) / 1000
        return self.rng.uniform(0, cap)

    async def _next_ready(
        self,
        plan: Plan,
        ready_at: dict[str, float],
        limited_until: dict[str, float],
        deadline: float,
        last_error: GatewayError | None,
        *,
        retrying: bool,
    ) -> Deployment | None:
        """The first deployment that can take the request now; or wait (bounded) and return None."""
        now = self.clock()
        wait = math.inf
        at_capacity = False
        rate_limited = False  # whether the soonest-ready deployment waits on its provider's limit
        for deployment in plan.deployments:
            until = max(ready_at[deployment.key], now + deployment.breaker.open_for())
            if until > now:
                if until - now < wait:
                    wait = until - now
                    rate_limited = limited_until.get(deployment.key, 0.0) >= until
            elif retrying and now + deployment.ewma_ttft_s >= deadline:
                continue  # cannot answer before the deadline: do not start it
            elif not deployment.breaker.available() or not deployment.limiter.has_capacity():
                at_capacity = True  # probe slots or concurrency taken: a release frees it
            else:
                return deployment
        if at_capacity:
            give_up = min(deadline, now + plan.settings.queue_timeout_s)
            await self.capacity.wait(plan, min(give_up, now + wait), give_up)
            return None
        if wait > plan.settings.max_retry_wait_s or now + wait >= deadline or wait is math.inf:
            raise _unavailable(plan, last_error, wait, rate_limited=rate_limited)
        await self.sleep(wait)
        return None


def _unavailable(
    plan: Plan, last_error: GatewayError | None, wait: float, *, rate_limited: bool
) -> GatewayError:
    retry_after = None if wait is math.inf else round(wait, 3)
    if last_error is not None:
        return GatewayError(
            last_error.kind,
            last_error.message,
            provider=last_error.provider,
            retry_after=retry_after or last_error.retry_after,
            retryable=last_error.retryable,
            upstream_status=last_error.upstream_status,
        )
    if rate_limited:  # a wait, not an outage: clients that retry UNAVAILABLE at once must not
        return GatewayError(
            ErrorKind.RESOURCE_EXHAUSTED,
            f"every deployment of {plan.name!r} is held by its provider's rate limit; retry after "
            f"{retry_after} s",
            retry_after=retry_after,
        )
    return GatewayError(
        ErrorKind.UNAVAILABLE,
        f"every deployment of {plan.name!r} is unavailable (circuit open)",
        retry_after=retry_after,
    )
