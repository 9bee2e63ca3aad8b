"""Meters of what callers spend: GCRA rates (rpm, tpm) and calendar-window budgets (money, tokens).

One call checks and adds to several meters at once, all or nothing, so that a request is admitted
only when every limit of its key and its team has room. Two kinds:

- "rate": the generic cell rate algorithm (GCRA). A meter of `limit` units per `window` lets a
  burst of `limit` through, then one unit every window/limit: no fixed window, so no doubled burst
  around a window's boundary. It stores a single timestamp (the theoretical arrival time).
- "window": a calendar window in UTC (this minute, hour, day or month), as a bill counts. The key's
  name carries the window, so a new window starts from zero; the key expires when its window ends.

In memory for one process (`MemoryMeters`); in Redis through `lua/meters.lua` for every replica and
worker (shared_state.RedisCounterStore). Both keep the same semantics, tested side by side.
"""

from __future__ import annotations

import calendar
import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Literal, NamedTuple, Protocol

from provider_gateway.routing.redis_calls import bulk, bulk_number

type MeterKind = Literal["rate", "window"]
WINDOWS = ("minute", "hour", "day", "month")
_LENGTHS = {"minute": 60, "hour": 3600, "day": 86400}
US = 1_000_000


class Meter(NamedTuple):  # a tuple: a check builds several per request, a frozen dataclass costs 3x
    key: str
    kind: MeterKind
    amount: int
    limit: int
    window_s: float  # rate: the window; window: the time left in the calendar window


@dataclass(slots=True, frozen=True)
class Refusal:
    meter: int  # index of the first meter without room
    wait_s: float


@dataclass(slots=True, frozen=True)
class Reading:
    used: int  # rate: units the next request would find in use; window: spent so far
    resets_in_s: float  # rate: until every unit is free again; window: until it ends


class Meters(Protocol):
    async def meter(self, meters: list[Meter], *, check: bool) -> Refusal | None:
        """check: add every amount if all fit, else none and say which meter refused. Not check:
        add them all anyway (a spend already made, or a refund as a negative window amount)."""
        ...

    async def read(self, meters: list[Meter]) -> list[Reading]: ...


def script(name: str) -> str:
    return resources.files(__package__).joinpath("lua", name).read_text()


def calendar_window(window: str, now: float) -> tuple[str, float]:
    """The UTC calendar window `now` falls in: its name (part of a key) and the seconds left in it."""
    name, ends = _window_at(window, math.floor(now))
    return name, ends - now


@functools.lru_cache(maxsize=32)
def _window_at(window: str, second: int) -> tuple[str, int]:
    """The name and end of the calendar window of a whole second: cached, as every check of that
    second asks for the same few (gmtime and timegm cost more than the rest of a check)."""
    t = time.gmtime(second)
    if window == "month":
        start = calendar.timegm((t.tm_year, t.tm_mon, 1, 0, 0, 0))
        days = calendar.monthrange(t.tm_year, t.tm_mon)[1]
        return f"M{t.tm_year:04d}{t.tm_mon:02d}", start + days * 86400
    length = _LENGTHS[window]
    day = f"{t.tm_year:04d}{t.tm_mon:02d}{t.tm_mday:02d}"
    name = {
        "day": f"d{day}",
        "hour": f"h{day}{t.tm_hour:02d}",
        "minute": f"m{day}{t.tm_hour:02d}{t.tm_min:02d}",
    }
    return name[window], (second // length + 1) * length


class MemoryMeters:
    """The single-process meters; also the fallback of the Redis ones while Redis is away."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._values: dict[str, tuple[float, float]] = {}  # key -> (value, expires at)

    def _get(self, key: str, now: float) -> float:
        value, expires = self._values.get(key, (0.0, 0.0))
        return value if expires > now else 0.0

    async def meter(self, meters: list[Meter], *, check: bool) -> Refusal | None:
        now = self._clock()
        if len(self._values) > 10_000:  # drop what expired so unused keys do not pile up
            self._values = {k: v for k, v in self._values.items() if v[1] > now}
        planned: dict[int, float] = {}
        for i, m in enumerate(meters):
            if m.kind == "rate":
                after = max(self._get(m.key, now), now) + m.amount * m.window_s / m.limit
                if check and after - now > m.window_s:
                    return Refusal(i, after - now - m.window_s)
                planned[i] = after
            elif check and self._get(m.key, now) + m.amount > m.limit:
                expires = self._values.get(m.key, (0.0, now + m.window_s))[1]
                return Refusal(i, max(expires - now, 1e-3))
        for i, m in enumerate(meters):
            if i in planned:
                self._values[m.key] = (planned[i], planned[i])
            elif m.amount:
                spent = self._get(m.key, now) + m.amount
                expires = self._values[m.key][1] if m.key in self._values else now + m.window_s
                if spent <= 0:
                    self._values.pop(m.key, None)
                else:
                    self._values[m.key] = (spent, max(expires, now))
        return None

    async def read(self, meters: list[Meter]) -> list[Reading]:
        now = self._clock()
        readings = []
        for m in meters:
            expires = self._values.get(m.key, (0.0, 0.0))[1]
            readings.append(_reading(m, self._get(m.key, now), now, expires - now))
        return readings


def _reading(meter: Meter, value: float, now_s: float, ttl_s: float) -> Reading:
    """A meter's state from what its store holds (the same arithmetic for memory and Redis).
    value: rate, the arrival time in seconds; window, the amount spent."""
    if meter.kind == "rate":
        ahead_s = max(value - now_s, 0.0)  # how far the arrival time runs ahead of now
        used = min(math.ceil(ahead_s * meter.limit / meter.window_s - 1e-9), meter.limit)
        return Reading(used, ahead_s)
    return Reading(round(value), ttl_s if ttl_s > 0 else meter.window_s)


def readings(meters: list[Meter], raw: list[int]) -> list[Reading]:
    """Decode lua/meters_read.lua's answer: the server's time (µs), then each key's value and ttl (ms)."""
    now_s = raw[0] / US
    found = []
    for i, m in enumerate(meters):
        value, ttl_ms = raw[1 + 2 * i], raw[2 + 2 * i]
        found.append(_reading(m, value / US if m.kind == "rate" else value, now_s, ttl_ms / 1000))
    return found


def script_args(meters: list[Meter], *, check: bool) -> list[str | int]:
    """lua/meters.lua's arguments: the mode, then each meter's kind, limit, amount and window."""
    args: list[str | int] = ["check" if check else "force"]
    for m in meters:
        args += (m.kind, m.limit, m.amount, _script_window(m))
    return args


def packed_script_args(meters: list[Meter], *, check: bool) -> list[bytes]:
    """script_args already RESP-encoded, one item per meter (for redis_calls.DirectCalls): a
    meter's kind and limit come from a cache, as the same meters come back on every request."""
    return [
        bulk("check" if check else "force"),
        *(
            _kind_and_limit(m.kind, m.limit) + bulk_number(m.amount) + bulk_number(_script_window(m))
            for m in meters
        ),
    ]


def _script_window(meter: Meter) -> int:
    """A rate's window in µs; a calendar window's time left in ms (the key's expiry on creation)."""
    return max(math.ceil(meter.window_s * (US if meter.kind == "rate" else 1000)), 1)


@functools.lru_cache(maxsize=1024)
def _kind_and_limit(kind: str, limit: int) -> bytes:
    return bulk(kind) + bulk_number(limit)
