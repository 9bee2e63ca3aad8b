"""The retry loop's plain-call fast paths against its general ones: for every state of a plan's
deployments (breakers, concurrency, backoff, holds, attempts spent), `next_now` hands out the
deployment the general `next` would, or leaves the decision to it; and the memory store's
`ejections_now` answers what `ejections` does."""

from __future__ import annotations

import random

import pytest
from routing_support import FakeClock, chat, make_router

from provider_gateway.errors import GatewayError
from provider_gateway.routing.shared_state import MemoryCounterStore
from provider_gateway.routing.timing import RequestClock

GROUP = """
[providers.a]
kind = "mock"
[providers.a.models.m]
tokens = 1
[providers.b]
kind = "mock"
[providers.b.models.m]
tokens = 1
[providers.c]
kind = "mock"
[providers.c.models.m]
tokens = 1
[routing]
retries = 2
[groups.g]
deployments = [
  { provider = "a", model = "m", weight = 1 },
  { provider = "b", model = "m", weight = 1, rpm = {rpm} },
  { provider = "c", model = "m", weight = 0 },
]
"""


def _scramble(rng: random.Random, tries: object, deployments: list, clock: FakeClock) -> None:
    """Put the plan's deployments in a random state the retry loop must read."""
    for deployment in deployments:
        roll = rng.random()
        if roll < 0.25:  # open breaker, maybe cooled down into half-open
            for _ in range(deployment.breaker.settings.consecutive_failures):
                deployment.breaker.record_failure(deployment.breaker.acquire())
            clock.now += rng.choice([0.0, deployment.breaker.settings.cooldown_s])
        elif roll < 0.45:  # every concurrency slot taken
            deployment.limiter.in_flight = int(deployment.limiter.limit)
        elif roll < 0.65:  # backing off after a failure
            tries.ready_at[deployment.key] = clock.now + rng.choice([0.5, 30.0])  # type: ignore[attr-defined]
        deployment.ewma_ttft_s = rng.choice([0.0, 0.1, 1000.0])
    spent = rng.randrange(0, 4)
    tries.attempts.extend([None] * spent)  # type: ignore[attr-defined]


def _fast(tries: object) -> tuple[str, object]:
    try:
        deployment = tries.next_now()  # type: ignore[attr-defined]
    except GatewayError as exc:
        return "error", (exc.kind, exc.message)
    return "deployment", deployment


async def _general(tries: object) -> tuple[str, object]:
    try:
        deployment = await tries.next()  # type: ignore[attr-defined]
    except GatewayError as exc:
        return "error", (exc.kind, exc.message)
    return "deployment", deployment


@pytest.mark.parametrize("rpm", [0, 5])
async def test_next_now_hands_out_what_next_would_or_leaves_it_to_next(rpm: int) -> None:
    rng = random.Random(15 + rpm)
    decided = 0
    for _ in range(300):
        clock = FakeClock()
        router = make_router(GROUP.replace("{rpm}", str(rpm)), clock=clock, seed=rng.randrange(1000))
        plan = router.plan("g")
        tries = router.retry._begin(plan, chat("g"), RequestClock(deadline=clock.now + 60))
        assert tries.ready() is None  # nothing held, no budget check in flight: nothing to await
        _scramble(rng, tries, plan.deployments, clock)
        fast = _fast(tries)
        if fast == ("deployment", None):
            continue  # the general path decides: waits, meters or is spent
        decided += 1
        if fast[0] == "deployment":
            assert fast[1].spec.rpm == 0  # type: ignore[attr-defined]  # a metered one asks the store
        # the same deployment, or the same refusal
        assert await _general(tries) == fast
        await router.aclose()
    assert decided > 50  # the fast path decided often (a deployment or a refusal), as the general one


async def test_the_memory_store_answers_ejections_now_as_it_does_when_awaited() -> None:
    rng = random.Random(7)
    clock = FakeClock()
    store = MemoryCounterStore(clock)
    keys = ["a", "b", "c", "a#rate-limited"]
    for _ in range(500):
        if rng.random() < 0.3:
            await store.eject(rng.choice(keys), rng.choice([0.5, 2.0, 10.0]))
        clock.now += rng.choice([0.0, 0.3, 1.0, 5.0])
        asked = rng.sample(keys, rng.randrange(1, len(keys) + 1))
        assert store.ejections_now(asked) == await store.ejections(asked)
