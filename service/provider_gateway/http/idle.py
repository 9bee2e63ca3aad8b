"""The idle timeout of a streamed body with one timer per stream instead of one per chunk.

`asyncio.timeout` around each read schedules and cancels a timer for every chunk (a Timeout, a
TimerHandle and a heap push each time): at thousands of tokens a second that was a measurable share
of the relay (benchmarks/RESULTS.md, issue 15). Here a read only notes when it began; one timer,
re-armed only when it fires, checks whether the read in progress has waited too long, and only then
cancels the reading task. A stream's response head is waited for under the upstream's head timer
(http/head_timer.py, the first-byte timeout), and a read of bytes that have already arrived is not
watched: the timer is armed only by a read that has to wait. Time the consumer spends with a chunk
(a slow gRPC client) is not upstream idleness and never counts.
"""

from __future__ import annotations

import asyncio
import time

from provider_gateway.http import deadline


class IdleWatch:
    """Watch the reads of one stream: `started()` before each read, `finished()` after it.

    A read that waits longer than `idle` seconds, or past the caller's deadline, has its task
    cancelled; `finished(cancelled=True)` then tells whether that cancel was this watch's doing."""

    __slots__ = ("_cancelling", "_deadline", "_handle", "_idle", "_since", "_task", "by_deadline", "expired")

    def __init__(self, idle: float) -> None:
        self._idle = idle
        self._deadline = deadline.absolute()  # time.monotonic() based, as loop.time() is
        self._since: float | None = None  # when the read in progress began
        self._task: asyncio.Task[object] | None = None
        self._cancelling = 0
        self._handle: asyncio.TimerHandle | None = None
        self.expired = False
        self.by_deadline = False

    def _due(self, since: float) -> float:
        due = since + self._idle
        return due if self._deadline is None else min(due, self._deadline)

    def started(self) -> None:
        self._since = time.monotonic()
        self._task = asyncio.current_task()
        self._cancelling = self._task.cancelling() if self._task is not None else 0
        if self._handle is None:
            self._arm(self._due(self._since))

    def finished(self, cancelled: bool = False) -> bool:
        """End of a read; True when it was cancelled by this watch (the read timed out)."""
        self._since = None
        if cancelled and self.expired and self._task is not None:
            return self._task.uncancel() <= self._cancelling
        return False

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _arm(self, due: float) -> None:
        self._handle = asyncio.get_running_loop().call_later(max(due - time.monotonic(), 0.0), self._check)

    def _check(self) -> None:
        self._handle = None
        since = self._since
        if since is None:  # between reads: the next read arms the timer again
            return
        due = self._due(since)
        if time.monotonic() < due:
            self._arm(due)
            return
        self.expired = True
        self.by_deadline = self._deadline is not None and self._deadline <= since + self._idle
        if self._task is not None:
            self._task.cancel()
