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
from provider_gateway.http.timer_set import TimerSet


class IdleTimer(TimerSet):
    """One upstream's timer for the reads of all its streams (`IdleWatch`es)."""

    __slots__ = ()


class IdleWatch:
    """Watch the reads of one stream: `started()` before each read, `finished()` after it, `close()`
    when the stream ends.

    A read that waits longer than `idle` seconds, or past the caller's deadline, has its task
    cancelled; `finished(cancelled=True)` then tells whether that cancel was this watch's doing."""

    __slots__ = (
        "_cancelling",
        "_deadline",
        "_idle",
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
        self.expired = False
        self.by_deadline = False

    def _due(self, since: float) -> float:
        due = since + self._idle
        return due if self._deadline is None else min(due, self._deadline)

    def started(self) -> None:
        self._since = since = time.monotonic()
        self._task = task = asyncio.current_task()
        self._cancelling = task.cancelling() if task is not None else 0
        if self not in self._timer.members:
            self._timer.join(self, self._due(since))

    def finished(self, cancelled: bool = False) -> bool:
        """End of a read; True when it was cancelled by this watch (the read timed out)."""
        self._since = None
        if cancelled and self.expired and self._task is not None:
            return self._task.uncancel() <= self._cancelling
        return False

    def close(self) -> None:
        self._timer.leave(self)

    def due(self) -> float | None:
        """When the read in progress times out; None between reads (its next read that has to
        wait joins the timer again)."""
        since = self._since
        return None if since is None else self._due(since)

    def expire(self) -> None:
        since = self._since  # a read in progress: the timer expires no other
        self.expired = True
        end = self._deadline
        self.by_deadline = since is not None and end is not None and end <= since + self._idle
        if self._task is not None:
            self._task.cancel()
