"""A circuit breaker per deployment: closed -> open -> half-open -> closed.

It opens after `consecutive_failures` failures in a row, or when the failure rate over the last
`window_s` seconds reaches `failure_rate` with at least `min_calls` calls (so one failure of a
quiet deployment does not open it). After `cooldown_s` it lets `half_open_probes` requests through;
a probe's success closes it, a probe's failure opens it again for another cool-down.

Every call holds a `Ticket` from `acquire`: the breaker's generation (it changes with every move)
and whether the call is a probe. A verdict or release with a ticket of another generation is
dropped (gobreaker's design): a call admitted while closed and ending while half-open neither frees
a probe slot it never held nor decides the probe's question.

While open, the retry loop may still send an early probe (`acquire(early=True)`) when every
deployment of a plan is open, so that a few poison requests cannot eject a whole plan for every
caller: its success closes the breaker; its failure leaves the cool-down running and holds the
next early probe back a second, so that a deployment that is really down gets at most one
request a second (not every request, one after another) for the rest of its cool-down, while a
caller refused meanwhile is told when to come back.

Another replica's breaker may eject the deployment (shared through the store) while this one is
closed. When the retry loop probes such a deployment early, it first tells the breaker (`hold`):
until that ejection ends, early probes here take the same probe slots and spacing as an open
breaker's, so a replica sends `half_open_probes` at a time and one a second after a failed one,
not every request. A probe's success ends the hold here as it closes an open breaker (the router
then lifts the shared ejection). A request not sent as an early probe acquires with `early=False`:
the store, read for every request, no longer reports the ejection, so that ends the hold too (the
other replica may have lifted it long before it was due to end).

The invariant: every call sent holds a ticket. The retry loops acquire in the same step of the
event loop as the `available` check (with the same `early`) that picked the deployment, so
`acquire` does not refuse a call they send; should it ever (None), the attempt is refused, not sent
unjudged: a call without a ticket would fail without its failure counting.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

EARLY_PROBE_GAP_S = 1.0  # after a failed early probe, the wait before the next one


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(slots=True, frozen=True)
class BreakerSettings:
    consecutive_failures: int = 5
    failure_rate: float = 0.5
    window_s: float = 30.0
    min_calls: int = 10
    cooldown_s: float = 10.0
    half_open_probes: int = 1


@dataclass(slots=True, frozen=True)
class Ticket:
    """One call's permission: the breaker's generation when it was given, and whether it holds one
    of the limited probe slots."""

    generation: int
    probe: bool


class CircuitBreaker:
    def __init__(
        self,
        settings: BreakerSettings = BreakerSettings(),
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[BreakerState], None] | None = None,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._on_change = on_change
        self._state = BreakerState.CLOSED
        self._opened_at = 0.0
        self._consecutive = 0
        self._calls: deque[tuple[float, bool]] = deque()  # (time, failed) within the window
        self._probes = 0
        self._early_at = 0.0  # while open or held, no early probe before this (after a failed one)
        self._held_until = 0.0  # while closed: another replica's ejection being probed here (`hold`)
        self._generation = 0
        # The tickets of this generation, made once per move, not per call.
        self._ticket = Ticket(0, probe=False)
        self._probe_ticket = Ticket(0, probe=True)

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self._clock() >= self._opened_at + self.settings.cooldown_s:
            self._set(BreakerState.HALF_OPEN)
        return self._state

    @property
    def observed(self) -> BreakerState:
        """`state` as a read would find it, without moving there: for readers off the event loop's
        thread (the metrics gauges), where a move and the health update it starts must not run."""
        if self._state is BreakerState.OPEN and self._clock() >= self._opened_at + self.settings.cooldown_s:
            return BreakerState.HALF_OPEN
        return self._state

    def open_for(self) -> float:
        """Seconds until an open breaker lets a probe through (0.0 when not open)."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(self._opened_at + self.settings.cooldown_s - self._clock(), 0.0)

    def hold(self, until: float) -> None:
        """Another replica's ejection holds the deployment until `until` (this clock) and an early
        probe is about to be sent: while this breaker is closed, its early probes are limited as
        an open breaker's are until then. (Open or half-open here, its own limits apply already.)"""
        if self._state is BreakerState.CLOSED and until > self._held_until:
            self._held_until = until

    @property
    def held(self) -> bool:
        """Closed here, and probing another replica's ejection of the deployment (`hold`)."""
        return self._state is BreakerState.CLOSED and self._held_until > self._clock()

    def available(self, *, early: bool = False) -> bool:
        """Whether a request could go through now (without taking a probe slot); `early`: also as
        an early probe of an open breaker, or of another replica's ejection (`hold`)."""
        state = self.state
        if state is BreakerState.CLOSED:
            return not early or not self._held_until or self._held_probe_free()
        if state is BreakerState.OPEN and (not early or self._clock() < self._early_at):
            return False
        return self._probes < self.settings.half_open_probes

    def _held_probe_free(self) -> bool:
        now = self._clock()
        if now >= self._held_until:  # the other replica's ejection is over: closed as any
            self._held_until = 0.0
            return True
        return now >= self._early_at and self._probes < self.settings.half_open_probes

    def early_probe_in(self) -> float:
        """Seconds until an open (or held) breaker lets its next early probe through (0.0: now, or
        neither open nor held)."""
        if self.state is not BreakerState.OPEN and not self.held:
            return 0.0
        return max(self._early_at - self._clock(), 0.0)

    def acquire(self, *, early: bool = False) -> Ticket | None:
        """Take permission for one call (None: refused); in half-open, or open (or held) and
        `early`, this uses one of the limited probe slots. `early`: the call was handed out as an
        early probe (verdicts.py, `early_probe`); without it a hold ends here."""
        if self._state is BreakerState.CLOSED:
            if not self._held_until:
                return self._ticket  # closed and held nowhere (nearly always): every call goes
            if not early:  # not an early probe: the store no longer reports the ejection held here
                self._held_until = 0.0
                return self._ticket
        if not self.available(early=early):
            return None
        if self._state is BreakerState.CLOSED and not (early and self._held_until):
            return self._ticket
        self._probes += 1
        return self._probe_ticket

    def release(self, ticket: Ticket | None) -> None:
        """A call ended without a verdict (cancelled, a client error, a rate limit): free its probe
        slot, if it holds one of this generation's."""
        if ticket is not None and ticket.probe and ticket.generation == self._generation:
            self._probes -= 1

    def record_success(self, ticket: Ticket | None) -> None:
        if ticket is None or ticket.generation != self._generation:
            return  # admitted before the breaker last moved: it says nothing about now
        self._consecutive = 0
        if ticket.probe:  # (a ticket of this generation: not closed, or closed and held)
            held_elsewhere = self._state is BreakerState.CLOSED
            self._calls.clear()
            self._early_at = 0.0
            self._set(BreakerState.CLOSED)
            if held_elsewhere and self._on_change is not None:
                self._on_change(BreakerState.CLOSED)  # so that the router lifts the shared ejection
            return
        self._record(failed=False)

    def record_failure(self, ticket: Ticket | None) -> None:
        if ticket is None or ticket.generation != self._generation:
            return  # admitted before the breaker last moved: it says nothing about now
        if self._state is BreakerState.HALF_OPEN:
            self._trip()
            return
        if self._state is BreakerState.OPEN:  # an early probe: the cool-down runs on, the next waits
            self._probes -= 1
            self._hold_back_early_probes()
            return
        if ticket.probe:  # closed and held: a failure counted as any, and the next probe waits
            self._probes -= 1
        self._consecutive += 1
        self._record(failed=True)
        failures = sum(failed for _, failed in self._calls)
        s = self.settings
        if self._consecutive >= s.consecutive_failures or (
            len(self._calls) >= s.min_calls and failures / len(self._calls) >= s.failure_rate
        ):
            self._trip()
        if ticket.probe:  # (after a trip too: an early probe of the newly open breaker waits as well)
            self._hold_back_early_probes()

    def _hold_back_early_probes(self) -> None:
        self._early_at = self._clock() + min(EARLY_PROBE_GAP_S, self.settings.cooldown_s)

    def _record(self, failed: bool) -> None:
        now = self._clock()
        self._calls.append((now, failed))
        horizon = now - self.settings.window_s
        while self._calls and self._calls[0][0] < horizon:
            self._calls.popleft()

    def _trip(self) -> None:
        self._opened_at = self._clock()
        self._early_at = 0.0  # the first early probe may go at once
        self._consecutive = 0
        self._calls.clear()
        self._set(BreakerState.OPEN)

    def _set(self, state: BreakerState) -> None:
        """Move to `state`: a new generation, whose probe slots are all free."""
        changed = state is not self._state
        self._state = state
        self._generation = generation = self._generation + 1
        self._ticket = Ticket(generation, probe=False)
        self._probe_ticket = Ticket(generation, probe=True)
        self._probes = 0
        self._held_until = 0.0  # a move ends a hold: the store says again whether it still holds
        if changed and self._on_change is not None:
            self._on_change(state)
