"""The stall limits of attempts, with one timer for every attempt in progress instead of one per read.

An attempt waits for each of its provider's events within a limit: the time to first token until
content arrives, then the idle time between events, never past the request's deadline (a unary
call's only limit). An `asyncio.timeout` around each read scheduled and cancelled a timer for every
relayed event (a Timeout, a TimerHandle and a heap entry each time: about 30 Python calls), and one
timer per attempt still cost a TimerHandle armed and cancelled per call. Here a read only notes when
it began, on the `perf_counter_ns` reading that already times the upstream, and a `Watchdog` (one
per router) keeps one timer for the soonest time any attempt's read could pass its limit: an
attempt joins it once (again only when a shorter limit applies), and the timer is re-armed only
when a sooner time joins or when it fires. Firing, it checks each attempt: a read in progress that
waited too long has its task cancelled, as `asyncio.timeout` would. Time the consumer spends with
an event (a slow gRPC client) is not upstream stalling and never counts, as before.
"""

from __future__ import annotations

import asyncio
import contextvars
import time


class Watchdog:
    """One timer for the stall watches of every attempt in progress (of one router).

    Nearly every attempt joins with a time later than the one armed (the same limits, started
    later): joining is then a set insertion. The timer fires at the soonest time it was armed for,
    asks each watch when it must be looked at next (`StallWatch.check`) and is re-armed for the
    soonest of those; a watch that leaves (`forget`) leaves the timer as it is."""

    __slots__ = ("_context", "_due_ns", "_handle", "_loop", "_watches")

    def __init__(self) -> None:
        self._watches: set[StallWatch] = set()
        self._handle: asyncio.TimerHandle | None = None
        self._due_ns = 0  # when the armed timer fires
        self._loop: asyncio.AbstractEventLoop | None = None
        # The timer outlives the request that armed it (it re-arms itself for later ones): run it
        # in a context of its own, not a copy of that request's (its caller, pending check...).
        self._context = contextvars.Context()

    def watch(self, watch: StallWatch, due_ns: int, now_ns: int) -> None:
        """Look at `watch` at `due_ns` (perf_counter_ns) at the latest."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (a test's): the old one's watches ended with it
            self._loop, self._handle = loop, None
            self._watches.clear()
        self._watches.add(watch)
        if self._handle is None or due_ns < self._due_ns:
            self._arm(due_ns, now_ns)

    def forget(self, watch: StallWatch) -> None:
        self._watches.discard(watch)

    def _arm(self, due_ns: int, now_ns: int) -> None:
        if self._handle is not None:
            self._handle.cancel()
        assert self._loop is not None
        self._due_ns = due_ns
        self._handle = self._loop.call_later(max(due_ns - now_ns, 0) / 1e9, self._fire, context=self._context)

    def _fire(self) -> None:
        self._handle = None
        now_ns = time.perf_counter_ns()
        soonest = 0
        for watch in list(self._watches):
            due_ns = watch.check(now_ns)
            if due_ns is None:  # its read was stopped: it joins again if it reads again
                self._watches.discard(watch)
            elif not soonest or due_ns < soonest:
                soonest = due_ns
        if soonest:
            self._arm(soonest, now_ns)


class StallWatch:
    """Watch the reads of one attempt: `reading(now_ns, task)` before each (`task`: the one reading),
    `finished()` after one that returned, `stopped_read()` after one that ended in CancelledError,
    `close()` at the end. A stream's reader does `reading()`'s and `finished()`'s work itself on
    every event (two calls fewer an event): it sets `since_ns`, `task` and `cancelling` (`join()`
    when not `watched`), then zeroes `since_ns` and calls `finished()` only when `expired`.

    `limit_s` bounds the reads to come (None: only the deadline); `deadline_s` is what is left of
    the request's time when the attempt starts; `watchdog` holds the timer (shared by a router's
    attempts; a watch of its own otherwise)."""

    __slots__ = (
        "_deadline_ns",
        "_watchdog",
        "by_deadline",
        "cancelling",
        "expired",
        "limit_s",
        "since_ns",
        "task",
        "watched",
    )

    def __init__(self, limit_s: float | None, deadline_s: float, watchdog: Watchdog | None = None) -> None:
        self.limit_s = limit_s
        self._watchdog = watchdog or Watchdog()
        self.watched = False  # whether the watchdog looks at this watch by its current limit
        self._deadline_ns = time.perf_counter_ns() + int(max(deadline_s, 0.0) * 1e9)
        self.since_ns = 0  # when the read in progress began (0: no read in progress)
        self.task: asyncio.Task[object] | None = None
        self.cancelling = 0
        self.expired = False  # the watchdog cancelled the reading task and nobody settled it yet
        self.by_deadline = False  # the request's deadline, not the limit, was what passed

    def reading(self, now_ns: int, task: asyncio.Task[object] | None) -> None:
        self.since_ns = now_ns
        self.task = task
        self.cancelling = task.cancelling() if task is not None else 0
        if not self.watched:
            self.join(now_ns)

    def join(self, now_ns: int) -> None:
        """Tell the watchdog when to look at this watch (at the first read, and after `limit`)."""
        self.watched = True
        self._watchdog.watch(self, self._due_ns(now_ns), now_ns)

    def limit(self, limit_s: float | None) -> None:
        """Bound the reads to come by `limit_s` instead (the idle limit once content has come)."""
        self.limit_s = limit_s
        self.watched = False  # the next read tells the watchdog, in case this limit is shorter

    def finished(self) -> None:
        self.since_ns = 0
        if self.expired:  # the event arrived as the limit passed and the adapter swallowed the cancel
            self._settle()

    def stopped_read(self) -> bool:
        """Whether this watch cancelled the read that just ended in CancelledError (a limit passed);
        False when the cancel came from elsewhere (the client, shutdown): it must propagate."""
        self.since_ns = 0
        return self.expired and self._settle()

    def close(self) -> None:
        self.watched = False
        self._watchdog.forget(self)
        if self.expired:  # the cancelled read ended in another exception
            self._settle()

    def check(self, now_ns: int) -> int | None:
        """The watchdog's look at `now_ns`: when to look again; None once this watch has stopped
        the read in progress (it cancelled the reading task: the read had waited too long)."""
        since_ns = self.since_ns
        if not since_ns:  # between reads: a read to come passes its limit no sooner than this
            return self._due_ns(now_ns)
        due_ns = self._due_ns(since_ns)
        if now_ns < due_ns:
            return due_ns
        self.watched = False
        self.expired = True
        self.by_deadline = due_ns == self._deadline_ns
        if self.task is not None:
            self.task.cancel()
        return None

    def _settle(self) -> bool:
        """Take back this watch's cancel, as `asyncio.timeout` does; whether it was the only one."""
        self.expired = False
        return self.task is not None and self.task.uncancel() <= self.cancelling

    def _due_ns(self, since_ns: int) -> int:
        if self.limit_s is None:
            return self._deadline_ns
        return min(since_ns + int(self.limit_s * 1e9), self._deadline_ns)
