"""Shared state in a real redis-server: one limit for several routers, shared ejections, local fallback."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from routing_support import chat, finish_of, make_router, mock, run_stream
from test_out_of_credit import PROVIDERS, QUOTA

from provider_gateway import config as config_module
from provider_gateway.domain import EmbedRequest
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.fakes import FakeUpstream, Reply
from provider_gateway.routing.deployments import rate_limit_hold
from provider_gateway.routing.shared_state import MemoryCounterStore, RedisCounterStore, build_counter_store

REDIS = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(
    REDIS is None, reason="redis-server is not installed (scripts/setup.d/redis.sh installs it)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    def __init__(self, binary: str | None = REDIS) -> None:
        """`binary`: redis-server, or a Redis-compatible one (valkey-server)."""
        self.binary = binary
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *options: str) -> None:
        assert self.binary is not None
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                *options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start within 10 s")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def stores(redis_server: RedisServer) -> AsyncIterator[list[RedisCounterStore]]:
    made = [RedisCounterStore(redis_server.url, prefix=f"t{time.monotonic_ns()}:") for _ in range(2)]
    made[1]._prefix = made[0]._prefix  # two replicas of one deployment share the key space
    yield made
    for store in made:
        await store.aclose()


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_hit_admits_a_burst_within_the_limit_then_reports_when_a_unit_frees(
    kind: str, redis_server: RedisServer
) -> None:
    store = (
        MemoryCounterStore()
        if kind == "memory"
        else RedisCounterStore(redis_server.url, prefix=f"h{time.monotonic_ns()}:")
    )
    assert await store.hit("k", 2, 5, 30) == 0.0
    assert await store.hit("k", 3, 5, 30) == 0.0
    wait = await store.hit("k", 1, 5, 30)
    assert 5.9 < wait <= 6  # GCRA: a burst of 5, then one unit every 30 s / 5, never a whole window
    assert await store.hit("other", 1, 5, 30) == 0.0
    await store.aclose()


async def test_two_routers_on_one_redis_respect_one_request_budget(stores: list[RedisCounterStore]) -> None:
    text = '[providers.a]\nkind = "mock"\n[groups.g]\ndeployments = [{ provider = "a", model = "echo", rpm = 4 }]'
    routers = [make_router(text, store=store) for store in stores]
    outcomes = []
    for i in range(6):
        try:
            await run_stream(routers[i % 2], chat("g"))
            outcomes.append("ok")
        except GatewayError as exc:
            outcomes.append(exc.kind.value if exc.retry_after else "no retry delay")
    assert outcomes == ["ok"] * 4 + ["RESOURCE_EXHAUSTED"] * 2
    assert sum(mock(r, "a").stats.started for r in routers) == 4


async def test_an_ejection_by_one_router_is_seen_by_the_other(stores: list[RedisCounterStore]) -> None:
    text = """
[providers.a]
kind = "mock"
[providers.a.models.m]
fault = "rate_limit"
retry_after_ms = 30000
[providers.b]
kind = "mock"
[groups.g]
deployments = [{ provider = "a", model = "m", weight = 1 }, { provider = "b", model = "echo", weight = 0 }]
"""
    first, second = (make_router(text, store=store) for store in stores)
    assert [a.provider for a in finish_of(await run_stream(first, chat("g"))).attempts] == ["a", "b"]
    assert [a.provider for a in finish_of(await run_stream(second, chat("g"))).attempts] == ["b"]
    assert mock(second, "a").stats.started == 0
    assert 29 < (await stores[1].ejections([rate_limit_hold("g/a/m")]))[0] <= 30


async def test_an_account_out_of_credit_seen_by_one_router_is_named_by_the_other(
    stores: list[RedisCounterStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other replica holds the deployment without asking the account again, and its refusal
    says what to change, as the replica that saw the 429 `insufficient_quota` does."""
    monkeypatch.setenv("PG_CREDIT_KEY", "sk-test")
    async with FakeUpstream() as fake:
        fake.on("POST", "/a/v1/*", lambda _r: Reply.error(429, QUOTA))
        first, second = (make_router(PROVIDERS.format(url=fake.url), store=store) for store in stores)
        with pytest.raises(GatewayError, match="out of credit"):
            await run_stream(first, chat("a/gpt-4o-mini"))
        for call in (
            run_stream(second, chat("a/gpt-4o-mini")),
            second.embed(EmbedRequest("a/gpt-4o-mini", ["x"])),
        ):
            with pytest.raises(GatewayError) as held:
                await call
            assert held.value.kind is ErrorKind.RESOURCE_EXHAUSTED
            assert "the account behind a (a/gpt-4o-mini) is out of credit" in held.value.message
            assert "rate limit" not in held.value.message
            assert 290 < (held.value.retry_after or 0) <= 300
        assert len(fake.requests) == 1
        await first.aclose()
        await second.aclose()


async def test_when_redis_goes_away_the_store_falls_back_to_local_state(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = RedisServer()
    server.start()
    store = RedisCounterStore(server.url, timeout_s=0.5)
    try:
        assert await store.hit("k", 1, 2, 60) == 0.0
        assert store.using_redis
        server.stop()
        with caplog.at_level(logging.WARNING, logger="provider_gateway.shared_state"):
            assert await store.hit("k", 1, 2, 60) == 0.0  # served from the local twin
        assert not store.using_redis
        assert "redis unavailable" in caplog.text
        assert await store.hit("k", 1, 2, 60) == 0.0
        assert await store.hit("k", 1, 2, 60) > 0  # the local window still limits
        await store.eject("d", 5)
        assert (await store.ejections(["d"]))[0] > 4
    finally:
        server.stop()
        await store.aclose()


async def test_the_gateway_builds_the_store_from_the_redis_table(redis_server: RedisServer) -> None:
    config = config_module.parse({"redis": {"url": redis_server.url}}, "test.toml")
    store = build_counter_store(config)
    assert isinstance(store, RedisCounterStore)
    assert await store.hit(f"b{time.monotonic_ns()}", 1, 1, 1) == 0.0
    await store.aclose()
    assert isinstance(build_counter_store(config_module.mock_only()), MemoryCounterStore)
    with pytest.raises(config_module.ConfigError, match=r"redis\.url"):
        build_counter_store(config_module.parse({"redis": {"url": "http://x"}}, "test.toml"))
    await asyncio.sleep(0)


async def test_two_gateways_on_one_redis_refuse_past_one_shared_budget(
    redis_server: RedisServer, gateway_factory
) -> None:  # type: ignore[no-untyped-def]
    import grpc

    from provider_gateway.v1 import provider_service_pb2 as pb

    config = f"""
[redis]
url = "{redis_server.url}"
prefix = "gw{time.monotonic_ns()}:"
[providers.a]
kind = "mock"
[groups.g]
deployments = [{{ provider = "a", model = "echo", rpm = 3 }}]
"""
    request = pb.ChatRequest(
        model="g", messages=[pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text="hi")])]
    )
    async with gateway_factory(config) as one, gateway_factory(config) as two:
        codes = []
        for gw in (one, two, one, two, one):
            try:
                await gw.stub.Chat(request)
                codes.append("OK")
            except grpc.aio.AioRpcError as exc:
                codes.append(exc.code().name)
        assert codes == ["OK", "OK", "OK", "RESOURCE_EXHAUSTED", "RESOURCE_EXHAUSTED"]


async def test_an_unreachable_redis_is_logged_at_start_up_and_again_when_it_is_back(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conftest import run_gateway

    server = RedisServer()  # not started yet: its port is closed
    monkeypatch.setenv("PGW_TEST_REDIS", f"redis://:hunter2-secret@127.0.0.1:{server.port}/0")
    config = '[redis]\nurl_env = "PGW_TEST_REDIS"\nretry_after_s = 0\n'
    try:
        with caplog.at_level(logging.INFO, logger="provider_gateway.shared_state"):
            async with run_gateway(config) as gw:
                # Logged by the start-up alone: no request has needed Redis yet.
                (down,) = [r for r in caplog.records if "redis unavailable" in r.getMessage()]
                assert down.levelno == logging.WARNING
                assert f"at 127.0.0.1:{server.port} " in down.getMessage()
                assert "at start-up" in down.getMessage()
                server.start()
                for _ in range(200):  # logged without any request: the store watches for it
                    if "reachable again" in caplog.text:
                        break
                    await asyncio.sleep(0.05)
                assert gw.server.counters.using_redis
        back = [r.getMessage() for r in caplog.records if "reachable again" in r.getMessage()]
        assert back == [f"redis reachable again at 127.0.0.1:{server.port}; shared state restored"]
        assert "hunter2" not in caplog.text
    finally:
        server.stop()


async def test_a_deployments_rpm_is_a_rolling_rate_not_a_window_that_resets() -> None:
    """rpm = 2: a burst of two, then one request every 30 s (GCRA); a fixed window would admit
    nothing more until its minute ended, then a fresh burst of two."""
    now = [1000.0]
    text = '[providers.a]\nkind = "mock"\n[groups.g]\ndeployments = [{ provider = "a", model = "echo", rpm = 2 }]'
    router = make_router(text, clock=lambda: now[0], store=MemoryCounterStore(lambda: now[0]))
    outcomes = []
    for advance in (0, 0, 0, 30, 0, 30, 30, 0):  # at 0 s, 30 s, 60 s and 90 s
        now[0] += advance
        try:
            await run_stream(router, chat("g"))
            outcomes.append("ok")
        except GatewayError as exc:
            outcomes.append(f"wait {exc.retry_after:.0f}" if exc.retry_after else "no retry delay")
    assert outcomes == ["ok", "ok", "wait 30", "ok", "wait 30", "ok", "ok", "wait 30"]


async def test_scripts_are_sent_again_when_redis_has_forgotten_them(redis_server: RedisServer) -> None:
    """EVALSHA alone would fail NOSCRIPT after a Redis restart or failover: the script is resent."""
    store = RedisCounterStore(redis_server.url, prefix=f"f{time.monotonic_ns()}:")
    try:
        assert await store.hit("k", 1, 2, 60) == 0.0
        await store._client.script_flush()
        assert await store.hit("k", 1, 2, 60) == 0.0
        assert await store.hit("k", 1, 2, 60) > 0  # the same rate, still in Redis
        assert store.using_redis
    finally:
        await store.aclose()
