"""The `[cache]` table: whether answers are kept, for how long, and the memory they may take."""

from __future__ import annotations

from dataclasses import dataclass

from provider_gateway.config import Section

CACHE_KEYS = ("enabled", "ttl_s", "max_entries", "max_bytes", "max_entry_bytes")
MIB = 1024 * 1024
DEFAULT_TTL_S = 300.0
DEFAULT_MAX_ENTRIES = 10_000
DEFAULT_MAX_BYTES = 64 * MIB
DEFAULT_MAX_ENTRY_BYTES = 1 * MIB


@dataclass(frozen=True, slots=True)
class CacheSettings:
    ttl_s: float = DEFAULT_TTL_S
    max_entries: int = DEFAULT_MAX_ENTRIES
    max_bytes: int = DEFAULT_MAX_BYTES  # every entry's answer and bookkeeping together
    max_entry_bytes: int = DEFAULT_MAX_ENTRY_BYTES  # a larger answer is served but not kept

    @classmethod
    def from_section(cls, section: Section) -> CacheSettings | None:
        """The settings, None when the cache is off; every key is checked either way, so a typo in a
        table that is switched off is still reported at start-up."""
        section.reject_unknown(CACHE_KEYS)
        enabled = section.flag("enabled", False)
        ttl_s = section.number("ttl_s", DEFAULT_TTL_S, minimum=0.001)
        max_entries = section.integer("max_entries", DEFAULT_MAX_ENTRIES, minimum=1)
        max_bytes = section.integer("max_bytes", DEFAULT_MAX_BYTES, minimum=1024)
        max_entry_bytes = section.integer("max_entry_bytes", DEFAULT_MAX_ENTRY_BYTES, minimum=1)
        if max_entry_bytes > max_bytes:
            raise section.error(
                "max_entry_bytes", f"must be at most max_bytes ({max_bytes}), got {max_entry_bytes}"
            )
        return cls(ttl_s, max_entries, max_bytes, max_entry_bytes) if enabled else None
