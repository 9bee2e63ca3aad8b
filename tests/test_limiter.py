"""The AIMD limiter, the rate-limit header hook, and the bounded wait queue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from routing_support import FakeClock, chat, finish_of, make_router, mock, run_stream, until

from provider_gateway.domain import ChatRequest, StreamEvent
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.http.rate_limits import RateLimitInfo, announced, report_rate_limit
from provider_gateway.routing.deployments import rate_limit_hold
from provider_gateway.routing.limiter import AdaptiveLimiter, LimiterSettings
from provider_gateway.routing.timing import RequestClock
from provider_gateway.v1 import provider_service_pb2 as pb


def test_limiter_halves_on_overload_once_per_interval_and_recovers_additively() -> None:
    clock = FakeClock()
    limiter = AdaptiveLimiter(
        LimiterSettings(initial=16, minimum=2, maximum=20, decrease_interval_s=1), clock
    )
    limiter.on_overload()
    limiter.on_overload()  # the same burst: one signal
    assert limiter.limit == 8
    clock.now += 1
    for _ in range(3):
        limiter.on_overload()
        clock.now += 1
    assert limiter.limit == 2  # never below the minimum
    for _ in range(2):
        limiter.on_success()
    assert limiter.limit == pytest.approx(2.9)  # about +1 per `limit` successes: 2 + 1/2 + 1/2.5
    for _ in range(1000):
        limiter.on_success()
    assert limiter.limit == 20  # and capped by the maximum


def test_rate_limit_headers_with_little_headroom_slow_the_limiter_down() -> None:
    clock = FakeClock()
    limiter = AdaptiveLimiter(LimiterSettings(initial=10), clock)
    limiter.on_rate_limit_info(RateLimitInfo(remaining_requests=500, limit_requests=1000))
    assert limiter.limit == 10
    limiter.on_rate_limit_info(
        RateLimitInfo(remaining_tokens=50, limit_tokens=1000, remaining_requests=900, limit_requests=1000)
    )
    assert limiter.limit == 5
    assert RateLimitInfo(remaining_requests=0).headroom() == 0.0
    assert RateLimitInfo().headroom() is None


async def test_adapters_report_rate_limits_through_the_hook_during_an_attempt() -> None:
    clock = FakeClock()
    router = make_router('[providers.a]\nkind = "mock"', clock=clock)
    provider = mock(router, "a")
    original = provider.chat_stream

    def reporting(request: ChatRequest) -> AsyncIterator[StreamEvent]:
        report_rate_limit(RateLimitInfo(remaining_requests=0, limit_requests=100, reset_s=12))
        return original(request)

    provider.chat_stream = reporting  # type: ignore[method-assign]
    router.plan("a/echo").deployments[0].provider = provider
    await run_stream(router, chat("a/echo"))
    deployment = router.planner.deployments["a/echo"]
    initial = LimiterSettings().initial
    halved = initial / 2
    assert deployment.limiter.limit == pytest.approx(halved + 1 / halved)  # halved, then one success
    await asyncio.sleep(0)  # the ejection is written by a background task
    assert (await router.store.ejections([rate_limit_hold("a/echo")]))[0] == pytest.approx(12)
    report_rate_limit(RateLimitInfo(remaining_requests=0))  # outside the router: a no-op


async def test_requests_beyond_capacity_queue_then_beyond_the_queue_are_refused() -> None:
    router = make_router(
        '[providers.a]\nkind = "mock"\n[providers.a.models.slow]\ntokens = 1\nfirst_token_delay_ms = 60000\n'
        "[routing]\nmax_queue = 1\nttft_timeout_s = 120\n[routing.limiter]\ninitial = 1\nminimum = 1"
    )
    a = mock(router, "a")
    a.set_model("slow", a.models["slow"])
    first = asyncio.ensure_future(run_stream(router, chat("a/slow")))
    await until(lambda: a.stats.started >= 1)
    a.set_model("slow", a.models["echo"])  # later requests answer at once
    second = asyncio.ensure_future(run_stream(router, chat("a/slow")))
    await until(lambda: router.capacity.waiters.get("a/slow", 0) >= 1)
    with pytest.raises(GatewayError) as caught:
        await run_stream(router, chat("a/slow"))
    assert caught.value.kind is ErrorKind.RESOURCE_EXHAUSTED
    assert caught.value.retry_after
    first.cancel()  # frees the slot: the queued request goes through
    finish = finish_of(await asyncio.wait_for(second, 10))
    assert [x.outcome for x in finish.attempts] == ["ok"]
    assert router.capacity.waiters == {}  # nothing kept for a plan nobody waits on (names are callers')


async def test_a_queued_request_gives_up_at_its_deadline() -> None:
    router = make_router(
        '[providers.a]\nkind = "mock"\n[providers.a.models.slow]\nfirst_token_delay_ms = 60000\n'
        "[routing]\nttft_timeout_s = 120\n[routing.limiter]\ninitial = 1\nminimum = 1"
    )
    a = mock(router, "a")
    first = asyncio.ensure_future(run_stream(router, chat("a/slow")))
    await until(lambda: a.stats.started >= 1)
    loop_deadline = asyncio.get_running_loop().time()
    with pytest.raises(GatewayError) as caught:
        await run_stream(router, chat("a/slow"), RequestClock(deadline=router.clock() + 0.05))
    assert caught.value.kind is ErrorKind.RESOURCE_EXHAUSTED
    assert "until the request's deadline" in caught.value.message
    assert "queue_timeout_s" not in caught.value.message
    assert asyncio.get_running_loop().time() - loop_deadline < 5
    first.cancel()


async def test_a_queued_request_refused_at_the_queue_timeout_names_it_not_the_deadline() -> None:
    """A client told "deadline" would raise its deadline, to no effect: the queue's timeout ended it."""
    router = make_router(
        '[providers.a]\nkind = "mock"\n[providers.a.models.slow]\nfirst_token_delay_ms = 60000\n'
        "[routing]\nttft_timeout_s = 120\nqueue_timeout_s = 0.05\n[routing.limiter]\ninitial = 1\nminimum = 1"
    )
    a = mock(router, "a")
    first = asyncio.ensure_future(run_stream(router, chat("a/slow")))
    await until(lambda: a.stats.started >= 1)
    with pytest.raises(GatewayError) as caught:
        await run_stream(router, chat("a/slow"), RequestClock(deadline=router.clock() + 600))
    assert caught.value.kind is ErrorKind.RESOURCE_EXHAUSTED
    assert "[routing] queue_timeout_s (0.05 s)" in caught.value.message
    assert "deadline" not in caught.value.message
    first.cancel()


async def test_a_queued_request_woken_without_a_slot_gives_up_a_queue_timeout_after_it_joined() -> None:
    """Under churn a waiter is woken without getting a slot (another request took the freed one, or
    another plan's was freed). Its queue timeout restarted at each such wake-up, so a request could
    wait far longer than `queue_timeout_s`; it counts from when the request joined the queue."""
    clock = FakeClock()
    router = make_router(
        '[providers.a]\nkind = "mock"\n[providers.a.models.slow]\nfirst_token_delay_ms = 60000\n'
        "[routing]\nttft_timeout_s = 120\nqueue_timeout_s = 30\n[routing.limiter]\ninitial = 1\nminimum = 1",
        clock=clock,
    )
    a = mock(router, "a")
    holder = asyncio.ensure_future(run_stream(router, chat("a/slow")))  # takes the only slot
    await until(lambda: a.stats.started >= 1)
    queue, waits = router.capacity, []
    join = queue.wait

    def joining(*args: Any, **kwargs: Any) -> Awaitable[None]:
        waits.append(clock.now)
        return join(*args, **kwargs)

    queue.wait = joining  # type: ignore[method-assign]
    waiter = asyncio.ensure_future(run_stream(router, chat("a/slow"), RequestClock(deadline=clock.now + 600)))
    await until(lambda: len(waits) == 1 and queue.waiters.get("a/slow") == 1)
    clock.now += 20
    queue.notify()  # woken, but the one slot is still taken: it waits again
    await until(lambda: len(waits) == 2 and queue.waiters.get("a/slow") == 1)
    assert not waiter.done()
    clock.now += 11  # 31 s after it joined the queue, 11 s after the wake-up
    queue.notify()
    with pytest.raises(GatewayError) as caught:
        await asyncio.wait_for(waiter, 10)  # (a guard against a hang, not a measurement)
    assert caught.value.kind is ErrorKind.RESOURCE_EXHAUSTED
    assert "stayed at capacity for [routing] queue_timeout_s (30 s)" in caught.value.message
    assert a.stats.started == 1  # refused in the queue: it never reached the provider
    holder.cancel()


async def test_resource_exhausted_carries_retry_info_to_grpc_clients(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    config = (
        '[providers.a]\nkind = "mock"\n[providers.a.models.m]\nfault = "rate_limit"\nretry_after_ms = 30000'
    )
    async with gateway_factory(config) as gw:
        request = pb.ChatRequest(
            model="a/m", messages=[pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text="hi")])]
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await gw.stub.Chat(request)
        assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        details = dict(caught.value.trailing_metadata() or ())
        status = status_pb2.Status.FromString(details["grpc-status-details-bin"])
        info = error_details_pb2.RetryInfo()
        assert status.details[0].Unpack(info)
        assert info.retry_delay.seconds == 30


def test_low_headroom_steers_balancing_until_the_announced_reset_or_the_refusals_wait() -> None:
    clock = FakeClock()
    limiter = AdaptiveLimiter(LimiterSettings(initial=10), clock)
    limiter.on_rate_limit_info(RateLimitInfo(remaining_tokens=50, limit_tokens=1000, reset_s=30.0))
    assert limiter.low_on_headroom()
    clock.now += 31  # the budget the provider announced has refilled
    assert not limiter.low_on_headroom()
    limiter.on_rate_limited(None)  # a 429 that names no wait (Bedrock's ThrottlingException)
    assert limiter.low_on_headroom()
    clock.now += 11
    assert not limiter.low_on_headroom()
    limiter.on_rate_limited(60.0)  # one that does (RetryInfo, retry-after)
    clock.now += 59
    assert limiter.low_on_headroom()


@pytest.mark.parametrize("reset", ["nan", "inf", "-inf", "1e400", "99999999"])
def test_an_unreadable_or_absurd_reset_does_not_keep_a_deployment_behind_forever(reset: str) -> None:
    """A reset header of "nan" or "inf" (or years away) was believed for ever: the deployment went
    after every other one until it happened to be picked again. Unreadable is "no reset named" (a
    minute), and no announcement is believed for more than a day."""
    clock = FakeClock()
    limiter = AdaptiveLimiter(LimiterSettings(initial=10), clock)
    headers = {"x-ratelimit-limit-tokens": "1000", "x-ratelimit-remaining-tokens": "0"}
    info = announced({**headers, "x-ratelimit-reset-tokens": reset}, now=1_800_000_000.0)
    assert info is not None
    limiter.on_rate_limit_info(info)
    assert limiter.low_on_headroom()
    clock.now += 86_401
    assert not limiter.low_on_headroom()


def test_a_daily_request_budget_running_low_moves_traffic_but_does_not_throttle_concurrency() -> None:
    """Groq announces its requests per day: with under a tenth left (still a thousand requests), the
    limiter halved on every response down to one request at a time, queueing and refusing bursts the
    provider would serve. The budget refills at its hour whatever the concurrency: the deployment
    goes after those with room, and its concurrency stays."""
    clock = FakeClock()
    limiter = AdaptiveLimiter(LimiterSettings(initial=64), clock)
    daily = RateLimitInfo(remaining_requests=1_000, limit_requests=14_400, requests_window_s=86_400.0)
    for _ in range(10):
        limiter.on_rate_limit_info(daily)
        clock.now += 2
    assert limiter.limit == 64
    assert limiter.low_on_headroom()  # still ordered after the deployments with room
    per_minute = RateLimitInfo(remaining_requests=10, limit_requests=1_000)
    limiter.on_rate_limit_info(per_minute)
    assert limiter.limit == 32  # a per-minute budget running low still slows it down
