"""The stall limits of one attempt with one timer per attempt instead of an `asyncio.timeout` per event.

An attempt waits for each of its provider's events within a limit: the time to first token until
content arrives, then the idle time between events, never past the request's deadline (a unary
call's only limit). An `asyncio.timeout` around each read scheduled and cancelled a timer for every
relayed event (a Timeout, a TimerHandle and a heap entry each time: about 30 Python calls). Here a
read only notes when it began, on the `perf_counter_ns` reading that already times the upstream;
one timer, re-armed only when it fires, checks whether the read in progress has waited too long,
and only then cancels the reading task, as `asyncio.timeout` would. Time the consumer spends with
an event (a slow gRPC client) is not upstream stalling and never counts, as before.
"""

from __future__ import annotations

import asyncio
import time


class StallWatch:
    """Watch the reads of one attempt: `reading(now_ns)` before each, `finished()` after one that
    returned, `stopped_read()` after one that ended in CancelledError, `close()` at the end.

    `limit_s` bounds the reads to come (None: only the deadline); `deadline_s` is what is left of
    the request's time when the attempt starts."""

    __slots__ = (
        "_cancelling",
        "_deadline_ns",
        "_handle",
        "_loop",
        "_since_ns",
        "_task",
        "by_deadline",
        "expired",
        "limit_s",
    )

    def __init__(self, limit_s: float | None, deadline_s: float) -> None:
        self.limit_s = limit_s
        self._loop = asyncio.get_running_loop()
        self._deadline_ns = time.perf_counter_ns() + int(max(deadline_s, 0.0) * 1e9)
        self._since_ns = 0  # when the read in progress began (0: no read in progress)
        self._task: asyncio.Task[object] | None = None
        self._cancelling = 0
        self._handle: asyncio.TimerHandle | None = None
        self.expired = False  # the timer cancelled the reading task and nobody settled it yet
        self.by_deadline = False  # the request's deadline, not the limit, was what passed

    def reading(self, now_ns: int) -> None:
        self._since_ns = now_ns
        self._task = task = asyncio.current_task()
        self._cancelling = task.cancelling() if task is not None else 0
        if self._handle is None:
            self._arm(now_ns)

    def limit(self, limit_s: float | None) -> None:
        """Bound the reads to come by `limit_s` instead (the idle limit once content has come)."""
        self.limit_s = limit_s
        if self._handle is not None:  # armed for the old limit: the next read arms it for this one
            self._handle.cancel()
            self._handle = None

    def finished(self) -> None:
        self._since_ns = 0
        if self.expired:  # the event arrived as the limit passed and the adapter swallowed the cancel
            self._settle()

    def stopped_read(self) -> bool:
        """Whether this watch cancelled the read that just ended in CancelledError (a limit passed);
        False when the cancel came from elsewhere (the client, shutdown): it must propagate."""
        self._since_ns = 0
        return self.expired and self._settle()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self.expired:  # the cancelled read ended in another exception
            self._settle()

    def _settle(self) -> bool:
        """Take back this watch's cancel, as `asyncio.timeout` does; whether it was the only one."""
        self.expired = False
        return self._task is not None and self._task.uncancel() <= self._cancelling

    def _due_ns(self, since_ns: int) -> int:
        if self.limit_s is None:
            return self._deadline_ns
        return min(since_ns + int(self.limit_s * 1e9), self._deadline_ns)

    def _arm(self, now_ns: int) -> None:
        delay = (self._due_ns(self._since_ns) - now_ns) / 1e9
        self._handle = self._loop.call_later(max(delay, 0.0), self._check)

    def _check(self) -> None:
        self._handle = None
        since_ns = self._since_ns
        if not since_ns:  # between reads: the next read arms the timer again
            return
        now_ns = time.perf_counter_ns()
        due_ns = self._due_ns(since_ns)
        if now_ns < due_ns:
            self._arm(now_ns)
            return
        self.expired = True
        self.by_deadline = due_ns == self._deadline_ns
        if self._task is not None:
            self._task.cancel()
