"""The in-process view of the shared holds (routing/holds_view.py) on a fake clock, with a fake
Redis read: holds count down between reads, one background read at a time once the view is older
than the interval, a failed read fails no call, the view stays bounded. Through served gateways
on a real Redis and Valkey: tests/test_shared_holds.py."""

from __future__ import annotations

import asyncio

import pytest

from provider_gateway.routing.holds_view import HoldsView


class FakeRedis:
    """Answers each read with the holds it is given, counting reads; `gate` holds a read back."""

    def __init__(self) -> None:
        self.held: dict[str, float] = {}
        self.reads: list[list[str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.down = False

    async def read(self, keys: list[str]) -> list[float] | None:
        self.reads.append(keys)
        await self.gate.wait()
        return None if self.down else [self.held.get(key, 0.0) for key in keys]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def settle() -> None:
    for _ in range(5):  # let a background read run to its end
        await asyncio.sleep(0)


async def test_a_key_is_read_once_then_counts_down_until_the_view_is_read_again() -> None:
    redis, clock = FakeRedis(), Clock()
    view = HoldsView(redis.read, clock, refresh_s=0.1)
    redis.held["d"] = 30.0
    assert await view.remaining(["d", "e"]) == [30.0, 0.0]  # never read: read before answering
    clock.now += 0.05
    assert await view.remaining(["d", "e"]) == pytest.approx([29.95, 0.0])  # from the view: no read
    assert len(redis.reads) == 1
    redis.held = {"e": 10.0}  # another replica: d released, e ejected
    clock.now += 0.05
    assert await view.remaining(["d", "e"]) == pytest.approx([29.9, 0.0])  # stale answer; a read is sent
    await settle()
    assert await view.remaining(["d", "e"]) == [0.0, 10.0]
    assert redis.reads == [["d", "e"], ["d", "e"]]


async def test_one_background_read_at_a_time_and_a_failed_one_fails_no_call() -> None:
    redis, clock = FakeRedis(), Clock()
    view = HoldsView(redis.read, clock, refresh_s=0.1)
    assert await view.remaining(["d"]) == [0.0]
    redis.gate.clear()  # Redis stops answering
    for _ in range(20):
        clock.now += 0.1
        assert await view.remaining(["d"]) == [0.0]  # answered at once, from the view
        await asyncio.sleep(0)  # a read started in the background is under way
    assert len(redis.reads) == 2  # the first read, then one background read in flight
    redis.down = True
    redis.gate.set()
    await settle()
    clock.now += 0.1
    assert await view.remaining(["d"]) == [0.0]
    await settle()
    assert len(redis.reads) == 3  # the next read, once the failed one ended


async def test_a_background_read_that_ends_at_once_leaves_the_next_one_due() -> None:
    """On the gateway's loop (tasks start eagerly) a background read with nothing to wait for ends
    inside the call that started it: the reads of the later intervals are still sent."""
    redis, clock = FakeRedis(), Clock()
    view = HoldsView(redis.read, clock, refresh_s=0.1)
    await view.remaining(["d"])
    for _ in range(3):
        clock.now += 0.1
        await view.remaining(["d"])
        await settle()
    assert len(redis.reads) == 4


async def test_holds_refresh_0_reads_on_every_call() -> None:
    redis, clock = FakeRedis(), Clock()
    view = HoldsView(redis.read, clock, refresh_s=0.0)
    for held in (0.0, 5.0, 0.0):
        redis.held["d"] = held
        assert await view.remaining(["d"]) == [held]
    assert len(redis.reads) == 3


async def test_the_view_keeps_at_most_its_bound_of_keys() -> None:
    redis, clock = FakeRedis(), Clock()
    view = HoldsView(redis.read, clock, refresh_s=0.1, max_keys=4)
    for name in "abcdef":
        await view.remaining([name])
    clock.now += 1
    await view.remaining(["f"])
    await settle()
    assert redis.reads[-1] == ["c", "d", "e", "f"]  # the oldest two were dropped
    await view.remaining(["a"])  # read again, before answering, when asked for
    assert redis.reads[-1] == ["a"]


async def test_a_forgotten_view_is_read_again_before_answering() -> None:
    redis, clock = FakeRedis(), Clock()
    view = HoldsView(redis.read, clock, refresh_s=60)
    assert await view.remaining(["d"]) == [0.0]
    redis.held["d"] = 7.0
    view.forget()  # a Redis outage began: what the view holds may be stale once it is back
    assert await view.remaining(["d"]) == [7.0]
    assert len(redis.reads) == 2
