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
import math
import operator
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal, NamedTuple, Protocol

from provider_gateway.routing.redis_calls import bulk, bulk_int

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

    async def meter_batch(self, batch: Batch, values: tuple[int, ...], *, check: bool) -> Refusal | None:
        """meter() of `batch`'s meters, each adding the value its source names."""
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


def _window_at(window: str, second: int) -> tuple[str, int]:
    """The name and end of the calendar window of a whole second (a shape's check batch names its
    windows once a second, server/budgets.py, so nothing here needs a cache)."""
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

    async def meter_batch(self, batch: Batch, values: tuple[int, ...], *, check: bool) -> Refusal | None:
        return self._add(batch.meters, batch.amounts(values), check=check)

    def _add(self, meters: Sequence[Meter], amounts: Sequence[int], *, check: bool) -> Refusal | None:
        """meter(): each meter's amount from `amounts` (a batch's meters carry none)."""
        now = self._clock()
        if len(self._values) > 10_000:  # drop what expired so unused keys do not pile up
            self._values = {k: v for k, v in self._values.items() if v[1] > now}
        planned: dict[int, float] = {}
        # The first calendar window without room: a rate's refusal comes first, as in lua/meters.lua.
        full: Refusal | None = None
        for i, (m, amount) in enumerate(zip(meters, amounts, strict=True)):
            if m.kind == "rate":
                after = max(self._get(m.key, now), now) + amount * m.window_s / m.limit
                if check and after - now > m.window_s:
                    return Refusal(i, after - now - m.window_s)
                planned[i] = after
            elif check and full is None and self._get(m.key, now) + amount > m.limit:
                expires = self._values.get(m.key, (0.0, m.ends_at or now + m.window_s))[1]
                full = Refusal(i, max(expires - now, 1e-3))
        if full is not None:
            return full
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


def script_args(meters: list[Meter], *, check: bool, extras: Sequence[int] = ()) -> list[str | int]:
    """lua/meters.lua's arguments for `meters` (KEYS in the same order): the mode, the windows'
    ends and the order (rates first), then per rate its increment, window and expiry, and per
    calendar window its amount and limit. With `extras` (per meter, in KEYS' order): a "lease"
    check, which also adds each extra where it fits, the extras last."""
    order, rates = _rates_first(meters)
    ends = "".join(f"{_end_ms(meters[i]):020d}" for i in order)
    mode = "lease" if extras else "check" if check else "force"
    args: list[str | int] = [mode, ends + _order_arg(order, rates)]
    for i in order:
        m = meters[i]
        if m.kind == "rate":
            window_us = _window_us(m.window_s)
            args += (_increment(_clamped(m.amount), window_us, m.limit), window_us, _expiry_ms(window_us))
        else:
            args += (_clamped(m.amount), m.limit)
    if extras:
        args += [_extra_arg(meters[i], extras[i]) for i in order]
    return args


def _extra_arg(meter: Meter, extra: int) -> int:
    """What a lease's extra adds in the script: a rate's increment (µs), a window's amount."""
    extra = max(0, min(extra, _MAX_AMOUNT))
    return _increment(extra, _window_us(meter.window_s), meter.limit) if meter.kind == "rate" else extra


def granted(meters: list[Meter], extras: Sequence[int], answer: Sequence[Any]) -> list[int]:
    """The extras a "lease" check added, per meter in KEYS' order, from its answer (a flag per
    meter in the script's order after the first two items)."""
    order, _ = _rates_first(meters)
    found = [0] * len(meters)
    for p, i in enumerate(order):
        if int(answer[2 + p]):
            found[i] = extras[i]
    return found


class CheckTemplate:
    """A Batch's check command after the script's name, kept whole but for one bulk string per
    meter: `template % values` fills each with what the meter adds from the call's values (a
    calendar window its value, a rate the increment its value makes)."""

    __slots__ = ("_format", "_pick", "_rates")

    def __init__(
        self, format_: bytes, values: int, sources: list[int], rates: list[tuple[int, int, int]]
    ) -> None:
        """format_: per meter in the script's order "$%d\r\n%b\r\n" (a length, the digits), every
        other % doubled; `values`: how many a call has; sources: per meter in that order, its
        value's index; rates (the first meters): source, window (µs), limit."""
        self._format = format_
        self._rates = rates
        # A call's digits: its values', then each rate's increment's; then their lengths.
        numbers = values + len(rates)
        pick: list[int] = []
        for p, source in enumerate(sources):
            digits = values + p if p < len(rates) else source
            pick += (numbers + digits, digits)
        self._pick = operator.itemgetter(*pick)

    def __mod__(self, values: tuple[int, ...]) -> bytes:
        digits = [b"%d" % v for v in values]
        digits += [  # each rate's increment, as _increment computes it (inline: a call a rate costs)
            b"%d" % -(-values[source] * window_us // limit) for source, window_us, limit in self._rates
        ]
        picked: tuple[int | bytes, ...] = self._pick([*digits, *[len(d) for d in digits]])
        return self._format % picked


@dataclass(slots=True)
class Batch:
    """Meters that every call of a while (a key's, in one second) sends again with new amounts only,
    each meter adding one of a few values (`sources`: its value's index): a store encodes them
    once, in `packed`, and each call fills in the values."""

    meters: tuple[Meter, ...]  # their amounts are 0
    sources: tuple[int, ...]  # per meter, which of the call's values it adds
    packed: tuple[int, CheckTemplate, int] | None = None  # PackedScriptCalls.template's, at the first check

    def amounts(self, values: tuple[int, ...]) -> list[int]:
        return [values[s] for s in self.sources]

    def with_amounts(self, values: tuple[int, ...]) -> list[Meter]:
        return [m._replace(amount=values[s]) for m, s in zip(self.meters, self.sources, strict=True)]


class _Kept(NamedTuple):
    """A meter as encoded once: kind, limit and span (to see a change), then its key, its window's
    end (a field of the ends) and its constant arguments, RESP-encoded, and a rate's window (µs)."""

    kind: MeterKind
    limit: int
    span: float
    key: bytes
    end: bytes
    constants: bytes
    window_us: int


class PackedScriptCalls:
    """lua/meters.lua's calls, RESP-encoded for redis_calls.DirectCalls, on keys under `prefix`.

    The same meters come back on every request, their windows included (a rate's length, a
    calendar window's end), so all of a meter but its amount is encoded once and kept, by the
    meter's own key (a string the caller keeps too, so its hash is computed once). A Batch's check
    is kept whole, as one template of its values."""

    KEEP_MAX = 4096  # meters of every key and team in use; a bound all the same

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._kept: dict[str, _Kept] = {}

    def call(
        self, meters: list[Meter], *, check: bool, extras: Sequence[int] = ()
    ) -> tuple[int, list[bytes]]:
        """The call after the script's name: how many bulk strings, then them (the key count, the
        keys, the arguments of script_args; one item per meter among the arguments)."""
        kept = self._encoded(meters)
        order, rates = _rates_first(meters)
        body = _head(kept, order, rates, check=check)
        for i in order:
            k, amount = kept[i], _clamped(meters[i].amount)
            body += (
                bulk_int(_increment(amount, k.window_us, k.limit) if k.window_us else amount),
                k.constants,
            )
        if not extras:
            return _count(kept, rates), body
        body[1 + len(kept)] = _LEASE
        body += [bulk_int(_extra_arg(meters[i], extras[i])) for i in order]
        return _count(kept, rates) + len(kept), body

    def template(self, batch: Batch) -> tuple[int, CheckTemplate, int]:
        """The check of `batch`'s meters as one template of the first values of a call: how many
        bulk strings it holds, the template, and how many values it takes (up to the last any
        meter adds)."""
        if batch.packed is None:
            kept = self._encoded(list(batch.meters))
            order, rates = _rates_first(kept)
            parts = [b"".join(_head(kept, order, rates, check=True)).replace(b"%", b"%%")]
            for i in order:
                parts += (b"$%d\r\n%b\r\n", kept[i].constants.replace(b"%", b"%%"))
            values = max(batch.sources) + 1
            sources = [batch.sources[i] for i in order]
            rate_slots = [(sources[p], kept[i].window_us, kept[i].limit) for p, i in enumerate(order[:rates])]
            template = CheckTemplate(b"".join(parts), values, sources, rate_slots)
            batch.packed = (_count(kept, rates), template, values)
        return batch.packed

    def _encoded(self, meters: list[Meter]) -> list[_Kept]:
        found = []
        for m in meters:
            span = _span(m)
            kept = self._kept.get(m.key)
            if kept is None or kept.span != span or kept.limit != m.limit or kept.kind != m.kind:
                kept = self._keep(m, span)
            found.append(kept)
        return found

    def _keep(self, meter: Meter, span: float) -> _Kept:
        if len(self._kept) >= self.KEEP_MAX:
            self._kept.clear()
        key = bulk(self._prefix + meter.key)
        if meter.kind == "rate":
            window_us = _window_us(span)
            constants = bulk_int(window_us) + bulk_int(_expiry_ms(window_us))
            kept = _Kept(meter.kind, meter.limit, span, key, b"%020d" % 0, constants, window_us)
        else:
            kept = _Kept(meter.kind, meter.limit, span, key, b"%020d" % _ms(span), bulk_int(meter.limit), 0)
        self._kept[meter.key] = kept
        return kept


# The largest amount sent to Redis (9e15: µUSD, nine billion dollars; tokens, far more than any
# request). Redis counts in signed 64 bits and an INCRBY that overflows aborts the script part-way,
# keeping the windows added before it and none of their expiries: kept this far below 2^63, sums of
# amounts (a broken upstream's absurd usage, settled again and again) stay clear of that.
_MAX_AMOUNT = 2**53


def fits(values: tuple[int, ...]) -> bool:
    """Whether every value is sent as it is (PackedScriptCalls.template sends them unclamped)."""
    return min(values) >= -_MAX_AMOUNT and max(values) <= _MAX_AMOUNT


def _clamped(amount: int) -> int:
    """An amount within ±_MAX_AMOUNT: a larger limit is no real one, so a larger amount is refused
    all the same, and a settlement that large is a broken figure."""
    return max(-_MAX_AMOUNT, min(amount, _MAX_AMOUNT))


def _rates_first(meters: Sequence[Meter | _Kept]) -> tuple[list[int], int]:
    """The meters' indices in the order lua/meters.lua takes them (the rates, then the calendar
    windows), and how many are rates."""
    order = [i for i, m in enumerate(meters) if m.kind == "rate"]
    rates = len(order)
    if rates < len(meters):
        order += [i for i, m in enumerate(meters) if m.kind != "rate"]
    return order, rates


def _order_arg(order: list[int], rates: int) -> str:
    """lua/meters.lua's order: "" when it is KEYS' own (the rates come first), else each meter's
    index in KEYS ("A" the first). A call holds at most 18 meters (a key's and its team's rates
    and budgets)."""
    if not rates or order[rates - 1] == rates - 1:
        return ""
    return "".join(chr(65 + i) for i in order)


def _head(kept: list[_Kept], order: list[int], rates: int, *, check: bool) -> list[bytes]:
    """The key count, the keys, the mode, and the windows' ends with the order."""
    ends = b"".join([kept[i].end for i in order]) + _order_arg(order, rates).encode()
    return [
        bulk_int(len(kept)),
        *[k.key for k in kept],
        _CHECK if check else _FORCE,
        b"$%d\r\n%b\r\n" % (len(ends), ends),
    ]


def _count(kept: list[_Kept], rates: int) -> int:
    """Bulk strings after the script's name: the key count, the keys, two arguments, then three
    per rate and two per calendar window."""
    return 1 + len(kept) + 2 + 3 * rates + 2 * (len(kept) - rates)


_CHECK, _FORCE, _LEASE = bulk("check"), bulk("force"), bulk("lease")


def _span(meter: Meter) -> float:
    """A rate's window (seconds); a calendar window's end (Unix time)."""
    if meter.kind == "rate":
        return meter.window_s
    return meter.ends_at or time.time() + meter.window_s


def _window_us(window_s: float) -> int:
    return max(math.ceil(window_s * US), 1)


def _ms(unix_s: float) -> int:
    """A calendar window's end in Unix ms (its key's expiry, PEXPIREAT)."""
    return max(math.ceil(unix_s * 1000), 1)


def _end_ms(meter: Meter) -> int:
    return 0 if meter.kind == "rate" else _ms(_span(meter))


def _increment(amount: int, window_us: int, limit: int) -> int:
    """How far `amount` moves a rate's arrival time (µs): amount x window / limit, rounded up."""
    return -(-amount * window_us // limit)


def _expiry_ms(window_us: int) -> int:
    """A rate key's expiry after a check: its arrival time is then at most a window ahead."""
    return -(-window_us // 1000) + 1
