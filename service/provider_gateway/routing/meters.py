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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Literal, NamedTuple, Protocol

from provider_gateway.routing.redis_calls import bulk, bulk_int, bulk_number

type MeterKind = Literal["rate", "window"]
WINDOWS = ("minute", "hour", "day", "month")
_LENGTHS = {"minute": 60, "hour": 3600, "day": 86400}
US = 1_000_000


class Meter(NamedTuple):  # a tuple: a check builds several per request; a frozen dataclass costs ~3x
    key: str
    kind: MeterKind
    amount: int
    limit: int
    window_s: float  # rate: the window; window: the time left in the calendar window (or more)
    # window: the calendar window's end (Unix seconds), its key's expiry; 0: now + window_s
    ends_at: int = 0


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

    async def meter_batch(self, batch: Batch, amounts: tuple[int, ...], *, check: bool) -> Refusal | None:
        """meter() of `batch`'s meters with these amounts, one per meter."""
        ...

    async def read(self, meters: list[Meter]) -> list[Reading]: ...


def script(name: str) -> str:
    return resources.files(__package__).joinpath("lua", name).read_text()


def calendar_window(window: str, now: float) -> tuple[str, float]:
    """The UTC calendar window `now` falls in: its name (part of a key) and the seconds left in it."""
    name, ends = _window_at(window, math.floor(now))
    return name, ends - now


def calendar_window_end(window: str, now: float) -> tuple[str, int]:
    """The UTC calendar window `now` falls in: its name and its end (Unix seconds)."""
    return _window_at(window, math.floor(now))


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
        return self._add(meters, [m.amount for m in meters], check=check)

    async def meter_batch(self, batch: Batch, amounts: tuple[int, ...], *, check: bool) -> Refusal | None:
        return self._add(batch.meters, amounts, check=check)

    def _add(self, meters: Sequence[Meter], amounts: Sequence[int], *, check: bool) -> Refusal | None:
        """meter(): each meter's amount from `amounts` (a batch's meters carry none)."""
        now = self._clock()
        if len(self._values) > 10_000:  # drop what expired so unused keys do not pile up
            self._values = {k: v for k, v in self._values.items() if v[1] > now}
        planned: dict[int, float] = {}
        for i, (m, amount) in enumerate(zip(meters, amounts, strict=True)):
            if m.kind == "rate":
                after = max(self._get(m.key, now), now) + amount * m.window_s / m.limit
                if check and after - now > m.window_s:
                    return Refusal(i, after - now - m.window_s)
                planned[i] = after
            elif check and self._get(m.key, now) + amount > m.limit:
                expires = self._values.get(m.key, (0.0, m.ends_at or now + m.window_s))[1]
                return Refusal(i, max(expires - now, 1e-3))
        for i, (m, amount) in enumerate(zip(meters, amounts, strict=True)):
            if i in planned:
                self._values[m.key] = (planned[i], planned[i])
            elif amount:
                spent = self._get(m.key, now) + amount
                expires = self._values[m.key][1] if m.key in self._values else m.ends_at or now + m.window_s
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
    """lua/meters.lua's arguments: the mode, every meter's kind (a letter each), then each meter's
    limit, window and amount."""
    args: list[str | int] = ["check" if check else "force", "".join(_LETTERS[m.kind] for m in meters)]
    for m in meters:
        args += (m.limit, _window_arg(m.kind, _span(m)), m.amount)
    return args


@dataclass(slots=True)
class Batch:
    """Meters that every call of a while (a key's, in one second) sends again with new amounts only:
    a store encodes them once, in `packed`, and each call fills in the amounts."""

    meters: tuple[Meter, ...]  # their amounts are 0
    packed: tuple[int, bytes] | None = None  # PackedScriptCalls.template's, made at the first check

    def with_amounts(self, amounts: tuple[int, ...]) -> list[Meter]:
        return [m._replace(amount=a) for m, a in zip(self.meters, amounts, strict=True)]


# A meter as encoded once: kind, limit and span (to see a change), then its key, its kind's letter
# and its limit and window, RESP-encoded.
type _Kept = tuple[MeterKind, int, float, bytes, str, bytes]


class PackedScriptCalls:
    """lua/meters.lua's calls, RESP-encoded for redis_calls.DirectCalls, on keys under `prefix`.

    The same meters come back on every request, their windows included (a rate's length, a
    calendar window's end), so all of a meter but its amount is encoded once and kept, by the
    meter's own key (a string the caller keeps too, so its hash is computed once). A Batch's check
    is kept whole, as one template of its amounts."""

    KEEP_MAX = 4096  # meters of every key and team in use; a bound all the same

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._kept: dict[str, _Kept] = {}

    def call(self, meters: list[Meter], *, check: bool) -> tuple[int, list[bytes]]:
        """The call after the script's name: how many bulk strings, then them (the key count, the
        keys, the arguments of script_args; one item per meter among the arguments)."""
        kept = self._encoded(meters)
        body = [bulk_int(len(meters)), *(k[3] for k in kept), _CHECK if check else _FORCE]
        body.append(bulk("".join(k[4] for k in kept)))
        body += [k[5] + _amount(m.amount) for k, m in zip(kept, meters, strict=True)]
        return 3 + 4 * len(meters), body

    def template(self, batch: Batch) -> tuple[int, bytes]:
        """The check of `batch`'s meters as one bytes %-template of their amounts (each a
        zero-padded %020d: see `fits`), and how many bulk strings it holds."""
        if batch.packed is None:
            kept = self._encoded(list(batch.meters))
            head = [bulk_int(len(kept)), *(k[3] for k in kept), _CHECK, bulk("".join(k[4] for k in kept))]
            body = [k[5].replace(b"%", b"%%") + b"$20\r\n%020d\r\n" for k in kept]
            batch.packed = (3 + 4 * len(kept), b"".join(head).replace(b"%", b"%%") + b"".join(body))
        return batch.packed

    def _encoded(self, meters: list[Meter]) -> list[_Kept]:
        found = []
        for m in meters:
            span = _span(m)
            kept = self._kept.get(m.key)
            if kept is None or kept[:3] != (m.kind, m.limit, span):
                kept = self._keep(m, span)
            found.append(kept)
        return found

    def _keep(self, meter: Meter, span: float) -> _Kept:
        if len(self._kept) >= self.KEEP_MAX:
            self._kept.clear()
        constant = bulk_int(meter.limit) + bulk_int(_window_arg(meter.kind, span))
        key = bulk(self._prefix + meter.key)
        kept = (meter.kind, meter.limit, span, key, _LETTERS[meter.kind], constant)
        self._kept[meter.key] = kept
        return kept


def fits(amounts: tuple[int, ...]) -> bool:
    """Whether every amount fits PackedScriptCalls.template's 20 characters."""
    return min(amounts) > _PADDED and max(amounts) < -_PADDED


def _amount(amount: int) -> bytes:
    return b"$20\r\n%020d\r\n" % amount if _PADDED < amount < -_PADDED else bulk_number(amount)


_LETTERS: dict[MeterKind, str] = {"rate": "r", "window": "w"}
_CHECK, _FORCE = bulk("check"), bulk("force")
_PADDED = -(10**18)  # bulk_number pads what lies strictly between this and its opposite


def _span(meter: Meter) -> float:
    """A rate's window (seconds); a calendar window's end (Unix time)."""
    if meter.kind == "rate":
        return meter.window_s
    return meter.ends_at or time.time() + meter.window_s


def _window_arg(kind: str, span: float) -> int:
    """A rate's window in µs; a calendar window's end in Unix ms (its key's expiry, PEXPIREAT)."""
    return max(math.ceil(span * (US if kind == "rate" else 1000)), 1)
