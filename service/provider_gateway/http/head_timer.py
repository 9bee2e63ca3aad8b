"""The first-byte timeout of an upstream's requests, streams' included, with one timer for all.

`asyncio.timeout` around each request's wait for its response head scheduled and cancelled a timer
per request (a Timeout, a TimerHandle, a heap push and a cancel: about 2% of a unary call's work,
benchmarks/RESULTS.md, issue 15). Here each wait only joins the set of an upstream's waits; one
timer, armed for the earliest moment one of them is due, cancels the tasks whose waits are over
and re-arms for the next. Nearly every answer comes long before its timeout, so the timer seldom
fires, and a new wait re-arms it only when it is due before the moment the timer is set for.
A wait's timeout is its setting or the caller's deadline, whichever comes first, as before. A
stream's head is timed here too; the reads of its body that have to wait join the upstream's idle
timer (http/idle.py), which works the same way.
"""

from __future__ import annotations

import asyncio
import time

from provider_gateway.http import deadline
from provider_gateway.http.timer_set import TimerSet


class HeadTimer(TimerSet):
    """One upstream's timer for the heads its requests wait for; `wait(limit)` times one of them."""

    __slots__ = ()

    def wait(self, limit: float) -> HeadWait:
        return HeadWait(self, limit)


class HeadWait:
    """One request's wait, with `IdleWatch`'s interface: `started()` before it, `finished()` after;
    `finished(cancelled=True)` tells whether the cancel was this timer's doing (the wait timed
    out), and `by_deadline` whether the caller's deadline, not the setting, set its end."""

    __slots__ = ("_cancelling", "_due", "_task", "_timer", "by_deadline", "expired")

    def __init__(self, timer: HeadTimer, limit: float) -> None:
        self._timer = timer
        due = time.monotonic() + limit
        end = deadline.absolute()  # time.monotonic() based
        self.by_deadline = end is not None and end <= due
        self._due = end if end is not None and end <= due else due
        self.expired = False
        self._task: asyncio.Task[object] | None = None
        self._cancelling = 0

    def started(self) -> None:
        self._task = task = asyncio.current_task()
        self._cancelling = task.cancelling() if task is not None else 0
        self._timer.join(self, self._due)

    def finished(self, cancelled: bool = False) -> bool:
        self._timer.leave(self)
        if cancelled and self.expired and self._task is not None:
            return self._task.uncancel() <= self._cancelling
        return False

    def due(self) -> float:
        return self._due

    def expire(self) -> None:
        self.expired = True
        if self._task is not None:
            self._task.cancel()
