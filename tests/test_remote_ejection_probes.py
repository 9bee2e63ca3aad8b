"""A deployment ejected by another replica's breaker (the shared store holds it) while this
replica's breaker is closed: its early probes are limited as an open breaker's are, at most
`half_open_probes` at a time and one a second after a failed one, and a probe's success ends the
ejection. (The store here is the in-process one both routers of a test would share: an ejection
written into it is what another replica's breaker writes into Redis.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from routing_support import FakeClock, chat, make_router, mock, run_stream, until

from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.routing.shared_state import MemoryCounterStore

pytestmark = pytest.mark.timeout(60)

ROUTE = '[providers.a]\nkind = "mock"\n[providers.a.models.m]\n{model}\n[routing]\nretries = 0\n{routing}'


class GatedUpstream:
    """Wraps a mock's streams: each waits for `gate`; counts the streams in flight and their peak."""

    def __init__(self, provider: Any) -> None:
        self.gate = asyncio.Event()
        self.in_flight = self.peak = self.started = 0
        inner = provider.chat_stream

        async def gated(request: Any) -> AsyncIterator[Any]:
            self.started += 1
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            try:
                await self.gate.wait()
                async for event in inner(request):
                    yield event
            finally:
                self.in_flight -= 1

        provider.chat_stream = gated


async def outcome(router: Any) -> str:
    try:
        await run_stream(router, chat("a/m"))
    except GatewayError as exc:
        return exc.message
    return "answered"


async def test_fifty_requests_send_at_most_half_open_probes_to_a_deployment_ejected_elsewhere() -> None:
    store = MemoryCounterStore()
    routing = "[routing.breaker]\nhalf_open_probes = 2\ncooldown_s = 60"
    router = make_router(ROUTE.format(model="tokens = 1", routing=routing), store=store)
    upstream = GatedUpstream(mock(router, "a"))
    await store.eject("a/m", 60)  # another replica's breaker opened: every replica skips a/m
    assert router.breaker_state("a") == "closed"  # the premise: closed here

    calls = [asyncio.ensure_future(outcome(router)) for _ in range(50)]
    await until(lambda: sum(c.done() for c in calls) + upstream.in_flight == 50)
    assert upstream.peak == 2  # the probes; before, all 50 went to the deployment at once
    refused = [c.result() for c in calls if c.done()]
    assert len(refused) == 48
    assert all("a/m is being probed" in message for message in refused), refused[:3]

    upstream.gate.set()  # the deployment answers: the probes succeed
    answers = await asyncio.gather(*calls)
    assert answers.count("answered") == 2
    await until(lambda: store.ejections_now(["a/m"]) == [0.0])  # their success lifted the ejection
    again = await asyncio.gather(*(outcome(router) for _ in range(10)))
    assert again == ["answered"] * 10  # no longer a probe at a time
    assert upstream.started == 12
    await router.aclose()


async def test_a_failed_probe_of_an_ejection_elsewhere_holds_the_next_back_a_second() -> None:
    """A deployment that is really down, ejected by another replica: this replica sends it one
    request, then one a second later, not each of 20 requests in 2 s."""
    clock = FakeClock()
    store = MemoryCounterStore(clock)
    routing = "ttft_timeout_s = 120\n[routing.breaker]\nconsecutive_failures = 100\ncooldown_s = 30"
    router = make_router(
        ROUTE.format(model='fault = "error_before_first_token"', routing=routing), clock=clock, store=store
    )
    a = mock(router, "a")
    await store.eject("a/m", 30)
    refusals = []
    for _ in range(20):
        clock.now += 0.1
        with pytest.raises(GatewayError) as caught:
            await run_stream(router, chat("a/m"))
        refusals.append(caught.value)
    assert a.stats.started == 2  # at 0.1 s and at 1.1 s
    held_back = refusals[5]  # at 0.6 s: the first probe failed at 0.1 s
    assert held_back.kind is ErrorKind.UNAVAILABLE
    assert "another replica's circuit breaker ejected it" in held_back.message
    assert "the next probe goes in 0.5 s" in held_back.message
    assert held_back.retry_after == pytest.approx(0.5)
    assert router.breaker_state("a") == "closed"  # two failures do not open it here
    await router.aclose()
