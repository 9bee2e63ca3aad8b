"""State shared by gateway replicas: deployments' request rates, their ejections, callers' meters.

In-process by default. With `[redis] url`, every replica reads and writes the same keys through
server-side Lua scripts (atomic check-and-add), every key carries a TTL, and when Redis cannot be
reached the store falls back to its local twin (logged once per outage) and retries Redis later,
so a Redis outage degrades limits to per-replica instead of failing requests. The ejections are
read on every call, so they are kept in-process between background reads (routing/holds_view.py):
another replica's is seen within `[redis] holds_refresh_ms`. The callers' meters
(quotas and budgets, `meters.py`) may instead fail closed: refuse what they meter while Redis is away.
What they add while Redis is away is owed to it, and added once it answers again (`owed.py`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

from provider_gateway.config import GatewayConfig, Section
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.routing.holds_view import HoldsView
from provider_gateway.routing.meters import (
    US,
    Batch,
    MemoryMeters,
    Meter,
    PackedScriptCalls,
    Reading,
    Refusal,
    fits,
    granted,
    readings,
    script,
    script_args,
)
from provider_gateway.routing.owed import OWED_MAX, Owed
from provider_gateway.routing.redis_calls import DirectCalls, bulk, bulk_int, pack

log = logging.getLogger("provider_gateway.shared_state")
REDIS_KEYS = (
    "url",
    "url_env",
    "url_file",
    "prefix",
    "timeout_ms",
    "retry_after_s",
    "cluster",
    "holds_refresh_ms",
)
# Every ejection shares one hash tag: `ejections` reads several in one script, which Redis Cluster
# runs only on keys of one slot. (Counters are one key a script; meters carry their caller's tag.)
EJECTION_TAG = "{ejections}:"


class CounterStore(Protocol):
    async def hit(self, key: str, amount: int, limit: int, window_s: float) -> float:
        """Add `amount` to the rate `key` (GCRA, `limit` per `window_s`, meters.py) if it fits.

        Returns 0.0 when allowed, else the seconds until it would fit.
        """
        ...


class SharedState(CounterStore, Protocol):
    """What the router needs besides counters: ejections of deployments that asked us to back off."""

    async def eject(self, key: str, seconds: float) -> None: ...

    async def lift(self, key: str) -> None:
        """End `key`'s ejection now: the breaker that asked for it closed (a call succeeded)."""
        ...

    async def ejections(self, keys: list[str]) -> list[float]:
        """Seconds each key stays ejected (0.0 when not ejected)."""
        ...

    def ejections_now(self, keys: list[str]) -> list[float] | None:
        """`ejections` when the store knows them without a wait (in process); None: ask `ejections`.
        Every request reads its plan's holds: a coroutine less when they are at hand."""
        ...

    async def aclose(self) -> None: ...


Clock = Callable[[], float]


class MemoryCounterStore:
    """The single-replica store; also the fallback of the Redis one."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._rates = MemoryMeters(clock)
        self._ejected: dict[str, float] = {}  # key -> ejected until

    async def hit(self, key: str, amount: int, limit: int, window_s: float) -> float:
        refusal = await self._rates.meter([Meter(key, "rate", amount, limit, window_s)], check=True)
        return 0.0 if refusal is None else refusal.wait_s

    async def eject(self, key: str, seconds: float) -> None:
        until = self._clock() + seconds
        self._ejected[key] = max(until, self._ejected.get(key, 0.0))

    async def lift(self, key: str) -> None:
        self._ejected.pop(key, None)

    async def ejections(self, keys: list[str]) -> list[float]:
        return self.ejections_now(keys)

    def ejections_now(self, keys: list[str]) -> list[float]:
        ejected = self._ejected
        if not ejected:  # nothing ejected (nearly always): no clock, no lookups
            return [0.0] * len(keys)
        now = self._clock()
        for key in [k for k, until in ejected.items() if until <= now]:  # over: forgotten
            del ejected[key]
        return [max(ejected.get(k, 0.0) - now, 0.0) for k in keys]

    async def aclose(self) -> None:
        return None


# KEYS[1] ejection; ARGV[1] ms. Only ever lengthens an ejection.
EJECT_SCRIPT = """
local ttl = redis.call('PTTL', KEYS[1])
if ttl < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], '1', 'PX', ARGV[1]) end
return 0
"""
# KEYS ejections. Returns each key's remaining ms (<= 0 when absent).
EJECTIONS_SCRIPT = """
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call('PTTL', key) end
return out
"""


class LuaScript:
    """A server-side script called by its SHA1 (EVALSHA), sent whole (EVAL, which also caches it)
    when the server lacks it: after a restart or a failover. Not redis-py's Script, whose extra
    layer cost about 35 µs a call here (benchmarks/budget_check.py, issue 16.4). With `direct`
    (a single Redis, not a Cluster, whose client routes by slot), the command is packed here and
    sent on `direct`'s connections, skipping redis-py's per-command layers too."""

    def __init__(self, client: Any, text: str, direct: DirectCalls | None = None) -> None:
        from redis.exceptions import NoScriptError  # with the client: only setups with Redis load it

        self._client = client
        self._text = text
        self._sha = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()
        self._missing = NoScriptError
        self._direct = direct
        self._by_sha = (bulk("EVALSHA"), bulk(self._sha))
        self._whole = (bulk("EVAL"), bulk(text))

    async def __call__(self, keys: list[str], args: Sequence[str | int] = ()) -> Any:
        if self._direct is None:
            try:
                return await self._client.execute_command("EVALSHA", self._sha, len(keys), *keys, *args)
            except self._missing:
                return await self._client.execute_command("EVAL", self._text, len(keys), *keys, *args)
        body = [bulk_int(len(keys)), *map(bulk, keys)]
        body += [bulk(a) if isinstance(a, str) else bulk_int(a) for a in args]
        return await self.packed(len(body), body)

    async def packed(self, count: int, body: Sequence[bytes]) -> Any:
        """With `direct` only: the call's key count, keys and arguments already RESP-encoded
        (`count` bulk strings in `body`)."""
        if self._direct is None:  # a Cluster's scripts go through redis-py, which packs for itself
            raise RuntimeError("packed arguments need the direct connections")
        try:
            return await self._direct.call(pack(count + 2, self._by_sha, body))
        except self._missing:
            return await self._direct.call(pack(count + 2, self._whole, body))


class RedisCounterStore:
    """Counters and ejections in Redis, with a logged local fallback while Redis is away."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "pgw:",
        timeout_s: float = 0.25,
        retry_after_s: float = 5.0,
        clock: Clock = time.monotonic,
        cluster: bool = False,
        holds_refresh_s: float = 0.1,
    ) -> None:
        """`cluster`: `url` is one node of a Redis (or Valkey) Cluster; commands follow its slots.
        `holds_refresh_s`: how old the in-process view of the shared ejections may grow before it is
        read again (routing/holds_view.py); 0 reads Redis on every call."""
        import redis.asyncio as aioredis  # imported here: single-replica setups never load it
        from redis.asyncio.cluster import RedisCluster

        timeouts: dict[str, Any] = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}
        self._client: Any = (
            RedisCluster.from_url(url, **timeouts)
            if cluster
            else aioredis.Redis.from_url(url, retry_on_timeout=False, **timeouts)
        )
        self.where = redis_address(url)
        self._prefix = prefix
        self._retry_after_s = retry_after_s
        self._clock = clock
        self.local = MemoryCounterStore(clock)
        self._down_until = 0.0
        self._watch: asyncio.Task[None] | None = None
        self._on_back: list[Callable[[], None]] = []  # called when an outage ends
        # A Cluster's client finds each key's node; a single Redis is called directly.
        pool = None if cluster else getattr(self._client, "connection_pool", None)
        self.direct = DirectCalls(pool, timeout_s) if pool is not None else None
        self._hit = LuaScript(self._client, script("meters.lua"), self.direct)  # one GCRA meter a call
        self._eject = LuaScript(self._client, EJECT_SCRIPT, self.direct)
        self._ejections = LuaScript(self._client, EJECTIONS_SCRIPT, self.direct)
        self.holds = HoldsView(self._read_ejections, clock, holds_refresh_s)

    @property
    def using_redis(self) -> bool:
        return self._clock() >= self._down_until

    async def probe(self) -> bool:
        """At start-up: one PING, so that an unreachable Redis is logged before the first request
        needs it (then the store starts on its local twin, and tries Redis again later)."""
        try:
            await self._client.ping()
        except Exception as exc:
            self._failed(exc, "at start-up")
            return False
        log.info("redis at %s reachable: limits and budgets are shared", self.where)
        return True

    def on_back(self, callback: Callable[[], None]) -> None:
        """Call `callback` (in the event loop) each time Redis answers again after an outage."""
        self._on_back.append(callback)

    def _failed(self, exc: Exception, when: str = "") -> None:
        was_up = self.using_redis
        # Marked before the watch starts: a task may run at once (eager tasks), and the watch runs
        # while the outage lasts.
        self._down_until = self._clock() + self._retry_after_s
        if was_up:
            log.warning(
                "redis unavailable at %s (%s%s); using per-replica state for %g s",
                self.where,
                type(exc).__name__,
                f", {when}" if when else "",
                self._retry_after_s,
            )
            self.holds.forget()
            if self._watch is None or self._watch.done():
                self._watch = asyncio.get_running_loop().create_task(self._until_back())

    async def _until_back(self) -> None:
        """PING every retry_after_s while Redis is away, so that its return is logged (and used)
        even when no request needs Redis meanwhile."""
        while self._down_until:
            await asyncio.sleep(max(self._retry_after_s, 0.1))
            try:
                await self._client.ping()
            except Exception:  # still away: the outage was logged when it began
                self._down_until = max(self._down_until, self._clock() + self._retry_after_s)
            else:
                self._recovered()

    def _recovered(self) -> bool:
        """After an answer from Redis: True when it ends an outage. An answer to a call made
        before the outage began (concurrent with the failure) ends nothing."""
        if self._down_until and self._clock() >= self._down_until:
            log.warning("redis reachable again at %s; shared state restored", self.where)
            self._down_until = 0.0
            for callback in self._on_back:
                callback()
            return True
        return False

    async def hit(self, key: str, amount: int, limit: int, window_s: float) -> float:
        if self.using_redis:
            rate = [Meter(key, "rate", amount, limit, window_s)]
            try:
                refused, wait_us = await self._hit(
                    keys=[self._prefix + "c:" + key], args=script_args(rate, check=True)
                )
            except Exception as exc:  # any Redis failure: keep serving on local state
                self._failed(exc)
            else:
                self._recovered()
                return max(int(wait_us), 1) / US if int(refused) else 0.0
        return await self.local.hit(key, amount, limit, window_s)

    async def eject(self, key: str, seconds: float) -> None:
        await self.local.eject(key, seconds)  # local too, so a later outage still remembers it
        if self.using_redis:
            try:
                await self._eject(
                    keys=[self._prefix + EJECTION_TAG + key], args=[max(math.ceil(seconds * 1000), 1)]
                )
            except Exception as exc:
                self._failed(exc)
            else:
                self._recovered()

    async def lift(self, key: str) -> None:
        await self.local.lift(key)
        self.holds.lifted(key)
        if self.using_redis:
            try:
                await self._client.delete(self._prefix + EJECTION_TAG + key)
            except Exception as exc:
                self._failed(exc)
            else:
                self._recovered()

    def ejections_now(self, keys: list[str]) -> list[float] | None:
        """Only while Redis is away (its local twin's then); the shared view is asked in `ejections`."""
        if keys and self.using_redis:
            return None
        return self.local.ejections_now(keys)

    async def ejections(self, keys: list[str]) -> list[float]:
        """From the shared view (read from Redis at most every `holds_refresh_s`), or this
        replica's own ejections when they are longer: those count at once."""
        if keys and self.using_redis:
            shared = await self.holds.remaining(keys)
            if shared is not None:
                own = await self.local.ejections(keys)
                if any(own):  # rarely (this replica ejected something): only then compared
                    return [max(theirs, mine) for theirs, mine in zip(shared, own, strict=True)]
                return shared
        return await self.local.ejections(keys)

    async def _read_ejections(self, keys: list[str]) -> list[float] | None:
        """Seconds each key stays ejected, as Redis says; None (an outage counted) when it fails."""
        try:
            ttls = await self._ejections(keys=[self._prefix + EJECTION_TAG + k for k in keys])
        except Exception as exc:
            self._failed(exc)
            return None
        self._recovered()
        return [max(int(ms), 0) / 1000 for ms in ttls]

    async def aclose(self) -> None:
        self.holds.close()
        if self._watch is not None:
            self._watch.cancel()
        if self.direct is not None:
            await self.direct.aclose()
        await self._client.aclose()


class RedisMeters:
    """Callers' meters in Redis (lua/meters.lua), on the store's connection and outage clock.

    While Redis is away they fail open (per-process meters, which start empty: each replica then
    admits up to the full limits) or closed (every check is refused UNAVAILABLE with a retry
    delay). Settlements then go to the per-process meters. Either way, what a calendar window's
    meter adds while Redis is away or failing (an admitted check, a settlement) is owed to Redis
    (owed.py) and added once Redis answers again, before a spend report and at shutdown: a refund
    or a charge that comes due during a blip is never lost from the shared budget. At least once:
    a call that timed out after Redis ran it (its answer lost) is added a second time.
    """

    def __init__(self, store: RedisCounterStore, *, fail_closed: bool) -> None:
        self.store = store
        self.fail_closed = fail_closed
        self.local = MemoryMeters()
        self._meter = LuaScript(store._client, script("meters.lua"), store.direct)
        self._read = LuaScript(store._client, script("meters_read.lua"), store.direct)
        self._packed = PackedScriptCalls(store._prefix + "m:")
        self._refusing = False
        self._owed = Owed()
        self._paying: asyncio.Task[None] | None = None
        self._lost_logged = False  # once an outage, when the owed amounts outgrow their bound
        store.on_back(self._pay_soon)

    def _keys(self, meters: list[Meter]) -> list[str]:
        return [self.store._prefix + "m:" + m.key for m in meters]

    async def meter(self, meters: list[Meter], *, check: bool) -> Refusal | None:
        if self.store.using_redis:
            if self.store.direct is None:
                answer = await self._answer(self._meter(self._keys(meters), script_args(meters, check=check)))
            else:
                answer = await self._answer(self._meter.packed(*self._packed.call(meters, check=check)))
            if answer is not None:
                return self._refusal(answer)
        return await self._locally(meters, check=check)

    async def meter_batch(self, batch: Batch, values: tuple[int, ...], *, check: bool) -> Refusal | None:
        """A check of a batch whose values fit its template is one formatting of the kept command."""
        if not (check and self.store.using_redis and self.store.direct is not None and fits(values)):
            return await self.meter(batch.with_amounts(values), check=check)
        count, template, used = self._packed.template(batch)
        answer = await self._answer(self._meter.packed(count, (template % values[:used],)))
        if answer is not None:
            return self._refusal(answer)
        return await self._locally(batch.with_amounts(values), check=check)

    async def meter_leasing(self, meters: list[Meter], extras: list[int]) -> Refusal | list[int]:
        """A check of `meters` that also reserves, per meter, its extra where it still fits
        (lua/meters.lua's "lease" mode): the refusal, exactly as meter()'s, or the extras added
        (per meter; 0 where it did not fit). While Redis is away: as meter(), nothing leased."""
        if self.store.using_redis:
            if self.store.direct is None:
                args = script_args(meters, check=True, extras=extras)
                answer = await self._answer(self._meter(self._keys(meters), args))
            else:
                answer = await self._answer(
                    self._meter.packed(*self._packed.call(meters, check=True, extras=extras))
                )
            if answer is not None:
                return self._refusal(answer[:2]) or granted(meters, extras, answer)
        return await self._locally(meters, check=True) or [0] * len(meters)

    async def _answer(self, call: Awaitable[Any]) -> Any:
        """The script's answer, or None when Redis failed (the store then counts an outage)."""
        try:
            answer = await call
        except Exception as exc:  # any Redis failure: the configured outage behaviour
            self.store._failed(exc)
            return None
        self.store._recovered()
        self._refusing = False  # Redis answers (the store may have seen it come back first)
        return answer

    @staticmethod
    def _refusal(answer: Any) -> Refusal | None:
        index, wait_us = answer
        return Refusal(int(index) - 1, max(int(wait_us), 1) / US) if int(index) else None

    async def _locally(self, meters: list[Meter], *, check: bool) -> Refusal | None:
        """While Redis is away: refused (closed) or the per-process meters (open); what they add is
        owed to Redis too."""
        if check and self.fail_closed:
            raise self._unavailable()
        refusal = await self.local.meter(meters, check=check)
        if refusal is None:
            self._owe(meters)
        return refusal

    def _owe(self, meters: list[Meter]) -> None:
        if not self._owed.add(meters) and not self._lost_logged:
            self._lost_logged = True
            log.error(
                "redis at %s away for long: more than %d budget meters owe it spends and refunds; "
                "further ones count on this replica only, not in the shared budgets (bring redis back)",
                self.store.where,
                OWED_MAX,
            )

    def _pay_soon(self) -> None:
        """Redis answers again: what is owed is added in the background (one payment at a time)."""
        if self._owed and (self._paying is None or self._paying.done()):
            self._paying = asyncio.get_running_loop().create_task(self.pay())

    async def pay(self) -> None:
        """Add what is owed in Redis, one call per hash tag. On a failure the rest stays owed (the
        outage that failure begins ends with another payment)."""
        groups = self._owed.take(time.time())
        for i, meters in enumerate(groups):
            call = self._meter(self._keys(meters), script_args(meters, check=False))
            if await self._answer(call) is None:
                for rest in groups[i:]:
                    self._owe(rest)
                return
        if not self._owed:
            self._lost_logged = False

    async def _paid(self) -> None:
        """What is owed added first (a spend report then counts it): the payment under way
        awaited (never cancelled by its caller), then what came due meanwhile."""
        if self._paying is not None and not self._paying.done():
            await asyncio.wait([self._paying])
        if self._owed:
            await self.pay()

    async def read(self, meters: list[Meter]) -> list[Reading]:
        if self.store.using_redis:
            await self._paid()
        if self.store.using_redis:
            try:
                raw = await self._read(keys=self._keys(meters))
            except Exception as exc:
                self.store._failed(exc)
            else:
                self.store._recovered()
                return readings(meters, [int(v) for v in raw])
        if self.fail_closed:
            raise self._unavailable()
        return await self.local.read(meters)

    async def aclose(self) -> None:
        """At shutdown, before the store closes: one last try at what is owed, Redis or not."""
        await self._paid()
        if self._owed:
            log.error(
                "shutting down with redis at %s unreachable: %d budget meters' spends and refunds "
                "made during the outage were not added to the shared budgets",
                self.store.where,
                len(self._owed),
            )

    def _unavailable(self) -> GatewayError:
        if not self._refusing:
            self._refusing = True
            log.error(
                "redis unavailable: refusing metered requests until it is back (on_redis_down = closed)"
            )
        return GatewayError(
            ErrorKind.UNAVAILABLE,
            "quotas and budgets are kept in Redis, which is unreachable; this gateway refuses "
            "metered requests until it is back (on_redis_down = closed)",
            retry_after=max(self.store._retry_after_s, 1.0),
        )


def meters_for(store: object, *, fail_closed: bool) -> MemoryMeters | RedisMeters:
    """Callers' meters beside `store`: in Redis when the store is, else in this process."""
    if isinstance(store, RedisCounterStore):
        return RedisMeters(store, fail_closed=fail_closed)
    return MemoryMeters()


def redis_address(url: str) -> str:
    """Where a Redis url points, for a log line: host and port (or the socket's path), never the
    user name or password it may carry."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}"


def redis_settings(section: Section) -> dict[str, Any]:
    section.reject_unknown(REDIS_KEYS)
    return {
        # A url with a password belongs in url_env / url_file; a plain one may sit in the file.
        "url": section.string("url") or section.secret("url"),
        "prefix": section.string("prefix", "pgw:"),
        "timeout_s": section.integer("timeout_ms", 250, minimum=1) / 1000,
        "retry_after_s": section.number("retry_after_s", 5.0, minimum=0),
        "cluster": section.flag("cluster", False),
        "holds_refresh_s": section.integer("holds_refresh_ms", 100, minimum=0, maximum=60_000) / 1000,
    }


def build_counter_store(
    config: GatewayConfig, clock: Clock = time.monotonic
) -> MemoryCounterStore | RedisCounterStore:
    """The store `[redis]` asks for: Redis when a url is set, else in-process."""
    settings = redis_settings(config.section("redis"))
    url = settings.pop("url")
    if not url:
        return MemoryCounterStore(clock)
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise config.section("redis").error("url", "must start with redis://, rediss:// or unix://")
    return RedisCounterStore(url, clock=clock, **settings)
