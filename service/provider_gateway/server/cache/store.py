"""Kept answers by key: least recently used first out, bounded in entries and in bytes, each kept
for the TTL. Plain dict work on the event loop, O(1) per call (evictions aside, each paid once)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from provider_gateway.server.cache.settings import CacheSettings

# What an entry costs besides its answer's bytes (CPython objects: the dict slot, the entry, the
# key, the tuple), so that many small answers are bounded by max_bytes too.
ENTRY_OVERHEAD = 200
PART_OVERHEAD = 40  # each message's bytes object and its slot in the tuple


@dataclass(slots=True)
class _Entry:
    parts: tuple[bytes, ...]
    size: int
    expires: float


class AnswerStore:
    def __init__(self, settings: CacheSettings, clock: Callable[[], float] = time.monotonic) -> None:
        """`clock`: monotonic seconds (tests pass their own, to expire entries without waiting)."""
        self.settings = settings
        self.clock = clock
        self.bytes = 0
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> tuple[bytes, ...] | None:
        """The answer's serialized messages, in order; None when absent or expired."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires <= self.clock():
            del self._entries[key]
            self.bytes -= entry.size
            return None
        self._entries.move_to_end(key)
        return entry.parts

    def fits(self, answer_bytes: int) -> bool:
        return answer_bytes <= self.settings.max_entry_bytes

    def put(self, key: bytes, parts: tuple[bytes, ...]) -> bool:
        """Keep `parts` under `key` (replacing what was there); False when the answer is too large."""
        answer = sum(len(p) for p in parts)
        size = ENTRY_OVERHEAD + len(key) + answer + PART_OVERHEAD * len(parts)
        settings = self.settings
        if not self.fits(answer) or size > settings.max_bytes:
            return False
        if (old := self._entries.pop(key, None)) is not None:
            self.bytes -= old.size
        self._entries[key] = _Entry(parts, size, self.clock() + settings.ttl_s)
        self.bytes += size
        while len(self._entries) > settings.max_entries or self.bytes > settings.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self.bytes -= evicted.size
        return True
