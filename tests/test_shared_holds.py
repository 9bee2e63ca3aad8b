"""The shared holds (breaker ejections, provider rate-limit holds) as replicas on one Redis (and one
Valkey) see them: kept in-process between background reads every `[redis] holds_refresh_ms`, so a
call never waits on Redis for them, another replica's ejection arrives within the interval, this
replica's own at once, and a frozen Redis neither fails nor holds up a call."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import time
from collections.abc import Iterator

import grpc
import pytest
from conftest import RunningGateway, run_gateway
from routing_support import two_deployments
from rpc_util import WAIT_S, chat
from test_budgets_redis import redis_or_valkey
from test_redis import REDIS, RedisServer

from provider_gateway.routing.shared_state import RedisCounterStore

pytestmark = pytest.mark.skipif(
    REDIS is None, reason="redis-server is not installed (scripts/setup.d/redis.sh installs it)"
)

PRIMARY = "g/a/m"  # the key of group g's deployment of a/m (routing_support.two_deployments)
# A call through a replica that waited on the frozen Redis below would wait for timeout_ms (5 s):
# this deadline fails it, while leaving a loaded machine ample time for a mock's answer.
NOT_WAITING_S = 2.0


@pytest.fixture(params=["redis", "valkey"])
def redis_server(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    yield from redis_or_valkey(request)


def replica_config(
    redis_url: str, prefix: str, *, holds_refresh_ms: int | None = None, timeout_ms: int = 5000
) -> str:
    """Providers a (preferred) and b behind group g; one failure opens a's breaker for a minute."""
    refresh = "" if holds_refresh_ms is None else f"holds_refresh_ms = {holds_refresh_ms}\n"
    redis = (
        f'[redis]\nurl = "{redis_url}"\nprefix = "{prefix}"\ntimeout_ms = {timeout_ms}\nretry_after_s = 60\n'
    )
    routing = "retries = 1\n[routing.breaker]\nconsecutive_failures = 1\ncooldown_s = 60"
    return redis + refresh + two_deployments("tokens = 3", routing=routing)


async def tried(gw: RunningGateway, *, deadline_s: float = WAIT_S) -> list[str]:
    """The providers a Chat on group g tried, in order."""
    response = await gw.stub.Chat(chat("g"), timeout=deadline_s)
    return [attempt.provider for attempt in response.finish.attempts]


def break_a(gw: RunningGateway) -> None:
    """From now on, a's model fails on this replica (retryable): its breaker opens at once."""
    a = gw.provider("a")
    a.set_model("m", dataclasses.replace(a.models["m"], fault="error_before_first_token"))


async def until_tried(gw: RunningGateway, expected: list[str]) -> None:
    """Calls until one tries `expected` (bounded): how another replica's ejection is awaited."""
    for _ in range(int(WAIT_S / 0.01)):
        if await tried(gw) == expected:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"no call tried {expected} in time")


async def test_a_breaker_ejection_by_one_replica_is_honoured_by_another(redis_server: RedisServer) -> None:
    config = replica_config(redis_server.url, f"e{time.monotonic_ns()}:")
    async with run_gateway(config) as one, run_gateway(config) as two:
        assert await tried(two) == ["a"]  # two's view of a's holds now exists: nothing held
        break_a(one)
        assert await tried(one) == ["a", "b"]  # a's breaker opens on one, which ejects a for all
        await until_tried(two, ["b"])  # within holds_refresh_ms: two skips a without trying it
        assert await tried(two) == ["b"]
        assert two.server.router.breaker_state("a") == "closed"  # one's ejection, not two's breaker


async def test_a_replicas_own_provider_hold_counts_at_once(redis_server: RedisServer) -> None:
    """The view is read again only every minute here: the provider's hold that this replica was
    told of holds its next call anyway."""
    config = replica_config(redis_server.url, f"o{time.monotonic_ns()}:", holds_refresh_ms=60_000)
    async with run_gateway(config) as gw:
        assert await tried(gw) == ["a"]
        a = gw.provider("a")
        a.set_model("m", dataclasses.replace(a.models["m"], fault="rate_limit", retry_after_ms=30_000))
        assert await tried(gw) == ["a", "b"]  # a 429 asking for 30 s: a is held
        a.set_model("m", dataclasses.replace(a.models["m"], fault="none"))
        assert await tried(gw) == ["b"]
        assert gw.server.router.breaker_state("a") == "closed"  # a rate limit breaks nothing


async def test_with_holds_refresh_ms_0_every_call_reads_redis(redis_server: RedisServer) -> None:
    prefix = f"z{time.monotonic_ns()}:"
    other_replica = RedisCounterStore(redis_server.url, prefix=prefix)
    config = replica_config(redis_server.url, prefix, holds_refresh_ms=0)
    try:
        async with run_gateway(config) as gw:
            assert await tried(gw) == ["a"]
            await other_replica.eject(PRIMARY, 60)
            assert await tried(gw) == ["b"]  # the very next call: no view to wait for
    finally:
        await other_replica.aclose()


async def test_calls_are_served_from_the_view_while_redis_is_frozen(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis stopped (SIGSTOP: its sockets open, no answer): calls go on without waiting for it,
    still honouring what the view holds, until the background read times out; then the usual
    per-replica fallback, logged once."""
    assert redis_server.process is not None
    # The frozen Redis is noticed when a read times out: 2 s rather than 5 (what the test waits).
    config = replica_config(redis_server.url, f"f{time.monotonic_ns()}:", timeout_ms=2000)
    async with run_gateway(config) as one, run_gateway(config) as two:
        assert await tried(two) == ["a"]
        break_a(one)
        assert await tried(one) == ["a", "b"]
        await until_tried(two, ["b"])
        seen: list[list[str]] = []
        redis_server.process.send_signal(signal.SIGSTOP)
        try:
            with caplog.at_level(logging.WARNING, logger="provider_gateway.shared_state"):
                async with asyncio.timeout(4 * WAIT_S):
                    while "redis unavailable" not in caplog.text:
                        seen.append(await tried(two, deadline_s=NOT_WAITING_S))
                        await asyncio.sleep(0.02)
                after = await tried(two, deadline_s=NOT_WAITING_S)
        except grpc.aio.AioRpcError as exc:
            pytest.fail(f"a call failed while Redis was frozen: {exc.code().name} {exc.details()}")
        finally:
            redis_server.process.send_signal(signal.SIGCONT)
    # From the view (a still ejected) until the background read timed out, which may have
    # happened during the last call; from then on per-replica: two itself never saw a fail.
    from_view = seen.index(["a"]) if ["a"] in seen else len(seen)
    assert from_view > 0
    assert seen[:from_view] == [["b"]] * from_view
    assert [*seen[from_view:], after] == [["a"]] * (len(seen) - from_view + 1)
    assert [r.getMessage() for r in caplog.records].count(
        f"redis unavailable at 127.0.0.1:{redis_server.port} (TimeoutError); using per-replica state for 60 s"
    ) == 1


async def test_a_lifted_ejection_is_over_for_every_replica(redis_server: RedisServer) -> None:
    """A breaker that closes lifts the ejection it shared: the replica that lifts it and one that
    reads Redis afresh both see the deployment again at once, not at the end of the cool-down."""
    prefix = f"l{time.monotonic_ns()}:"
    one = RedisCounterStore(redis_server.url, prefix=prefix)
    two = RedisCounterStore(redis_server.url, prefix=prefix, holds_refresh_s=0)
    try:
        await one.eject(PRIMARY, 60)
        assert (await one.ejections([PRIMARY]))[0] > 50
        assert (await two.ejections([PRIMARY]))[0] > 50
        await one.lift(PRIMARY)
        assert await one.ejections([PRIMARY]) == [0.0]
        assert await two.ejections([PRIMARY]) == [0.0]
    finally:
        await one.aclose()
        await two.aclose()
