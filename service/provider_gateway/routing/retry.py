"""The retry loop: one for every call (adapters never retry), with failover across a plan.

Each deployment has a per-request "not before" time: a retryable failure sets it to now + max(backoff
with full jitter, the delay the provider asked for), and the loop takes the first deployment that is
ready, so a long wait on one deployment sends the request to the next instead of sleeping. It sleeps
only when nothing is ready, never past the request's deadline nor longer than `max_retry_wait_s`
(beyond that it fails at once with a retry delay for the client).

When breakers alone hold every deployment that could be ready soonest, the first whose cool-down
ends is tried at once as an early probe (`_pick`): breakers protect a route from a broken
deployment, and must not shut it for every caller because one caller's requests fail everywhere.

A provider that answers `x-should-retry: false` (http/errors.py) is not tried again within the
request: its deployment is never ready again, and once no other is left the client gets its error;
when every deployment of the plan said so, the error says that no retry can help (`retry_nowhere`).

Every attempt after a request's first spends the process's retry budget (retry_budget.py): when
too many retries are in flight for the requests in flight, the request ends with its last error.

Streams fail over only before their first content event: once a client has seen output, a failure
ends the stream with an error status (an honest error beats a silently spliced answer). A unary
call (`call`) has sent nothing until it returns: it fails over on any retryable failure.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
from collections.abc import AsyncGenerator, Awaitable, Callable

from provider_gateway.catalog import Catalog
from provider_gateway.domain import Attempt, ChatResponse, Finish, GatewayEvent
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.routing.admission import Admission, pending
from provider_gateway.routing.attempts import Answer, Attempts, OpenStream, Req
from provider_gateway.routing.capabilities import honouring
from provider_gateway.routing.deployments import Deployment, hold_keys, read_holds
from provider_gateway.routing.plans import Plan
from provider_gateway.routing.settings import RoutingSettings
from provider_gateway.routing.shared_state import SharedState
from provider_gateway.routing.timing import RequestClock
from provider_gateway.routing.verdicts import (
    EarlyProbe,
    early_probe,
    held_refusal,
    probed_refusal,
    retry_later,
)

RPM_WINDOW_S = 60.0


class CapacityQueue:
    """The bounded queue of requests waiting for a deployment's concurrency to free up, per plan."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.waiters: dict[str, int] = {}
        self._waiting = 0  # over every plan: notify has nothing to do while it is 0
        # Set (and replaced) when an attempt gives back capacity: every waiter looks again. An
        # event, not a Condition, so that giving back is a plain call (no lock, no coroutine).
        self._freed = asyncio.Event()

    async def wait(self, plan: Plan, until: float, give_up: float, *, queue_timeout: bool) -> None:
        """Wait in the plan's bounded queue until a deployment frees capacity or becomes ready
        (`until`); past `give_up` the request is refused, naming what ended the wait
        (`queue_timeout`: `[routing] queue_timeout_s`, else the request's deadline)."""
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
            await asyncio.wait_for(self._freed.wait(), max(until - self.clock(), 0.0))
        except TimeoutError:
            if until < give_up:
                return  # another deployment's wait is over: look again
            # A client told "deadline" raises its deadline, which does not help when the queue's
            # own timeout ended the wait.
            ended = (
                f"for [routing] queue_timeout_s ({plan.settings.queue_timeout_s:g} s); "
                "retry later, or raise queue_timeout_s (or the deployments' concurrency, [routing.limiter])"
                if queue_timeout
                else "until the request's deadline; retry later or with a longer deadline"
            )
            raise GatewayError(
                ErrorKind.RESOURCE_EXHAUSTED, f"{plan.name!r} stayed at capacity {ended}", retry_after=1.0
            ) from None
        finally:
            self._waiting -= 1
            if left := self.waiters[plan.name] - 1:
                self.waiters[plan.name] = left
            else:  # the last one out: plan names can come from callers, so none is kept at zero
                del self.waiters[plan.name]

    def notify(self) -> None:
        if self._waiting:  # somebody queued (rarely): wake them all
            self._freed.set()
            self._freed = asyncio.Event()


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

    def run(
        self, plan: Plan, request: Req, clock: RequestClock, open_stream: OpenStream[Req]
    ) -> AsyncGenerator[GatewayEvent, None]:
        """The retry loop of a stream: it fails over only until the client has seen content.

        One generator, the attempts' own (`Attempts.run` walks `_Tries`), rather than a loop here
        relaying theirs: every event of a stream passed through one more generator frame."""
        return self.attempts.run(lambda: self._begin(plan, request, clock), request, clock, open_stream)

    def _begin(self, plan: Plan, request: Req, clock: RequestClock) -> _Tries:
        """A request's way through `plan`, its holds read when the store knows them at once (nearly
        always: `_Tries.ready` then has nothing to wait for)."""
        usable = honouring(request, plan.deployments, self.catalog)
        if len(usable) < len(plan.deployments):  # usually all can: no new plan per call then
            plan = dataclasses.replace(plan, deployments=usable)
        deadline = clock.deadline if clock.deadline is not None else self.clock() + plan.settings.timeout_s
        tries = _Tries(self, plan, deadline)
        keys = hold_keys(plan.deployments)
        held = self.store.ejections_now(keys)
        tries.holding = keys if held is None else None
        if held is not None:
            self._hold(tries, held)
        return tries

    async def call(
        self, plan: Plan, request: Req, clock: RequestClock, answer: Answer[Req]
    ) -> tuple[ChatResponse, Finish]:
        """The retry loop of a unary call: the client sees nothing until it returns, so any
        retryable failure fails over, as a stream's does before its first content."""
        budget = self.attempts.budget
        budget.requests += 1
        try:
            tries = self._begin(plan, request, clock)
            if (waiting := tries.ready()) is not None:
                await waiting
            while (deployment := tries.next_now() or await self._next(tries)) is not None:
                number = len(tries.attempts) + 1
                if number > 1:  # any attempt after the first spends the retry budget
                    budget.take(tries.settings, tries.last_error, deployment.spec.provider)
                try:
                    return await self.attempts.call(
                        deployment,
                        number,
                        request,
                        clock,
                        tries.deadline,
                        answer,
                        tries.attempts,
                        early=tries.probing is deployment,
                    )
                except GatewayError as exc:
                    if not exc.retryable:
                        raise
                    self._retry_later(tries, deployment, exc)
                finally:
                    if number > 1:
                        budget.retries -= 1
            raise tries.exhausted()
        finally:
            budget.requests -= 1

    async def _next(self, tries: _Tries) -> Deployment | None:
        """The deployment to try next, waiting (bounded) for one; None once every attempt is spent."""
        while len(tries.attempts) < tries.max_attempts:
            picked = self._pick(tries)
            if not isinstance(picked, Deployment):
                await picked()
                continue
            deployment = picked
            if deployment.spec.rpm:
                early = tries.probing is deployment  # handed out as an early probe
                wait = await self.store.hit(f"rpm:{deployment.key}", 1, deployment.spec.rpm, RPM_WINDOW_S)
                if wait:
                    tries.ready_at[deployment.key] = self.clock() + wait
                    tries.last_error = GatewayError(
                        ErrorKind.RESOURCE_EXHAUSTED,
                        f"{deployment.key} is at its rate limit ({deployment.spec.rpm} requests per rolling minute)",
                        provider=deployment.spec.provider,
                        retry_after=wait,
                    )
                    continue
                if not deployment.breaker.available(early=early):
                    continue  # another request took the last probe slot while we waited
            return deployment  # (else nothing was awaited since _pick found it available)
        return None

    def _next_now(self, tries: _Tries) -> Deployment | None:
        """`_next` when it would await nothing: a deployment ready now with no requests-per-minute
        meter to ask (nearly every first attempt). None: `_next` decides (and waits, or is spent)."""
        if len(tries.attempts) >= tries.max_attempts:
            return None
        picked = self._pick(tries)  # (a wait it hands back is dropped: `_next` picks again)
        if isinstance(picked, Deployment) and not picked.spec.rpm:
            return picked
        return None

    def _retry_later(self, tries: _Tries, deployment: Deployment, exc: GatewayError) -> None:
        retry_later(tries, deployment, exc, self.backoff, self.clock())

    async def _read_holds(self, tries: _Tries, keys: list[str]) -> None:
        """The holds of `tries`' plan from a store that must be asked (Redis's view, being read)."""
        self._hold(tries, await self.store.ejections(keys))

    def _hold(self, tries: _Tries, held: list[float]) -> None:
        """Until when a breaker's ejection (here or on another replica) and a provider's rate limit
        hold each deployment held now (`held`: the store's answer for `hold_keys`). A deployment
        in neither is ready now."""
        if not any(held):  # nothing is held (nearly always)
            return
        ready_at, limited_until = tries.ready_at, tries.limited_until
        ejected_until: dict[str, float] = {}
        now = self.clock()
        for deployment, ejected, limited in read_holds(tries.plan.deployments, held):
            if ejected > 0:
                ejected_until[deployment.key] = now + ejected
            if limited > 0:
                limited_until[deployment.key] = ready_at[deployment.key] = now + limited
        tries.ejected_until = ejected_until or None

    def backoff(self, failures: int, settings: RoutingSettings) -> float:
        """Exponential backoff with full jitter (AWS architecture blog): uniform in [0, cap)."""
        cap = min(settings.backoff_max_ms, settings.backoff_base_ms * 2.0**failures) / 1000
        return self.rng.uniform(0, cap)

    def _pick(self, tries: _Tries) -> Deployment | Callable[[], Awaitable[object]]:
        """The first deployment that can take the request now; else the (bounded) wait before
        looking again, to be called and awaited.

        When the deployment to be ready soonest is held only by its breaker (open here, or ejected
        by another replica's), it is tried now as an early probe rather than waited for or
        refused: a plan's last deployments are never all ejected (Envoy's panic threshold), so a
        caller whose requests fail everywhere cannot shut a plan for everybody else. Either way
        its probes are limited as an open breaker's (verdicts.py, `early_probe`)."""
        plan, ready_at, limited_until, deadline = (
            tries.plan,
            tries.ready_at,
            tries.limited_until,
            tries.deadline,
        )
        ejected_until = tries.ejected_until  # None unless the store holds some (rarely)
        retrying = bool(tries.attempts)
        now = self.clock()
        wait = math.inf
        at_capacity = False
        rate_limited = False  # whether the soonest-ready deployment waits on its provider's limit
        soonest: Deployment | None = None  # that deployment
        probed: Deployment | None = None  # one whose probe slots are all taken
        early: Deployment | None = None  # held only by its breaker: the one whose cool-down ends first
        early_at = math.inf
        for deployment in plan.deployments:
            key = deployment.key
            ejected = now + deployment.breaker.open_for()
            if ejected_until is not None:
                ejected = max(ejected, ejected_until.get(key, 0.0))
            own = ready_at.get(key, 0.0)  # this request's backoff, or its provider's rate limit
            until = max(own, ejected)
            if until > now:
                if until - now < wait:
                    wait, soonest = until - now, deployment
                    rate_limited = limited_until.get(key, 0.0) >= until
                if own <= now and ejected < early_at:  # held only by its breaker
                    early, early_at = deployment, ejected
            elif retrying and now + deployment.ewma_ttft_s >= deadline:
                continue  # cannot answer before the deadline: do not start it
            elif not deployment.breaker.available():
                probed = deployment  # half-open, its probes in flight: their verdict decides
            elif not deployment.limiter.has_capacity():
                at_capacity = True  # concurrency taken: a release frees it
            else:
                tries.probing = None
                return deployment
        if (
            early is not None
            and early_at - now <= wait  # nothing is ready sooner by itself
            and not at_capacity  # (a deployment's release wakes the queue first)
            and not (retrying and now + early.ewma_ttft_s >= deadline)
        ):
            probe = early_probe(early, early_at)
            if probe is EarlyProbe.GO:
                tries.probing = early  # its attempt takes a probe slot (breaker.py, `acquire`)
                return early
            if probe is EarlyProbe.PROBED:
                probed = early
            else:
                at_capacity = True
        if at_capacity:
            queue_ends = tries.queue_ends(now)
            give_up = min(deadline, queue_ends)
            look_again = min(give_up, now + wait)
            queue_timeout = queue_ends < deadline
            return lambda: self.capacity.wait(plan, look_again, give_up, queue_timeout=queue_timeout)
        if wait > plan.settings.max_retry_wait_s or now + wait >= deadline or wait is math.inf:
            raise _unavailable(plan, tries.last_error, wait, soonest if rate_limited else None, probed=probed)
        return lambda: self.sleep(wait)


class _Tries:
    """One request's way through its plan: the attempts so far, when each deployment is ready again."""

    __slots__ = (
        "attempts",
        "deadline",
        "ejected_until",
        "failures",
        "holding",
        "last_error",
        "limited_until",
        "loop",
        "max_attempts",
        "plan",
        "probing",
        "queue_deadline",
        "queued_after",
        "ready_at",
    )

    def __init__(self, loop: RetryLoop, plan: Plan, deadline: float) -> None:
        self.loop, self.plan, self.deadline = loop, plan, deadline
        self.ready_at: dict[str, float] = {}  # a deployment in neither is ready now
        self.limited_until: dict[str, float] = {}
        self.ejected_until: dict[str, float] | None = None  # breakers' ejections the store holds
        self.holding: list[str] | None = None  # the keys of holds still to read from the store
        self.probing: Deployment | None = None  # the deployment `_pick` last handed out as an early probe
        self.attempts: list[Attempt] = []
        self.failures: dict[str, int] = {}
        self.last_error: GatewayError | None = None
        self.max_attempts = len(plan.deployments) + plan.settings.retries
        self.queued_after = -1  # the attempts made before the current wait for capacity began
        self.queue_deadline = math.inf

    @property
    def settings(self) -> RoutingSettings:
        """The plan's (its retry budget): read only for a retry, so not kept per request."""
        return self.plan.settings

    def queue_ends(self, now: float) -> float:
        """When the current wait for capacity gives up: `queue_timeout_s` after the request joined
        the queue, fixed then. Waking without a slot (churn) restarted it, so a request could wait
        far longer; a wait after a further attempt is a new one."""
        if self.queued_after != len(self.attempts):
            self.queued_after = len(self.attempts)
            self.queue_deadline = now + self.plan.settings.queue_timeout_s
        return self.queue_deadline

    def ready(self) -> Awaitable[None] | None:
        """What to await before the first attempt: the holds still to read, then the call's budget
        check (routing/admission.py); None when neither is pending (nearly always)."""
        admission = pending.get()
        if self.holding is None and admission is None:
            return None
        return self._ready(admission)

    async def _ready(self, admission: Admission | None) -> None:
        if self.holding is not None:
            await self.loop._read_holds(self, self.holding)
            self.holding = None
        if admission is not None:
            await admission.wait()  # the call's budget check, sent as the call began

    def next_now(self) -> Deployment | None:
        """The deployment to try next when it takes no wait and no store call; None: ask `next`."""
        return self.loop._next_now(self)

    def next(self) -> Awaitable[Deployment | None]:
        """The deployment to try next (waiting, bounded, for one); None once every attempt is spent."""
        return self.loop._next(self)

    def retry_later(self, deployment: Deployment, exc: GatewayError) -> None:
        self.loop._retry_later(self, deployment, exc)

    def exhausted(self) -> GatewayError:
        return self.last_error or GatewayError(
            ErrorKind.UNAVAILABLE, f"no deployment of {self.plan.name!r} answered"
        )


def _unavailable(
    plan: Plan,
    last_error: GatewayError | None,
    wait: float,
    rate_limited: Deployment | None,
    *,
    probed: Deployment | None,
) -> GatewayError:
    """No deployment can take the request in time: the last failure, else why (`rate_limited`: the
    soonest-ready deployment, when its provider's refusal holds it)."""
    retry_after = None if wait is math.inf else round(wait, 3)
    if last_error is not None:
        error = GatewayError(
            last_error.kind,
            last_error.message,
            provider=last_error.provider,
            retry_after=retry_after or last_error.retry_after,
            retryable=last_error.retryable,
            upstream_status=last_error.upstream_status,
        )
        error.retry_elsewhere_only = last_error.retry_elsewhere_only
        error.refused_everywhere = last_error.refused_everywhere
        return error
    if probed is not None:  # neither capacity nor the queue's timeout would help: the probe's verdict
        return probed_refusal(plan, probed)
    if rate_limited is not None:  # a wait, not an outage: clients that retry UNAVAILABLE at once must not
        return held_refusal(plan, rate_limited, wait)
    return GatewayError(
        ErrorKind.UNAVAILABLE,
        f"every deployment of {plan.name!r} is unavailable (circuit open)",
        retry_after=retry_after,
    )
