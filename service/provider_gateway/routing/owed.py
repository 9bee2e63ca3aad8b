"""What the callers' calendar-window meters owe Redis: amounts added while Redis did not answer.

A settlement (a refund of a reservation's unused part, a charge above it) belongs in Redis whatever
the moment it comes due: a refund lost there keeps a stream's whole worst case spent for the rest of
its calendar window, a lost charge is money the shared budget never sees. The same goes for a check
admitted on the per-process meters while Redis is away (`on_redis_down = "open"`): its reservation
is owed too, so that its settlement, owed or paid later, nets out to what the request really spent.

Kept here, merged per meter key (one entry per key, whatever the number of requests), and added in
Redis once it answers again (shared_state.RedisMeters). Bounded: past `OWED_MAX` meters, a new
meter's amount stays per-process only, counted in `lost`. Rates are left out: a rate is about now,
its per-process twin carries the outage, and a minute-old increment added late would throttle a
key for traffic already past.
"""

from __future__ import annotations

from collections.abc import Iterable

from provider_gateway.routing.meters import Meter

OWED_MAX = 4096  # meters owed at once (keys and teams times their windows), as many as leases


class Owed:
    """Calendar-window amounts owed to Redis, one merged entry per meter key."""

    def __init__(self, most: int = OWED_MAX) -> None:
        self._by_key: dict[str, Meter] = {}
        self._most = most
        self.lost = 0  # amounts that found every slot taken (kept per-process only)

    def __len__(self) -> int:
        return len(self._by_key)

    def add(self, meters: Iterable[Meter]) -> bool:
        """Owe each calendar window's amount; False when one found no slot (lost to Redis)."""
        by_key, kept = self._by_key, True
        for m in meters:
            if m.kind != "window" or not m.amount:
                continue
            found = by_key.get(m.key)
            if found is None:
                if len(by_key) >= self._most:
                    self.lost += 1
                    kept = False
                    continue
                by_key[m.key] = m
            else:
                by_key[m.key] = found._replace(amount=found.amount + m.amount)
        return kept

    def take(self, now_s: float) -> list[list[Meter]]:
        """Everything owed, emptied, one list per hash tag (a script's keys share one, for Redis
        Cluster). Left out: amounts that netted to nothing, and windows already over (their keys
        are gone, and a new key would count for a window nobody reads)."""
        owed, self._by_key = self._by_key, {}
        by_tag: dict[str, list[Meter]] = {}
        for m in owed.values():
            if m.amount and not (m.ends_at and m.ends_at <= now_s):
                by_tag.setdefault(m.key.partition("}")[0], []).append(m)
        return list(by_tag.values())
