"""Budget leases (routing/leases.py) on a real redis-server and Valkey: the common request is
admitted and settled in process, from units this process already reserved in Redis; near a limit
requests are refused exactly as without leases; unused leases go back to Redis when they expire
and at shutdown, so other replicas see the real spend."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import pytest
from conftest import run_gateway
from rpc_util import WAIT_S, chat
from test_budgets import ALICE, PRICED_MOCK, alice_key, bearer, details, limit_of
from test_budgets_redis import redis_server  # noqa: F401  (the fixture: redis-server and Valkey)
from test_redis import REDIS, RedisServer

from provider_gateway.routing.leases import LeasedMeters
from provider_gateway.routing.meters import Batch, Meter, Refusal, calendar_window
from provider_gateway.routing.shared_state import RedisCounterStore, RedisMeters
from provider_gateway.v1 import provider_service_pb2 as pb

pytestmark = pytest.mark.skipif(
    REDIS is None, reason="redis-server is not installed (scripts/setup.d/redis.sh installs it)"
)


def leased_config(redis_url: str, prefix: str, lease_ms: int, limits: str, lease_requests: int = 8) -> str:
    """A gateway on Redis under `prefix`, leases of `lease_ms` (top-ups of `lease_requests`),
    ALICE with `limits`. The ejections are read once a minute, so that the meters' scripts are
    the only ones Redis runs; a round trip may take 10 s before Redis counts as down (a loaded
    machine stalls one past the default 250 ms, and these tests are about leases, not outages)."""
    return (
        PRICED_MOCK
        + f"""
[redis]
url = "{redis_url}"
prefix = "{prefix}"
holds_refresh_ms = 60000
timeout_ms = 10000

[auth]
budget_lease_ms = {lease_ms}
budget_lease_requests = {lease_requests}
"""
        + alice_key(limits)
    )


ROOMY = "requests_per_minute = 100000\ntokens_per_minute = 1000000\nusd_micros_per_day = 100000000"


async def chats(gw: Any, count: int) -> int:
    """`count` Chats by ALICE, one after another: what they cost (micro-USD), all settled."""
    cost = 0
    for _ in range(count):
        response = await gw.stub.Chat(
            chat("mock/echo", "hi", max_tokens=3), metadata=bearer(ALICE), timeout=WAIT_S
        )
        assert response.finish.cost.known
        cost += response.finish.cost.amount_micros
        await gw.server.auth[0].quotas.drain()
    return cost


async def money_spent(gw: Any) -> int:
    report = await gw.stub.GetSpend(pb.GetSpendRequest(), metadata=bearer(ALICE), timeout=WAIT_S)
    return limit_of(report, pb.SPEND_SCOPE_KEY, pb.SPEND_METRIC_USD_MICROS, pb.SPEND_WINDOW_DAY).spent


async def script_calls(client: Any) -> int:
    stats = await client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval"))


async def test_leased_requests_are_admitted_and_settled_without_a_round_trip(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    """After the first request's check (which also takes a lease of 32 requests' worth), the
    next ones are checked, charged (their output tokens) and refunded (their unused worst case)
    without a script call; GetSpend still reports this replica's spend exactly."""
    prefix = f"lease{time.monotonic_ns()}:"
    async with run_gateway(leased_config(redis_server.url, prefix, 5000, ROOMY, lease_requests=32)) as gw:
        client = gw.server.counters._client
        cost = await chats(gw, 1)
        before = await script_calls(client)
        cost += await chats(gw, 3)
        assert await script_calls(client) == before  # Redis ran no script for them
        assert await money_spent(gw) == cost  # the lease's unused units are not this key's spend


async def test_an_unused_lease_returns_to_redis_after_its_lifetime(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    """Another replica counts this one's unused lease as spent until it expires and is returned;
    then it reads the real spend."""
    prefix = f"expiry{time.monotonic_ns()}:"
    async with (
        run_gateway(leased_config(redis_server.url, prefix, 300, ROOMY)) as leasing,
        run_gateway(leased_config(redis_server.url, prefix, 0, ROOMY)) as other,
    ):
        cost = await chats(leasing, 3)
        assert await money_spent(leasing) == cost  # its own report leaves its lease out
        assert await money_spent(other) > cost  # the lease is spent for everyone else, for now
        async with asyncio.timeout(WAIT_S):
            while True:
                if await money_spent(other) == cost:
                    break
                await asyncio.sleep(0.05)


async def test_shutdown_returns_the_leases_and_adds_the_pending_charges(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    prefix = f"stop{time.monotonic_ns()}:"
    async with run_gateway(leased_config(redis_server.url, prefix, 60000, ROOMY)) as leasing:
        cost = await chats(leasing, 3)
    async with run_gateway(leased_config(redis_server.url, prefix, 0, ROOMY)) as other:
        assert await money_spent(other) == cost  # at once: nothing left leased


async def spend_until_refused(gw: Any) -> tuple[int, grpc.aio.AioRpcError]:
    admitted = 0
    while admitted < 100:
        try:
            await chats(gw, 1)
        except grpc.aio.AioRpcError as error:
            return admitted, error
        admitted += 1
    raise AssertionError("the budget must run out within 100 requests")


async def test_near_the_limit_requests_are_refused_as_without_leases(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    """A budget of 40 worst cases leases while it has room, then refuses: the same number of
    requests pass as without leases (a lease's last units count towards the next check), and the
    refusal carries the same status, message, QuotaFailure and a RetryInfo."""
    request = chat("mock/echo", "hi", max_tokens=3)
    worst = max(1, request.ByteSize() // 4) * 2 + 3 * 5
    found = []
    for lease_ms in (1000, 0):
        config = leased_config(
            redis_server.url,
            f"near{lease_ms}x{time.monotonic_ns()}:",
            lease_ms,
            f"usd_micros_per_day = {40 * worst}",
        )
        async with run_gateway(config) as gw:
            admitted, refused = await spend_until_refused(gw)
        info = details(refused)
        assert 0 < info["RetryInfo"].retry_delay.ToTimedelta().total_seconds() <= 86400
        found.append((admitted, refused.code(), refused.details(), info["QuotaFailure"]))
    assert found[0] == found[1]
    assert found[0][0] >= 40  # every worst case that fits passed


def meters_in(server: RedisServer, prefix: str) -> tuple[RedisCounterStore, RedisMeters]:
    store = RedisCounterStore(server.url, prefix=prefix, timeout_s=2.0)
    return store, RedisMeters(store, fail_closed=True)


async def test_a_lease_check_adds_each_extra_only_where_it_fits(redis_server: RedisServer) -> None:  # noqa: F811
    """lua/meters.lua's "lease" mode: the request's amounts all or nothing (the refusal a check
    gives), then each extra where it still fits; a returned rate lease frees its units."""
    store, meters = meters_in(redis_server, f"x{time.monotonic_ns()}:")
    name, left = calendar_window("day", time.time())
    rpm = Meter("{key:k}:key:k:rpm", "rate", 1, 10, 60)
    money = Meter(f"{{key:k}}:key:k:usd_micros:{name}", "window", 10, 100, left)
    assert await meters.meter_leasing([rpm, money], [4, 50]) == [4, 50]
    assert [r.used for r in await meters.read([rpm, money])] == [5, 60]
    assert await meters.meter_leasing([rpm, money], [4, 50]) == [4, 0]  # 60 + 10 + 50 > 100
    assert [r.used for r in await meters.read([rpm, money])] == [10, 70]
    refusal = await meters.meter_leasing([rpm, money], [4, 0])  # the burst of 10 is reserved
    assert isinstance(refusal, Refusal)
    assert refusal.meter == 0
    checked = await meters.meter([rpm, money], check=True)
    assert checked is not None  # as a plain check refuses it
    assert checked.meter == 0
    await meters.meter([rpm._replace(amount=-4), money._replace(amount=-50)], check=False)  # returned
    assert [r.used for r in await meters.read([rpm, money])] == [6, 20]
    await meters.meter([rpm._replace(amount=-100)], check=False)  # never before now: no extra burst
    for _ in range(10):
        assert await meters.meter([rpm], check=True) is None
    assert await meters.meter([rpm], check=True) is not None
    await store.aclose()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_leases_expire_and_are_returned_to_redis(redis_server: RedisServer) -> None:  # noqa: F811
    """With a fake clock: the lease admits in process until it is spent or expires; expired, it
    is returned, and Redis holds exactly what the requests took."""
    store, meters = meters_in(redis_server, f"e{time.monotonic_ns()}:")
    clock = Clock()
    leased = LeasedMeters(meters, lifetime_s=60, requests=4, clock=clock)
    name, left = calendar_window("day", time.time())
    batch = Batch((Meter(f"{{key:k}}:key:k:tokens:{name}", "window", 0, 16000, left),), (0,))
    sent = []
    original = meters.meter_leasing

    async def counted(*args: Any) -> Any:
        sent.append(args)
        return await original(*args)

    meters.meter_leasing = counted  # type: ignore[method-assign]
    for _ in range(4):  # the first check takes 4 more requests' worth: 100 + 400
        assert await leased.meter_batch(batch, (100,), check=True) is None
    await asyncio.gather(*leased._refills)  # below half its top-up: refilled in the background
    assert len(sent) == 2  # the lease the first check took and its refill: the other three took from it
    await leased.meter([batch.meters[0]._replace(amount=-30)], check=False)  # a refund: to the lease
    assert [r.used for r in await leased.read(list(batch.meters))] == [370]
    assert [r.used for r in await meters.read(list(batch.meters))] > [370]  # the lease, reserved
    clock.now += 61
    leased.sweep()
    await leased.flush()
    assert [r.used for r in await meters.read(list(batch.meters))] == [370]
    assert await leased.meter_batch(batch, (15700,), check=True) is not None  # 370 + 15700 > 16000
    await leased.aclose()
    await store.aclose()


async def test_three_leasing_replicas_race_for_a_budget_s_last_units(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    """Three replicas with leases (in this process, sharing one Redis) race 150 requests for a
    budget of 40.5 worst cases: the leases are taken (a sixteenth of the limit is 2.5 worst
    cases), yet every admission was reserved in Redis first, so the spend stays within one worst
    case of the limit; once the leases are returned, every replica reports the real spend."""
    request = chat("mock/echo", "hi", max_tokens=3)
    worst = max(1, request.ByteSize() // 4) * 2 + 3 * 5
    limit = 40 * worst + worst // 2
    config = leased_config(
        redis_server.url, f"race{time.monotonic_ns()}:", 300, f"usd_micros_per_day = {limit}"
    )
    async with run_gateway(config) as a, run_gateway(config) as b, run_gateway(config) as c:
        stubs = [a.stub, b.stub, c.stub]
        outcomes = await asyncio.gather(
            *(stubs[i % 3].Chat(request, metadata=bearer(ALICE), timeout=30) for i in range(150)),
            return_exceptions=True,
        )
        answered = [o for o in outcomes if isinstance(o, pb.ChatResponse)]
        refused = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
        assert len(answered) + len(refused) == 150
        assert {e.code() for e in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
        assert all("QuotaFailure" in details(e) for e in refused)
        spent = sum(r.finish.cost.amount_micros for r in answered)
        assert spent <= limit + worst
        assert len(answered) >= 40 - 3  # at most each replica's last lease units short of a request
        for gw in (a, b, c):
            await gw.server.auth[0].quotas.drain()
        async with asyncio.timeout(WAIT_S):  # the leases return within 1.5 lifetimes
            while True:
                if [await money_spent(gw) for gw in (a, b, c)] == [spent] * 3:
                    break
                await asyncio.sleep(0.05)
