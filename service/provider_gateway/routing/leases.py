"""Budget leases: the common request is admitted and settled without a round trip to Redis.

Each check in Redis (lua/meters.lua) costs the request a round trip of gateway CPU and network,
more than the rest of the budget check together (benchmarks/RESULTS.md, "Budget check per
request"). So the process reserves a little more than a request needs, per meter: a *lease*,
units already added to the shared meter in Redis for this process but not yet used by any of its
requests. A request that every one of its meters' leases covers takes its amounts from them, in
process, with no await that leaves the event loop. Otherwise one "lease" call to Redis checks the
request's own amounts, all or nothing, with the same refusal as without leases, and adds to each
short meter a top-up where it still fits (a few of this request's amounts, at most a sixteenth of
the limit): near a limit the top-ups stop fitting, leases shrink to nothing and every request is
checked in Redis, one round trip as before. A lease left below half its last top-up is refilled
in the background, so a busy key's requests seldom wait for a top-up; a lease in use is kept, an
idle one returned a lifetime after its last use.

Every admission is therefore backed by a reservation in Redis: replicas racing for a budget's
last unit overspend it no more than without leases. What a lease costs is headroom: another
replica's unused lease (less than two top-ups) counts as spent, while that replica uses
it and for at most a lease lifetime and a half after its last use, when it is returned (a negative amount: a calendar window's spend goes down, a rate's
arrival time moves back, never before now).

Settlements: a refund (a request cheaper than its reserved worst case) goes back to the meter's
live lease; a charge (output tokens of a tokens-per-minute quota, a cost above the reservation)
is taken from the lease, and what the lease cannot cover is added in Redis by one background task,
in one call per hash tag, every half lease lifetime, before a spend report and at shutdown. A
meter without a live lease settles in Redis at once, as without leases; a settlement Redis does
not take then (an outage, a blip) is owed to it and added once it answers again (owed.py), as
without leases.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from provider_gateway.routing.meters import Batch, Meter, Reading, Refusal
from provider_gateway.routing.shared_state import RedisMeters

log = logging.getLogger("provider_gateway.leases")
_TAKEN, _LOW = 1, 2  # _take's answers besides 0 (not taken)
LIMIT_SHARE = 16  # a top-up takes at most this fraction (1/16) of a meter's limit
GROWTH_MAX = 16  # a busy meter's top-up grows to at most this many times the configured one


@dataclass(slots=True)
class Lease:
    """Units reserved in Redis for this process on one meter, unused so far."""

    meter: Meter  # the meter as checked (its amount is not used)
    units: int
    expires: float  # monotonic seconds: a lifetime after its last top-up or use; then returned
    scale: int  # a top-up's size, in the requesting request's amounts
    last_top_up: int = 0  # units: a lease below half of it is topped up in the background
    topped_at: float = 0.0  # monotonic seconds of the last top-up
    topping: bool = False  # a top-up of this meter is in flight: other checks ask none


class LeasedMeters:
    """`RedisMeters` with leases: see the module's docstring."""

    KEEP_MAX = 4096  # meters with a lease (keys x windows in use); past it, new meters get none

    def __init__(
        self,
        inner: RedisMeters,
        *,
        lifetime_s: float,
        requests: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """lifetime_s: how long a lease lives after its last top-up or use; requests: how many of the
        request's own amounts a top-up asks for."""
        self.inner = inner
        self.lifetime_s = lifetime_s
        self.requests = requests
        self._clock = clock
        self._leases: dict[str, Lease] = {}
        self._pending: dict[str, Meter] = {}  # charges and returns to add in Redis, by meter key
        self._flusher: asyncio.Task[None] | None = None
        self._flushing = asyncio.Lock()
        self._refills: set[asyncio.Task[None]] = set()  # background top-ups (one per meter at most)
        self._closed = False

    async def meter(self, meters: list[Meter], *, check: bool) -> Refusal | None:
        if not check:
            return await self._settle(meters)
        return await self._check(meters, [m.amount for m in meters], None)

    async def meter_batch(self, batch: Batch, values: tuple[int, ...], *, check: bool) -> Refusal | None:
        if not check:
            return await self._settle(batch.with_amounts(values))
        return await self._check(batch.meters, batch.amounts(values), (batch, values))

    def take(self, batch: Batch, values: tuple[int, ...]) -> bool:
        """meter_batch's check when the leases cover it, done here and now (True: admitted,
        no coroutine or task needed); False: nothing taken, meter_batch decides."""
        amounts = batch.amounts(values)
        taken = self._take(batch.meters, amounts)
        if taken == _LOW:
            self._refill(batch.meters, amounts)
        return taken != 0

    async def _check(
        self,
        meters: tuple[Meter, ...] | list[Meter],
        amounts: list[int],
        batch: tuple[Batch, tuple[int, ...]] | None,
    ) -> Refusal | None:
        """From the leases when they cover every amount; else one round trip for what they do
        not cover (a lease's last units count towards the amount, so that none are stranded),
        topping up the short leases."""
        taken = self._take(meters, amounts)
        if taken:
            if taken == _LOW:
                self._refill(meters, amounts)
            return None
        extras = self._extras(meters, amounts)
        used = self._take_partly(meters, amounts)
        if not any(extras) and not any(used):
            if batch is not None:
                return await self.inner.meter_batch(*batch, check=True)  # the kept command, as before
            return await self.inner.meter(list(meters), check=True)
        asked = [m._replace(amount=a - u) for m, a, u in zip(meters, amounts, used, strict=True)]
        try:
            refusal = await self._top_up(asked, extras)
        except BaseException:
            self._give_back(meters, used)
            raise
        if refusal is not None:
            self._give_back(meters, used)
        return refusal

    def _take(self, meters: tuple[Meter, ...] | list[Meter], amounts: list[int]) -> int:
        """Admit from the leases when every meter's live lease covers its amount (in process):
        0 when not, else _TAKEN, or _LOW when a lease is left below half its last top-up."""
        leases, now = self._leases, self._clock()
        found = []  # each meter's lease, looked up once
        for m, amount in zip(meters, amounts, strict=True):
            lease = leases.get(m.key)
            if lease is None or lease.units < amount or lease.expires <= now:
                return 0
            found.append(lease)
        taken, expires = _TAKEN, now + self.lifetime_s
        for lease, amount in zip(found, amounts, strict=True):
            lease.units -= amount
            lease.expires = expires  # in use: kept (an idle lease is returned a lifetime on)
            if 2 * lease.units < lease.last_top_up and not lease.topping:
                taken = _LOW
        return taken

    def _refill(self, meters: tuple[Meter, ...] | list[Meter], amounts: list[int]) -> None:
        """Top up the low leases in the background (a "lease" check of nothing but the extras),
        so that the next requests find them full instead of waiting for a round trip."""
        extras = self._extras(meters, amounts)
        if any(extras):
            for m, extra in zip(meters, extras, strict=True):
                if extra:  # marked now: the requests admitted before the task runs start none
                    self._leases[m.key].topping = True
            zero = [m._replace(amount=0) for m in meters]
            task = asyncio.get_running_loop().create_task(self._refilling(zero, extras))
            self._refills.add(task)
            task.add_done_callback(self._refills.discard)

    async def _refilling(self, meters: list[Meter], extras: list[int]) -> None:
        # A refusal: nothing fits, the leases stay low. An error: Redis away with on_redis_down
        # = closed, an outage the store has logged.
        with contextlib.suppress(Exception):
            await self._top_up(meters, extras)

    def _take_partly(self, meters: tuple[Meter, ...] | list[Meter], amounts: list[int]) -> list[int]:
        """Per meter, what its live lease holds towards the amount (at most the amount), taken."""
        now, used = self._clock(), []
        for m, amount in zip(meters, amounts, strict=True):
            lease = self._leases.get(m.key)
            take = min(lease.units, amount) if lease is not None and lease.expires > now else 0
            if take > 0:
                lease.units -= take  # type: ignore[union-attr]  # take > 0: a live lease
            used.append(max(take, 0))
        return used

    def _give_back(self, meters: tuple[Meter, ...] | list[Meter], used: list[int]) -> None:
        """Units taken from leases for a check that did not pass: to the lease, or to Redis."""
        for m, units in zip(meters, used, strict=True):
            if units:
                lease = self._leases.get(m.key)
                if lease is not None:
                    lease.units += units
                else:  # returned meanwhile: these units go back to Redis too
                    self._pend(m, -units)

    def _extras(self, meters: tuple[Meter, ...] | list[Meter], amounts: list[int]) -> list[int]:
        """Per meter, the top-up to ask with the request's check: none where the lease covers the
        amount, a top-up is in flight, the leases are full, or the top-up would not cover one
        more such request (near the limit, or a request larger than a sixteenth of it). A lease
        spent within half its lifetime of its last top-up doubles its next one (a busy key's
        lease then lasts a while: fewer round trips), up to GROWTH_MAX times the configured."""
        if self._closed:
            return [0] * len(amounts)
        now, extras = self._clock(), []
        for m, amount in zip(meters, amounts, strict=True):
            lease = self._leases.get(m.key)
            if lease is None or lease.expires <= now:
                extra = min(self.requests * amount, m.limit // LIMIT_SHARE)
                full = lease is None and len(self._leases) >= self.KEEP_MAX
                extras.append(0 if full or extra < max(amount, 1) else extra)
                continue
            extra = min(lease.scale * amount, m.limit // LIMIT_SHARE)
            if (
                lease.topping
                or extra < max(amount, 1)
                or (lease.units >= amount and 2 * lease.units >= extra)
            ):
                extras.append(0)  # in flight, too small to lease, or at least half a top-up left
                continue
            if now - lease.topped_at < self.lifetime_s / 2:  # spent soon after its top-up: grow
                lease.scale = min(lease.scale * 2, self.requests * GROWTH_MAX)
                extra = min(lease.scale * amount, m.limit // LIMIT_SHARE)
            extras.append(extra)
        if any(extras):  # a call goes anyway: a lease below one top-up rides along
            for i, (m, amount) in enumerate(zip(meters, amounts, strict=True)):
                lease = self._leases.get(m.key)
                if extras[i] or lease is None or lease.topping or lease.expires <= now:
                    continue
                extra = min(lease.scale * amount, m.limit // LIMIT_SHARE)
                if extra >= max(amount, 1) and lease.units < extra:
                    extras[i] = extra
        return extras

    async def _top_up(self, meters: list[Meter], extras: list[int]) -> Refusal | None:
        """One round trip: the request's check, plus each extra where it fits, kept as leases."""
        now = self._clock()
        topping, created = [], []
        for m, extra in zip(meters, extras, strict=True):
            if extra:
                lease = self._leases.get(m.key)
                if lease is None or lease.expires <= now:
                    self._return(lease)
                    lease = self._leases[m.key] = Lease(m, 0, now + self.lifetime_s, self.requests)
                    created.append(lease)
                lease.topping = True
                topping.append(lease)
        answer: Refusal | list[int] | None = None
        try:
            if any(extras):
                answer = await self.inner.meter_leasing(meters, extras)
            else:
                answer = await self.inner.meter(meters, check=True) or extras
        finally:
            for lease in topping:
                lease.topping = False
            if not isinstance(answer, list):  # refused or failed: the new leases are empty
                self._drop_empty(created)
        if not isinstance(answer, list):
            return answer
        now = self._clock()
        expires = now + self.lifetime_s
        for m, extra in zip(meters, answer, strict=True):
            if extra:
                lease = self._leases.get(m.key)
                if lease is None:  # returned meanwhile (an expiry's sweep): a new one
                    lease = self._leases[m.key] = Lease(m, 0, expires, self.requests)
                lease.units += extra
                lease.last_top_up = extra
                lease.topped_at = now
                lease.expires = expires
        self._drop_empty(created)  # made for a top-up that did not fit
        self._start_flusher()
        return None

    def _drop_empty(self, leases: list[Lease]) -> None:
        for lease in leases:
            if not lease.units and self._leases.get(lease.meter.key) is lease:
                del self._leases[lease.meter.key]

    def settle_in_process(self, meters: list[Meter]) -> bool:
        """A settlement done here and now when every meter has a live lease (True); else nothing
        is done (False) and `meter(..., check=False)` settles, in Redis where it must."""
        now, leases = self._clock(), self._leases
        for m in meters:
            lease = leases.get(m.key)
            if lease is None or lease.expires <= now:
                return False
        for m in meters:
            self._settle_one(leases[m.key], m)
        return True

    async def _settle(self, meters: list[Meter]) -> Refusal | None:
        """Refunds to the live leases, charges from them (the rest pending); a meter without a
        live lease is settled in Redis at once (owed to it while it does not answer)."""
        now, direct = self._clock(), []
        for m in meters:
            lease = self._leases.get(m.key)
            if lease is None or lease.expires <= now:
                direct.append(m)
            else:
                self._settle_one(lease, m)
        if direct:
            await self.inner.meter(direct, check=False)
        return None  # a settlement is never refused

    def _settle_one(self, lease: Lease, m: Meter) -> None:
        if m.amount < 0:
            lease.units -= m.amount
            return
        taken = min(lease.units, m.amount)
        lease.units -= taken
        if m.amount > taken:
            self._pend(m, m.amount - taken)

    def _pend(self, meter: Meter, amount: int) -> None:
        found = self._pending.get(meter.key)
        self._pending[meter.key] = meter._replace(amount=amount + (found.amount if found else 0))
        self._start_flusher()

    def _return(self, lease: Lease | None) -> None:
        """Give an expired lease's unused units back to Redis (with the next flush)."""
        if lease is not None:
            del self._leases[lease.meter.key]
            if lease.units:
                self._pend(lease.meter, -lease.units)

    def _start_flusher(self) -> None:
        if not self._closed and (self._flusher is None or self._flusher.done()):
            self._flusher = asyncio.get_running_loop().create_task(self._flush_every())

    async def _flush_every(self) -> None:
        """Every half lease lifetime: return the expired leases, add what is pending. Ends when
        there is neither a lease nor anything pending (the next lease starts it again)."""
        while self._leases or self._pending:
            await asyncio.sleep(self.lifetime_s / 2)
            self.sweep()
            try:
                await self.flush()
            except Exception:  # a bug: Redis failures are owed by `inner`, never raised
                log.exception("could not settle pending budget charges in redis")

    def sweep(self) -> None:
        """Return the expired leases (with the next flush)."""
        now = self._clock()
        for lease in [x for x in self._leases.values() if x.expires <= now and not x.topping]:
            self._return(lease)

    async def flush(self, *, everything: bool = False) -> None:
        """Add what is pending in Redis, one call per hash tag. While Redis is away it stays
        pending (bounded: one entry per meter), unless `everything` (shutdown) or too much; what
        Redis does not take is owed to it by `inner` (its calendar windows: owed.py)."""
        async with self._flushing:
            if not self._pending:
                return
            if not (everything or self.inner.store.using_redis or len(self._pending) > 2 * self.KEEP_MAX):
                return
            pending, self._pending = self._pending, {}
            by_tag: dict[str, list[Meter]] = {}
            for m in pending.values():
                if m.amount:
                    by_tag.setdefault(m.key.partition("}")[0], []).append(m)
            for meters in by_tag.values():
                await self.inner.meter(meters, check=False)

    async def read(self, meters: list[Meter]) -> list[Reading]:
        """This process's spend as Redis holds it, with what is pending added first and its own
        unused leases not counted: exact for this replica."""
        await self.flush()
        found = await self.inner.read(meters)
        now = self._clock()
        for i, m in enumerate(meters):
            lease = self._leases.get(m.key)
            if lease is not None and lease.expires > now and lease.units:
                found[i] = Reading(max(found[i].used - lease.units, 0), found[i].resets_in_s)
        return found

    async def aclose(self) -> None:
        """At shutdown: every lease returned and every charge added (before Redis closes)."""
        self._closed = True
        for task in list(self._refills):  # their grants land in leases returned just below
            with contextlib.suppress(Exception):
                await task
        if self._flusher is not None:
            async with self._flushing:  # cancelled between flushes, never in the middle of one
                self._flusher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._flusher
            self._flusher = None
        for lease in list(self._leases.values()):
            self._return(lease)
        await self.flush(everything=True)
        await self.inner.aclose()  # what Redis was owed, a last try
