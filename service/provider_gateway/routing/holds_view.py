"""The shared holds (breaker ejections, provider rate-limit holds) kept in-process between reads.

Every call asks, before its first attempt, whether its deployments are held; the answer is nearly
always "no". Reading Redis for it cost a round trip on every call (230-480 µs at p50 on the VM of
benchmarks/RESULTS.md), so the Redis store answers from this view at once and refreshes it in the
background, one read of every known key at a time, once the view is older than `[redis]
holds_refresh_ms`: another replica's hold is seen within that interval. A key never read yet is
read before answering (a fresh replica does not start blind). Holds are kept as deadlines on the
store's clock, so they count down between reads. With an interval of 0, every call reads Redis.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

# Keys come from deployments (three each: deployments.py `hold_keys`), which the configuration
# bounds; bounded here anyway, since a plan can name a provider's model directly. Past it the oldest
# key goes (and is read again once).
MAX_KEYS = 6144

Clock = Callable[[], float]
# Seconds each key stays held, as Redis says; None when Redis could not be read (the store has
# counted the outage then).
Read = Callable[[list[str]], Awaitable[list[float] | None]]


class HoldsView:
    def __init__(self, read: Read, clock: Clock, refresh_s: float, max_keys: int = MAX_KEYS) -> None:
        self._read = read
        self._clock = clock
        self._refresh_s = refresh_s
        self._max_keys = max_keys
        self._until: dict[str, float] = {}  # key -> held until (<= now: not held)
        self._read_at = -float("inf")  # when the last refresh was sent
        self._refreshing: asyncio.Task[None] | None = None

    async def remaining(self, keys: list[str]) -> list[float] | None:
        """Seconds each key stays held; None when Redis had to be read and could not be."""
        if not self._refresh_s:
            return await self._read(keys)
        until = self._until
        try:
            deadlines = [until[key] for key in keys]
        except KeyError:  # a key never read: a fresh replica, a new deployment, after an outage
            return await self._first(keys)
        now = self._clock()
        if now - self._read_at >= self._refresh_s and self._refreshing is None:
            self._read_at = now
            refreshing = asyncio.get_running_loop().create_task(self._refresh(list(until)))
            # A refresh that finished at once (eager tasks: a read that never waited) cleared
            # `_refreshing` already; kept, its task would stop every later refresh.
            self._refreshing = None if refreshing.done() else refreshing
        return [d - now if d > now else 0.0 for d in deadlines]

    async def _first(self, keys: list[str]) -> list[float] | None:
        held = await self._read(keys)
        if held is not None:
            if not self._until:  # the view starts now: no refresh due before the interval
                self._read_at = self._clock()
            self._keep(keys, held)
        return held

    async def _refresh(self, keys: list[str]) -> None:
        """In the background, never failing a call: a failed read is the store's outage."""
        try:
            held = await self._read(keys)
            if held is not None:
                self._keep(keys, held, known_only=True)  # not those forgotten meanwhile
        finally:
            self._refreshing = None

    def _keep(self, keys: list[str], held: list[float], *, known_only: bool = False) -> None:
        now = self._clock()
        until = self._until
        for key, seconds in zip(keys, held, strict=True):
            if key not in until:
                if known_only:
                    continue
                if len(until) >= self._max_keys:
                    del until[next(iter(until))]
            until[key] = now + seconds

    def lifted(self, key: str) -> None:
        """`key`'s hold ended here (its breaker closed): not held, until a read says otherwise."""
        if key in self._until:
            self._until[key] = 0.0

    def forget(self) -> None:
        """After a Redis failure: what the view holds may be stale once Redis is back, so every
        key is read again then."""
        self._until.clear()

    def close(self) -> None:
        if self._refreshing is not None:
            self._refreshing.cancel()
