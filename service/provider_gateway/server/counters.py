"""Stand-in for the router's shared counter store (routing/shared_state.py on issue-5-router).

Same protocol: `hit(key, amount, limit, window_s)` returns 0.0 when the amount fits in the current
window, else the seconds until the window resets. Replace the import in auth.py with
`routing.shared_state.build_counter_store` once that module is on main, then delete this file.
"""

from __future__ import annotations

import time
from typing import Protocol


class CounterStore(Protocol):
    async def hit(self, key: str, amount: float, limit: float, window_s: float) -> float: ...


class MemoryCounterStore:
    """Fixed windows kept in this process; good for one replica."""

    def __init__(self) -> None:
        self._windows: dict[str, tuple[float, float]] = {}  # key -> (window start, used)

    async def hit(self, key: str, amount: float, limit: float, window_s: float) -> float:
        now = time.monotonic()
        start, used = self._windows.get(key, (now, 0.0))
        if now - start >= window_s:
            start, used = now, 0.0
        if used + amount > limit and used > 0:
            return max(window_s - (now - start), 0.001)
        self._windows[key] = (start, used + amount)
        return 0.0
