"""Circuit breakers: the state machine, and what the router and the gateway do with open breakers."""

from __future__ import annotations

import asyncio
import time

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from routing_support import FakeClock, chat, finish_of, make_router, mock, run_stream, two_deployments

from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.routing.breaker import BreakerSettings, BreakerState, CircuitBreaker
from provider_gateway.v1 import provider_service_pb2 as pb


def breaker(clock: FakeClock, **settings: float) -> CircuitBreaker:
    return CircuitBreaker(BreakerSettings(**settings), clock)  # type: ignore[arg-type]


def test_consecutive_failures_open_the_breaker() -> None:
    clock = FakeClock()
    b = breaker(clock, consecutive_failures=3, min_calls=100)
    b.record_failure()
    b.record_failure()
    b.record_success()  # resets the run
    b.record_failure()
    b.record_failure()
    assert b.state is BreakerState.CLOSED
    b.record_failure()
    assert b.state is BreakerState.OPEN
    assert not b.acquire()


def test_failure_rate_opens_only_with_enough_calls_in_the_window() -> None:
    clock = FakeClock()
    b = breaker(clock, consecutive_failures=100, failure_rate=0.5, min_calls=4, window_s=10)
    for outcome in (True, False, True):
        b.record_failure() if outcome else b.record_success()
    assert b.state is BreakerState.CLOSED  # 2 of 3 failed, but 3 calls are below min_calls
    clock.now += 11  # those calls leave the window
    b.record_success()
    b.record_failure()
    b.record_success()
    assert b.state is BreakerState.CLOSED
    b.record_failure()  # 2 of 4 within the window
    assert b.state is BreakerState.OPEN


def test_half_open_after_cooldown_lets_limited_probes_through_and_closes_on_success() -> None:
    clock = FakeClock()
    changes: list[BreakerState] = []
    b = CircuitBreaker(
        BreakerSettings(consecutive_failures=1, cooldown_s=5, half_open_probes=2), clock, changes.append
    )
    b.record_failure()
    assert b.open_for() == 5
    clock.now += 4.9
    assert b.state is BreakerState.OPEN
    clock.now += 0.2
    assert b.state is BreakerState.HALF_OPEN
    assert b.acquire()
    assert b.acquire()
    assert not b.acquire()  # only two probes at a time
    b.release()  # a probe ended without a verdict (client error, cancel)
    assert b.acquire()
    b.record_success()
    assert b.state is BreakerState.CLOSED
    assert changes == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]


def test_a_failed_probe_reopens_for_another_cooldown() -> None:
    clock = FakeClock()
    b = breaker(clock, consecutive_failures=1, cooldown_s=5)
    b.record_failure()
    clock.now += 5
    assert b.acquire()
    b.record_failure()
    assert b.state is BreakerState.OPEN
    assert b.open_for() == 5


async def test_router_skips_an_open_deployment_quickly_and_probes_it_after_cooldown() -> None:
    clock = FakeClock()
    routing = "[routing.breaker]\nconsecutive_failures = 2\ncooldown_s = 10"
    router = make_router(two_deployments('fault = "error_before_first_token"', routing=routing), clock=clock)
    for _ in range(2):
        await run_stream(router, chat("g"))
    assert router.breaker_state("a") == "open"
    a = mock(router, "a")
    started = a.stats.started
    began = time.perf_counter()
    finish = finish_of(await run_stream(router, chat("g")))
    assert [x.provider for x in finish.attempts] == ["b"]
    assert a.stats.started == started
    assert time.perf_counter() - began < 0.5  # generous for a loaded machine; the benchmark measures it
    clock.now += 10
    a.set_model("m", a.models["echo"])  # healed
    finish = finish_of(await run_stream(router, chat("g")))
    assert [x.provider for x in finish.attempts] == ["a"]  # the half-open probe succeeds
    assert router.breaker_state("a") == "closed"


async def test_reading_the_state_off_the_loop_moves_no_breaker() -> None:
    """The breaker gauge is read on the metrics exporter's thread: after the cool-down it says
    half_open without moving the breaker there, since the move starts a health update that only
    the event loop's thread can run (off it: RuntimeError, and the update lost)."""
    clock = FakeClock()
    routing = "[routing.breaker]\nconsecutive_failures = 2\ncooldown_s = 10"
    router = make_router(two_deployments('fault = "error_before_first_token"', routing=routing), clock=clock)
    for _ in range(2):
        await run_stream(router, chat("g"))
    changes: list[tuple[str, str]] = []
    router.on_breaker_change = lambda provider, state: changes.append((provider, state))
    clock.now += 10
    assert await asyncio.to_thread(router.breaker_state, "a") == "half_open"
    assert changes == []
    assert router.breaker_state("a") == "half_open"
    assert changes == []  # reads never move it; the loop's timer or a request's acquire does


async def test_an_open_breaker_moves_to_half_open_even_when_its_timer_fires_early() -> None:
    """The router's timer moves an open breaker to half-open after the cool-down (health then
    shows it without a request); a timer that fires before the breaker's clock says the cool-down
    is over (uvloop counts whole milliseconds) looks again instead of leaving it open."""
    clock = FakeClock()
    routing = "[routing.breaker]\nconsecutive_failures = 2\ncooldown_s = 0.05"
    router = make_router(two_deployments('fault = "error_before_first_token"', routing=routing), clock=clock)
    changes: list[tuple[str, str]] = []
    router.on_breaker_change = lambda provider, state: changes.append((provider, state))
    for _ in range(2):
        await run_stream(router, chat("g"))
    assert changes == [("a", "open")]
    await asyncio.sleep(0.15)  # the timer has fired; by the breaker's clock no time has passed
    assert changes == [("a", "open")]
    clock.now += 0.05
    for _ in range(100):  # bounded: the timer looks again 50 ms later
        if len(changes) > 1:
            break
        await asyncio.sleep(0.02)
    assert changes == [("a", "open"), ("a", "half_open")]


async def test_every_deployment_open_fails_fast_with_a_retry_delay() -> None:
    clock = FakeClock()
    router = make_router(
        '[providers.a]\nkind = "mock"\n[providers.a.models.m]\nfault = "error_before_first_token"\n'
        "[routing]\nretries = 0\n[routing.breaker]\nconsecutive_failures = 1\ncooldown_s = 30",
        clock=clock,
    )
    with pytest.raises(GatewayError):
        await run_stream(router, chat("a/m"))
    with pytest.raises(GatewayError) as caught:
        await run_stream(router, chat("a/m"))
    assert caught.value.kind is ErrorKind.UNAVAILABLE
    assert caught.value.retry_after == pytest.approx(30, abs=0.01)
    assert mock(router, "a").stats.started == 1
    assert clock.sleeps == []


async def test_a_429_with_retry_delay_ejects_the_deployment_for_that_delay() -> None:
    clock = FakeClock()
    router = make_router(two_deployments('fault = "rate_limit"\nretry_after_ms = 20000'), clock=clock)
    await run_stream(router, chat("g"))
    assert mock(router, "a").stats.started == 1
    finish = finish_of(await run_stream(router, chat("g")))
    assert [x.provider for x in finish.attempts] == ["b"]  # ejected: not even tried
    assert mock(router, "a").stats.started == 1
    assert router.breaker_state("a") == "closed"  # a rate limit is not a broken deployment
    clock.now += 20.5
    await run_stream(router, chat("g"))
    assert mock(router, "a").stats.started == 2


async def test_open_breakers_show_in_list_providers_and_health(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    config = """
[providers.a]
kind = "mock"
[providers.a.models.m]
fault = "error_before_first_token"
[providers.b]
kind = "mock"
[routing]
retries = 0
[routing.breaker]
consecutive_failures = 1
cooldown_s = 60
"""
    async with gateway_factory(config) as gw:
        request = pb.ChatRequest(
            model="a/m", messages=[pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text="hi")])]
        )
        with pytest.raises(Exception, match="injected"):
            await gw.stub.Chat(request)
        listing = await gw.stub.ListProviders(pb.ListProvidersRequest())
        states = {p.name: p.breaker_state for p in listing.providers}
        assert states == {"a": "open", "b": "closed"}
        health = health_pb2_grpc.HealthStub(gw.channel)
        for _ in range(100):  # published by a task: wait for it, bounded
            reply = await health.Check(health_pb2.HealthCheckRequest(service="provider/a"))
            if reply.status == health_pb2.HealthCheckResponse.NOT_SERVING:
                break
            await asyncio.sleep(0.01)
        assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
        reply = await health.Check(health_pb2.HealthCheckRequest(service="provider/b"))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
