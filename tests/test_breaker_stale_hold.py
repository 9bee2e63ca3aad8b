"""A breaker `hold` (another replica's ejection being probed here, routing/breaker.py) must not
outlive that ejection for requests that are not early probes: once the other replica lifts it,
ordinary requests run with a ticket of their own, so their failures count and trip this replica's
breaker. (Before: they ran without a ticket while one probe was in flight, and ten failures in a
row left the breaker closed.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from routing_support import chat, make_router, mock, run_stream, until

from provider_gateway.errors import GatewayError
from provider_gateway.routing.breaker import BreakerSettings, BreakerState, CircuitBreaker
from provider_gateway.routing.shared_state import MemoryCounterStore

pytestmark = pytest.mark.timeout(60)

ROUTE = """
[providers.a]
kind = "mock"
[providers.a.models.m]
fault = "error_before_first_token"
[routing]
retries = 0
[routing.breaker]
consecutive_failures = 5
cooldown_s = 30
"""


def hold_the_first_stream(provider: Any) -> tuple[asyncio.Event, list[int]]:
    """The provider's first stream waits for the returned event (the probe, in flight); the rest
    run. The list counts the streams opened."""
    gate = asyncio.Event()
    inner = provider.chat_stream
    opened = [0]

    async def gated(request: Any) -> AsyncIterator[Any]:
        opened[0] += 1
        if opened[0] == 1:
            await gate.wait()
        async for event in inner(request):
            yield event

    provider.chat_stream = gated
    return gate, opened


async def fails(router: Any) -> bool:
    try:
        await run_stream(router, chat("a/m"))
    except GatewayError:
        return True
    return False


async def test_failures_after_another_replica_lifted_its_ejection_trip_the_breaker_here() -> None:
    store = MemoryCounterStore()
    router = make_router(ROUTE, store=store)
    gate, opened = hold_the_first_stream(mock(router, "a"))
    await store.eject("a/m", 30)  # another replica's breaker opened
    probe = asyncio.ensure_future(fails(router))  # this replica's early probe, held in flight
    await until(lambda: opened[0] == 1)
    await store.lift("a/m")  # the other replica's own probe succeeded: a/m is ordinary again

    for _ in range(10):  # requests sent to a deployment failing again
        assert await fails(router)
    assert router.breaker_state("a") == "open"  # their failures counted here
    assert opened[0] == 7  # the probe, five failures, then the open breaker's one early probe

    gate.set()
    await probe
    await router.aclose()


def test_an_ordinary_acquire_ends_a_hold_and_its_failures_count() -> None:
    now = [100.0]
    breaker = CircuitBreaker(BreakerSettings(consecutive_failures=5, cooldown_s=30.0), clock=lambda: now[0])
    breaker.hold(now[0] + 30.0)
    probe = breaker.acquire(early=True)
    assert probe is not None
    assert probe.probe
    assert breaker.acquire(early=True) is None  # a second early probe waits for the first
    ordinary = breaker.acquire()  # picked as an ordinary request: the store no longer reports the ejection
    assert ordinary is not None
    assert not breaker.held  # the hold ended
    breaker.record_failure(ordinary)
    for _ in range(4):
        breaker.record_failure(breaker.acquire())
    assert breaker.state is BreakerState.OPEN
