"""One event-loop timer for many timeouts: an upstream's waits for response heads (head_timer.py),
its streams' reads (idle.py).

Each timed thing joins the set; the one timer is armed for the earliest moment one of them may be
due, and when it fires it asks each whether it is due, expires those that are, drops those that
are done, and re-arms for the next. Joining re-arms the timer only when the newcomer is due before
the moment it is set for, so nearly every timeout costs a set insertion, not a timer of its own.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

NEVER = float("inf")


class Timed(Protocol):
    def due(self) -> float | None:
        """When it times out (time.monotonic()); None when there is nothing to time any more."""
        ...

    def expire(self) -> None:
        """Its time is over (cancel its task)."""
        ...


class TimerSet:
    __slots__ = ("_armed_for", "_handle", "_loop", "members")

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._armed_for = NEVER
        self.members: set[Timed] = set()

    def join(self, member: Timed, due: float) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # used from another loop (tests): nothing carries over
            if self._handle is not None:  # the old loop's timer must not check the new loop's members
                self._handle.cancel()
            self._loop, self._handle, self._armed_for, self.members = loop, None, NEVER, set()
        self.members.add(member)
        if due < self._armed_for:
            if self._handle is not None:
                self._handle.cancel()
            self._arm(loop, due)

    def leave(self, member: Timed) -> None:
        self.members.discard(member)

    def _arm(self, loop: asyncio.AbstractEventLoop, due: float) -> None:
        # call_later from time.monotonic(): a deadline is on that clock, and uvloop's time() is not.
        self._armed_for = due
        self._handle = loop.call_later(max(due - time.monotonic(), 0.0), self._check)

    def _check(self) -> None:
        """O(members) once a timeout at most: a member whose due moved later (a stream's next read)
        makes the timer fire early for it, and it is re-armed."""
        self._handle, self._armed_for = None, NEVER
        now = time.monotonic()
        earliest = NEVER
        for member in tuple(self.members):
            due = member.due()
            if due is None or due <= now:
                self.members.discard(member)
                if due is not None:
                    member.expire()
            elif due < earliest:
                earliest = due
        if earliest < NEVER and self._loop is not None:
            self._arm(self._loop, earliest)
