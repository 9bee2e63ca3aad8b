"""Kept answers by key: least recently used first out, bounded in entries and in bytes, each kept
for the TTL. Plain dict work on the event loop, O(1) per call (evictions aside, each paid once).

`max_bytes` bounds the memory really held: each entry counts every CPython object it keeps (sizes
from sys.getsizeof, rounded up to the allocator's 16-byte blocks), and the answers of streams still
being recorded count too (`reserve`), evicting kept entries as a kept answer would, so that many
concurrent misses cannot hold more than `max_bytes` besides the entries."""

from __future__ import annotations

import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from provider_gateway.server.cache.settings import CacheSettings


@dataclass(slots=True)
class _Entry:
    parts: tuple[bytes, ...]
    size: int
    expires: float


def _block(size: int) -> int:
    """`size` bytes as pymalloc hands them out: in 16-byte blocks."""
    return (size + 15) & -16


_BYTES_HEADER = sys.getsizeof(b"")  # a bytes object's size without its payload (33 on 3.12)
# An OrderedDict's cost per item, its tables just grown (the worst case): the dict's index and
# entry, the linked-list node and its fast-lookup slot. Measured (sys.getsizeof of an OrderedDict,
# 64 to 200 000 items, CPython 3.12): at most 116 bytes.
_ORDERED_DICT_ITEM = 120
# What an entry costs besides its key's and its parts' payloads: its dict item, the key's bytes
# header, the _Entry, the tuple of parts (its pointers are counted per part), the expiry float and
# the size int.
ENTRY_OVERHEAD = (
    _ORDERED_DICT_ITEM
    + _block(sys.getsizeof(_Entry((), 0, 0.0)))
    + sys.getsizeof(())
    + _block(sys.getsizeof(1.0))
    + _block(sys.getsizeof(2**40))
)


def part_cost(part: bytes) -> int:
    """The memory one kept message holds: its bytes object and its pointer in the entry's tuple."""
    return _block(_BYTES_HEADER + len(part)) + 8


class AnswerStore:
    def __init__(self, settings: CacheSettings, clock: Callable[[], float] = time.monotonic) -> None:
        """`clock`: monotonic seconds (tests pass their own, to expire entries without waiting)."""
        self.settings = settings
        self.clock = clock
        self.bytes = 0  # the kept entries'
        self.recording = 0  # the parts of answers being recorded (`reserve`)
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

    def reserve(self, cost: int) -> bool:
        """Count `cost` (`part_cost` of a part being recorded) against max_bytes until `release`,
        evicting the least recently used entries for it; False (nothing counted) when the answers
        being recorded already hold max_bytes: that one is served, not kept."""
        if self.recording + cost > self.settings.max_bytes:
            return False
        self.recording += cost
        self._evict()
        return True

    def release(self, reserved: int) -> None:
        """A recording ended (kept, or given up): its parts no longer count as being recorded."""
        self.recording -= reserved

    def put(self, key: bytes, parts: tuple[bytes, ...]) -> bool:
        """Keep `parts` under `key` (replacing what was there); False when the answer is too large."""
        answer = 0
        size = ENTRY_OVERHEAD + _block(_BYTES_HEADER + len(key))
        for part in parts:
            answer += len(part)
            size += part_cost(part)
        settings = self.settings
        if not self.fits(answer) or size > settings.max_bytes:
            return False
        if (old := self._entries.pop(key, None)) is not None:
            self.bytes -= old.size
        self._entries[key] = _Entry(parts, size, self.clock() + settings.ttl_s)
        self.bytes += size
        self._evict()
        return True

    def _evict(self) -> None:
        settings, entries = self.settings, self._entries
        while entries and (
            len(entries) > settings.max_entries or self.bytes + self.recording > settings.max_bytes
        ):
            _, evicted = entries.popitem(last=False)
            self.bytes -= evicted.size
