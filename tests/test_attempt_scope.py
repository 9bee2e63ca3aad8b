"""The attempt in progress as the provider's code sees it (routing/attempt.py): one context variable
holds the attempt's identity and both of its sinks. Reports made inside a scope reach that attempt's
sinks, whatever else runs at the same time, and nothing is reported once the scope is over."""

from __future__ import annotations

import asyncio

from provider_gateway.domain import Usage
from provider_gateway.http.rate_limits import RateLimitInfo, report_rate_limit
from provider_gateway.providers.reported_usage import Heard, report_partial_usage
from provider_gateway.routing.attempt import CURRENT_ATTEMPT, AttemptInfo, AttemptScope


class Sinks:
    """What one attempt's sinks were told."""

    def __init__(self) -> None:
        self.limits: list[RateLimitInfo] = []
        self.usage: list[Heard] = []

    def scope(self, number: int) -> AttemptScope:
        return AttemptScope(
            AttemptInfo(number, f"g/p{number}/m", "closed", self.limits.append, self.usage.append)
        )


def report(n: int) -> None:
    report_rate_limit(RateLimitInfo(remaining_requests=n))
    report_partial_usage(Usage(input_tokens=n))


def test_reports_reach_the_innermost_scope_then_the_outer_one_then_nothing() -> None:
    outer, inner = Sinks(), Sinks()
    first, second = outer.scope(1), inner.scope(2)
    first.enter()
    report(1)
    second.enter()
    assert CURRENT_ATTEMPT.get() == AttemptInfo(2, "g/p2/m", "closed")
    report(2)
    second.exit()
    report(3)
    first.exit()
    report(4)  # outside every attempt: a no-op
    assert CURRENT_ATTEMPT.get() is None
    assert [i.remaining_requests for i in outer.limits] == [1, 3]
    assert [u.input_tokens for u in outer.usage if isinstance(u, Usage)] == [1, 3]
    assert [i.remaining_requests for i in inner.limits] == [2]
    assert [u.input_tokens for u in inner.usage if isinstance(u, Usage)] == [2]


async def test_concurrent_attempts_each_hear_their_own_provider() -> None:
    heard = [Sinks() for _ in range(3)]

    async def attempt(n: int) -> None:
        scope = heard[n].scope(n + 1)
        scope.enter()
        try:
            for _ in range(3):
                report(n)
                await asyncio.sleep(0)  # the others report in between
        finally:
            scope.exit()
        report(99)  # after its scope: reaches no one

    await asyncio.gather(*(attempt(n) for n in range(3)))
    for n, sinks in enumerate(heard):
        assert [i.remaining_requests for i in sinks.limits] == [n] * 3
        assert [u.input_tokens for u in sinks.usage if isinstance(u, Usage)] == [n] * 3


async def test_an_attempt_read_on_in_another_task_reports_there_and_leaves_nothing_set() -> None:
    sinks = Sinks()
    scope = sinks.scope(1)
    scope.enter()
    report(1)

    async def elsewhere() -> AttemptInfo | None:
        scope.enter()  # as the router does when another task resumes the stream
        report(2)
        return CURRENT_ATTEMPT.get()

    assert await asyncio.ensure_future(elsewhere()) == AttemptInfo(1, "g/p1/m", "closed")
    scope.exit()  # the other task's token is of a context this one is not in: skipped
    report(3)
    assert CURRENT_ATTEMPT.get() is None
    assert [i.remaining_requests for i in sinks.limits] == [1, 2]
    assert len(sinks.usage) == 2
