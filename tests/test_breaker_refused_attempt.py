"""An attempt the breaker refuses after the pick (routing/verdicts.py `breaker_refused`, raised
before anything is sent; breaker.py's invariant says it cannot happen) ends the request at once.
It is no attempt, so the retry loop's count of attempts would never end a loop that retried it: a
request with `retries = 0` re-picked the refused deployment, sleeping its backoff, until its
deadline or `max_retry_wait_s`."""

from __future__ import annotations

from typing import Any

import pytest
from routing_support import FakeClock, chat, make_router

from provider_gateway.errors import GatewayError
from provider_gateway.routing.timing import RequestClock

pytestmark = pytest.mark.timeout(60)

ROUTE = """
[providers.a]
kind = "mock"
[providers.a.models.m]
tokens = 3
[routing]
retries = 0
"""


def refusing(router: Any) -> list[bool]:
    """Make a/m's breaker refuse every ticket (as `acquire` would if the pick/acquire invariant ever
    broke); the list records each acquire."""
    deployment = router.plan("a/m").deployments[0]
    asked: list[bool] = []

    def acquire(*, early: bool = False) -> None:
        asked.append(early)

    deployment.breaker.acquire = acquire
    return asked


async def test_a_stream_with_no_retries_tries_a_refused_deployment_once() -> None:
    clock = FakeClock()
    router = make_router(ROUTE, clock=clock)
    asked = refusing(router)
    with pytest.raises(GatewayError, match="circuit breaker refused"):
        async for _ in router.chat_stream(chat("a/m"), RequestClock()):
            pass
    # max_attempts is 1: one refusal should end the request.
    assert len(asked) == 1, f"{len(asked)} refused attempts, {clock.now - 1000.0:.1f} s slept"


async def test_a_unary_call_with_no_retries_tries_a_refused_deployment_once() -> None:
    clock = FakeClock()
    router = make_router(ROUTE, clock=clock)
    asked = refusing(router)
    with pytest.raises(GatewayError, match="circuit breaker refused"):
        await router.chat(chat("a/m"), RequestClock())
    assert len(asked) == 1, f"{len(asked)} refused attempts, {clock.now - 1000.0:.1f} s slept"
