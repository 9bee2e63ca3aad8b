"""The idle timeout of streamed bodies with one timer per upstream instead of one per chunk or stream.

`asyncio.timeout` around each read schedules and cancels a timer for every chunk (a Timeout, a
TimerHandle and a heap push each time): at thousands of tokens a second that was a measurable share
of the relay (benchmarks/RESULTS.md, issue 15). Here a read only notes when it began. One timer per
upstream (`IdleTimer`, owned by http/client.py's Upstream), armed for the earliest moment one of its
streams' reads may be due, checks those reads when it fires, cancels the tasks whose read has waited
too long, and re-arms for the next. A stream joins the timer with its first read that has to wait
(a read of bytes that have already arrived is not watched) and leaves it when it closes, or when the
timer finds it between reads: a timer of its own (call_later, a TimerHandle, a heap push, then its
cancel) cost a stream 10-20k instructions. A stream's response head is waited for under the
upstream's head timer (http/head_timer.py, the first-byte timeout). Time the consumer spends with a
chunk (a slow gRPC client) is not upstream idleness and never counts.
"""

from __future__ import annotations

import asyncio
import time

from provider_gateway.http import deadline

_NEVER = float("inf")


class IdleTimer:
    """One upstream's timer for the reads of all its streams (`IdleWatch`es)."""

    __slots__ = ("_armed_for", "_handle", "_loop", "_watches")

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._armed_for = _NEVER
        self._watches: set[IdleWatch] = set()

    def _join(self, watch: IdleWatch, due: float) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # an upstream used from another loop (tests): nothing carries over
            for stale in self._watches:
                stale._joined = False
            if self._handle is not None:  # the old loop's timer must not check the new loop's reads
                self._handle.cancel()
            self._loop, self._handle, self._armed_for, self._watches = loop, None, _NEVER, set()
        self._watches.add(watch)
        watch._joined = True
        if due < self._armed_for:
            if self._handle is not None:
                self._handle.cancel()
            self._arm(loop, due)

    def _leave(self, watch: IdleWatch) -> None:
        watch._joined = False
        self._watches.discard(watch)

    def _arm(self, loop: asyncio.AbstractEventLoop, due: float) -> None:
        # call_later from time.monotonic(): a deadline is on that clock, and uvloop's time() is not.
        self._armed_for = due
        self._handle = loop.call_later(max(due - time.monotonic(), 0.0), self._check)

    def _check(self) -> None:
        """The reads that waited past their due are cancelled; a read in progress only moves its
        stream's due later, so the timer fires early for it and is re-armed (O(streams) once per
        idle timeout at most)."""
        self._handle, self._armed_for = None, _NEVER
        now = time.monotonic()
        earliest = _NEVER
        for watch in tuple(self._watches):
            since = watch._since
            if since is None:  # between reads: its next read that waits joins again
                self._leave(watch)
            elif (due := watch._due(since)) <= now:
                self._leave(watch)
                watch._expire(since)
            elif due < earliest:
                earliest = due
        if earliest < _NEVER and self._loop is not None:
            self._arm(self._loop, earliest)


class IdleWatch:
    """Watch the reads of one stream: `started()` before each read, `finished()` after it, `close()`
    when the stream ends.

    A read that waits longer than `idle` seconds, or past the caller's deadline, has its task
    cancelled; `finished(cancelled=True)` then tells whether that cancel was this watch's doing."""

    __slots__ = (
        "_cancelling",
        "_deadline",
        "_idle",
        "_joined",
        "_since",
        "_task",
        "_timer",
        "by_deadline",
        "expired",
    )

    def __init__(self, timer: IdleTimer, idle: float) -> None:
        self._timer = timer
        self._idle = idle
        self._deadline = deadline.absolute()  # time.monotonic() based, as loop.time() is
        self._since: float | None = None  # when the read in progress began
        self._task: asyncio.Task[object] | None = None
        self._cancelling = 0
        self._joined = False  # among the timer's watches
        self.expired = False
        self.by_deadline = False

    def _due(self, since: float) -> float:
        due = since + self._idle
        return due if self._deadline is None else min(due, self._deadline)

    def started(self) -> None:
        self._since = since = time.monotonic()
        self._task = task = asyncio.current_task()
        self._cancelling = task.cancelling() if task is not None else 0
        if not self._joined:
            self._timer._join(self, self._due(since))

    def finished(self, cancelled: bool = False) -> bool:
        """End of a read; True when it was cancelled by this watch (the read timed out)."""
        self._since = None
        if cancelled and self.expired and self._task is not None:
            return self._task.uncancel() <= self._cancelling
        return False

    def close(self) -> None:
        if self._joined:
            self._timer._leave(self)

    def _expire(self, since: float) -> None:
        self.expired = True
        self.by_deadline = self._deadline is not None and self._deadline <= since + self._idle
        if self._task is not None:
            self._task.cancel()
