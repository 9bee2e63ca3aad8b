"""Circuit breakers: the state machine, and what the router and the gateway do with open breakers."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from routing_support import FakeClock, chat, finish_of, make_router, mock, run_stream, two_deployments, until

from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.providers.mock import MockModel
from provider_gateway.routing.breaker import BreakerSettings, BreakerState, CircuitBreaker
from provider_gateway.routing.timing import RequestClock
from provider_gateway.v1 import provider_service_pb2 as pb


def breaker(clock: FakeClock, **settings: float) -> CircuitBreaker:
    return CircuitBreaker(BreakerSettings(**settings), clock)  # type: ignore[arg-type]


def fail(b: CircuitBreaker) -> None:
    """One call admitted now that fails."""
    b.record_failure(b.acquire())


def succeed(b: CircuitBreaker) -> None:
    b.record_success(b.acquire())


def test_consecutive_failures_open_the_breaker() -> None:
    clock = FakeClock()
    b = breaker(clock, consecutive_failures=3, min_calls=100)
    fail(b)
    fail(b)
    succeed(b)  # resets the run
    fail(b)
    fail(b)
    assert b.state is BreakerState.CLOSED
    fail(b)
    assert b.state is BreakerState.OPEN
    assert b.acquire() is None


def test_failure_rate_opens_only_with_enough_calls_in_the_window() -> None:
    clock = FakeClock()
    b = breaker(clock, consecutive_failures=100, failure_rate=0.5, min_calls=4, window_s=10)
    for outcome in (True, False, True):
        fail(b) if outcome else succeed(b)
    assert b.state is BreakerState.CLOSED  # 2 of 3 failed, but 3 calls are below min_calls
    clock.now += 11  # those calls leave the window
    succeed(b)
    fail(b)
    succeed(b)
    assert b.state is BreakerState.CLOSED
    fail(b)  # 2 of 4 within the window
    assert b.state is BreakerState.OPEN


def test_half_open_after_cooldown_lets_limited_probes_through_and_closes_on_success() -> None:
    clock = FakeClock()
    changes: list[BreakerState] = []
    b = CircuitBreaker(
        BreakerSettings(consecutive_failures=1, cooldown_s=5, half_open_probes=2), clock, changes.append
    )
    fail(b)
    assert b.open_for() == 5
    clock.now += 4.9
    assert b.state is BreakerState.OPEN
    clock.now += 0.2
    assert b.state is BreakerState.HALF_OPEN
    first = b.acquire()
    assert first is not None
    assert b.acquire() is not None
    assert b.acquire() is None  # only two probes at a time
    b.release(first)  # a probe ended without a verdict (client error, cancel)
    probe = b.acquire()
    assert probe is not None
    b.record_success(probe)
    assert b.state is BreakerState.CLOSED
    assert changes == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]


def test_a_failed_probe_reopens_for_another_cooldown() -> None:
    clock = FakeClock()
    b = breaker(clock, consecutive_failures=1, cooldown_s=5)
    fail(b)
    clock.now += 5
    fail(b)  # the probe
    assert b.state is BreakerState.OPEN
    assert b.open_for() == 5


def test_a_call_admitted_before_the_breaker_moved_decides_nothing() -> None:
    """A straggler (a long stream admitted while closed) ending while half-open neither frees a
    probe slot, nor reopens the breaker under the real probe, nor closes it while open."""
    clock = FakeClock()
    b = breaker(clock, consecutive_failures=1, cooldown_s=10)
    straggler, late = b.acquire(), b.acquire()
    fail(b)  # opens
    b.record_success(straggler)
    assert b.state is BreakerState.OPEN, "a stale success closed an open breaker"
    clock.now += 10
    probe = b.acquire()
    assert probe is not None
    assert b.state is BreakerState.HALF_OPEN
    b.release(late)  # cancelled: it held no probe slot
    assert b.acquire() is None, "a second probe with half_open_probes = 1"
    b.record_failure(straggler)
    assert b.state is BreakerState.HALF_OPEN, "a stale failure re-opened the breaker"
    b.record_success(probe)
    assert b.state is BreakerState.CLOSED


def test_an_early_probe_closes_an_open_breaker_or_leaves_its_cooldown_running() -> None:
    clock = FakeClock()
    b = breaker(clock, consecutive_failures=1, cooldown_s=10, half_open_probes=1)
    fail(b)
    assert b.acquire() is None  # open: no ordinary call
    probe = b.acquire(early=True)
    assert probe is not None
    assert b.acquire(early=True) is None  # one probe at a time, early or not
    clock.now += 4
    b.record_failure(probe)
    assert b.state is BreakerState.OPEN
    assert b.open_for() == 6
    assert b.acquire(early=True) is None  # the next early probe waits a second
    assert b.early_probe_in() == 1
    clock.now += 1
    b.record_success(b.acquire(early=True))
    assert b.state is BreakerState.CLOSED


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


async def test_a_closed_router_moves_no_breaker_after_its_cool_down() -> None:
    """aclose cancels the timers that would move an open breaker at the end of its cool-down: a
    router closed (a reload, a shutdown, a test's end) logs and reports nothing afterwards."""
    routing = "[routing.breaker]\nconsecutive_failures = 2\ncooldown_s = 0.001"
    router = make_router(two_deployments('fault = "error_before_first_token"', routing=routing))
    changes: list[tuple[str, str]] = []
    router.on_breaker_change = lambda provider, state: changes.append((provider, state))
    for _ in range(2):
        await run_stream(router, chat("g"))
    assert changes == [("a", "open")]
    await router.aclose()
    await asyncio.sleep(0.05)  # far past the cool-down: a timer left behind would have fired
    assert changes == [("a", "open")]


async def test_with_every_deployment_open_one_request_probes_early_and_the_others_fail_fast() -> None:
    """A plan whose every deployment is open is not refused for the whole cool-down: one request at
    a time (`half_open_probes`) tries the deployment whose cool-down ends first; the others are
    refused at once, told that a probe is in flight and when to retry. A failed early probe leaves
    the cool-down as it was; a successful one closes the breaker."""
    clock = FakeClock()
    router = make_router(
        '[providers.a]\nkind = "mock"\n[providers.a.models.m]\nfault = "error_before_first_token"\n'
        "[routing]\nretries = 0\nttft_timeout_s = 120\n"
        "[routing.breaker]\nconsecutive_failures = 1\ncooldown_s = 30",
        clock=clock,
    )
    a = mock(router, "a")
    with pytest.raises(GatewayError):
        await run_stream(router, chat("a/m"))  # opens the breaker for 30 s
    clock.now += 5
    with pytest.raises(GatewayError, match="injected"):  # an early probe, failing as the provider does
        await run_stream(router, chat("a/m"))
    assert a.stats.started == 2
    assert router.breaker_state("a") == "open"
    assert router.planner.deployments["a/m"].breaker.open_for() == pytest.approx(25)  # not restarted
    with pytest.raises(GatewayError, match="the next probe goes in 1 s"):  # held back a second
        await run_stream(router, chat("a/m"))
    assert a.stats.started == 2
    clock.now += 1

    a.set_model("m", MockModel(tokens=1, first_token_delay_ms=60000))
    probe = asyncio.ensure_future(run_stream(router, chat("a/m")))
    await until(lambda: a.stats.started == 3)
    try:
        with pytest.raises(GatewayError) as caught:
            await run_stream(router, chat("a/m"))
    finally:
        probe.cancel()
        await asyncio.gather(probe, return_exceptions=True)
    assert caught.value.kind is ErrorKind.UNAVAILABLE
    assert caught.value.retry_after == 1.0
    assert "a/m is being probed" in caught.value.message
    assert "half_open_probes" in caught.value.message
    assert a.stats.started == 3  # refused without a call
    assert clock.sleeps == []

    a.set_model("m", MockModel(tokens=1))  # recovered (or the failures were one caller's)
    finish = finish_of(await run_stream(router, chat("a/m")))
    assert [x.outcome for x in finish.attempts] == ["ok"]
    assert router.breaker_state("a") == "closed"


async def test_a_request_behind_a_half_open_probe_is_told_so_not_sent_to_the_capacity_queue() -> None:
    """Neither `queue_timeout_s` nor more concurrency helps a request while the one probe of a
    half-open deployment is in flight: it is refused at once, naming the probe."""
    router = make_router(BREAKER_CONFIG)
    a = mock(router, "a")
    a.set_model("m", MockModel(fault="error_before_first_token"))
    with pytest.raises(GatewayError):
        await run_stream(router, chat("a/m"))  # trips the breaker
    await asyncio.sleep(0.35)  # half-open
    a.set_model("m", MockModel(tokens=1, first_token_delay_ms=60000))
    probe = asyncio.ensure_future(run_stream(router, chat("a/m")))
    await until(lambda: a.stats.started == 2)
    try:
        with pytest.raises(GatewayError) as caught:
            await run_stream(router, chat("a/m"))
    finally:
        probe.cancel()
        await asyncio.gather(probe, return_exceptions=True)
    assert caught.value.kind is ErrorKind.UNAVAILABLE
    assert "being probed" in caught.value.message
    assert "limiter" not in caught.value.message
    assert caught.value.retry_after == 1.0
    assert router.capacity.waiters == {}


# One failure opens a/m's breaker for 0.3 s; then one probe at a time.
BREAKER_CONFIG = (
    '[providers.a]\nkind = "mock"\n'
    "[providers.a.models.m]\ntokens = 1\n"
    "[routing]\nretries = 0\nttft_timeout_s = 120\nqueue_timeout_s = 5\n"
    "[routing.breaker]\nconsecutive_failures = 1\ncooldown_s = 0.3\nhalf_open_probes = 1\n"
)


async def test_half_open_lets_through_no_more_probes_than_configured() -> None:
    """A request admitted while the breaker was closed and cancelled while it is half-open gives
    back no probe slot: it never held one (half_open_probes = 1 stays one request)."""
    router = make_router(BREAKER_CONFIG)
    a = mock(router, "a")
    slow = MockModel(tokens=1, first_token_delay_ms=60000)
    a.set_model("m", slow)
    old = asyncio.ensure_future(run_stream(router, chat("a/m")))  # admitted while closed, in flight
    await until(lambda: a.stats.started == 1)
    a.set_model("m", MockModel(fault="error_before_first_token"))
    with pytest.raises(GatewayError):
        await run_stream(router, chat("a/m"))  # trips the breaker
    await asyncio.sleep(0.35)  # cool-down over: half-open
    a.set_model("m", slow)
    probe = asyncio.ensure_future(run_stream(router, chat("a/m")))
    await until(lambda: a.stats.started == 3)  # the one probe is in flight
    try:
        old.cancel()  # the client of the closed-era request leaves
        await asyncio.gather(old, return_exceptions=True)
        with pytest.raises(GatewayError, match="being probed"):  # (a second probe: past its deadline)
            await run_stream(router, chat("a/m"), RequestClock(deadline=router.clock() + 2))
        assert a.stats.started == 3
    finally:
        probe.cancel()
        await asyncio.gather(probe, return_exceptions=True)


async def test_one_callers_poison_prompts_do_not_eject_every_deployment_for_everyone(  # type: ignore[no-untyped-def]
    gateway_factory, monkeypatch
) -> None:
    """Vendors answer 500 to some inputs every time (a malformed image, a prompt their tokenizer
    chokes on). Failing over, such a request counts against every deployment's breaker: a handful
    of them opens all of a group's. Others' requests still get answers: one probes early."""
    from rpc_util import chat as pb_chat
    from test_budgets_redis import openai_answer

    from provider_gateway.fakes import FakeUpstream, RecordedRequest, Reply

    monkeypatch.setenv("PG_TEST_KEY", "sk-test")

    def answer(recorded: RecordedRequest) -> Reply:
        if b"poison" in recorded.body:
            return Reply.error(500, {"error": {"message": "The server had an error", "type": "server_error"}})
        return openai_answer(recorded)

    async with FakeUpstream() as fake:
        fake.on("POST", "/a/v1/chat/completions", answer)
        fake.on("POST", "/b/v1/chat/completions", answer)
        async with gateway_factory(POISON_GROUP.format(url=fake.url)) as gw:
            for _ in range(5):
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await gw.stub.Chat(pb_chat("g", "poison", max_tokens=5), timeout=10)
                assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
            router = gw.server.router
            assert {router.breaker_state(p) for p in "ab"} == {"open"}  # the premise: every one open
            # The last poison request was an early probe: the next one waits a second, and a caller
            # refused meanwhile is told when to come back (as the clients do, it does).
            refusals = []
            for _ in range(3):
                try:
                    reply = await gw.stub.Chat(pb_chat("g", "an ordinary question", max_tokens=5), timeout=10)
                except grpc.aio.AioRpcError as refused:
                    refusals.append(refused.details() or "")
                    await asyncio.sleep(1.0)
                    reply = await gw.stub.Chat(pb_chat("g", "an ordinary question", max_tokens=5), timeout=10)
                assert reply.text == "hello"
            assert all("the next probe goes in" in refusal for refusal in refusals), refusals
            assert "closed" in {router.breaker_state(p) for p in "ab"}  # the early probe's success


POISON_GROUP = """
[providers.a]
kind = "openai"
base_url = "{url}/a/v1"
api_key_env = "PG_TEST_KEY"

[providers.b]
kind = "openai"
base_url = "{url}/b/v1"
api_key_env = "PG_TEST_KEY"

[groups.g]
deployments = [{{ provider = "a", model = "gpt-4o-mini" }}, {{ provider = "b", model = "gpt-4o-mini" }}]
"""


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


async def test_a_dead_deployment_gets_spaced_early_probes_not_every_request() -> None:
    """A failed early probe holds the next back a second: a deployment that is really down is not
    sent every request of its cool-down, one after another. 20 requests in 2 s reached it 21 times
    before; now the trip, one probe at once and one a second later."""
    clock = FakeClock()
    router = make_router(
        '[providers.a]\nkind = "mock"\n[providers.a.models.m]\nfault = "error_before_first_token"\n'
        "[routing]\nretries = 0\nttft_timeout_s = 120\n"
        "[routing.breaker]\nconsecutive_failures = 1\ncooldown_s = 30",
        clock=clock,
    )
    a = mock(router, "a")
    with pytest.raises(GatewayError):
        await run_stream(router, chat("a/m"))  # opens the breaker for 30 s
    refusals = []
    for _ in range(20):
        clock.now += 0.1
        with pytest.raises(GatewayError) as caught:
            await run_stream(router, chat("a/m"))
        refusals.append(caught.value)
    assert router.breaker_state("a") == "open"
    assert a.stats.started == 3  # the trip, the first early probe at once, the next 1 s after it
    spaced = refusals[-2]  # at 1.9 s: the second probe failed at about 1.1 s, the next goes at 2.1
    assert spaced.kind is ErrorKind.UNAVAILABLE
    assert "the next probe goes in" in spaced.message
    assert spaced.retry_after is not None
    assert 0.1 < spaced.retry_after <= 0.3


async def test_an_early_probe_that_closes_the_breaker_lifts_its_shared_ejection() -> None:
    """The ejection the breaker shared when it opened ends when a probe's success closes it: Embed
    (which makes no early probe) and the plan's other callers see the deployment again at once,
    instead of 'circuit open' for the rest of the cool-down on a replica whose breaker is closed."""
    from provider_gateway.domain import EmbedRequest

    clock = FakeClock()
    router = make_router(
        '[providers.a]\nkind = "mock"\n[providers.a.models.m]\nembeddings = true\n'
        'fault = "error_before_first_token"\n'
        "[routing]\nretries = 0\nttft_timeout_s = 120\n"
        "[routing.breaker]\nconsecutive_failures = 1\ncooldown_s = 30",
        clock=clock,
    )
    a = mock(router, "a")
    with pytest.raises(GatewayError):
        await run_stream(router, chat("a/m"))  # opens the breaker (and ejects a/m in the store)
    for _ in range(5):
        await asyncio.sleep(0)  # the background ejection lands
    clock.now += 5
    a.set_model("m", MockModel(tokens=1, embeddings=True))  # recovered
    await run_stream(router, chat("a/m"))  # an early probe: succeeds, closes the breaker
    assert router.breaker_state("a") == "closed"
    for _ in range(5):
        await asyncio.sleep(0)  # the background lift lands
    _, result = await router.embed(EmbedRequest("a/m", ["x"]))  # before: UNAVAILABLE circuit open
    assert len(result.vectors) == 1
