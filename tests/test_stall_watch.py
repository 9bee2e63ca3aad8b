"""routing/stall.py: one timer per attempt bounds each read by its limit and the request's deadline,
and tells its own cancel apart from a client's or the server's (which must propagate)."""

from __future__ import annotations

import asyncio
import time

from provider_gateway.routing.stall import StallWatch


async def read(watch: StallWatch, wait: asyncio.Future[None]) -> str:
    """One read as an attempt makes it: what ended it."""
    watch.reading(time.perf_counter_ns())
    try:
        await wait
    except asyncio.CancelledError:
        if watch.stopped_read():
            return "deadline" if watch.by_deadline else "stalled"
        raise
    watch.finished()
    return "event"


async def test_a_read_that_outlives_its_limit_is_stopped_as_a_stall() -> None:
    watch = StallWatch(0.02, deadline_s=60)
    try:
        assert await read(watch, asyncio.get_running_loop().create_future()) == "stalled"
        task = asyncio.current_task()
        assert task is not None
        assert task.cancelling() == 0  # the watch took its cancel back
    finally:
        watch.close()


async def test_the_deadline_bounds_a_read_with_a_longer_limit_and_says_so() -> None:
    watch = StallWatch(60, deadline_s=0.02)
    try:
        assert await read(watch, asyncio.get_running_loop().create_future()) == "deadline"
    finally:
        watch.close()


async def test_reads_within_the_limit_are_never_stopped_however_long_the_attempt() -> None:
    watch = StallWatch(0.25, deadline_s=60)
    loop = asyncio.get_running_loop()
    try:
        for _ in range(30):  # 0.6 s in all, each read 20 ms: the timer re-arms for the read in progress
            event = loop.create_future()
            loop.call_later(0.02, event.set_result, None)
            assert await read(watch, event) == "event"
    finally:
        watch.close()


async def test_a_shorter_limit_applies_to_the_next_read_at_once() -> None:
    watch = StallWatch(60, deadline_s=60)  # the time to first token...
    loop = asyncio.get_running_loop()
    try:
        first = loop.create_future()
        first.set_result(None)
        assert await read(watch, first) == "event"
        watch.limit(0.02)  # ...then the idle limit, shorter than the timer armed for the first
        assert await read(watch, loop.create_future()) == "stalled"
    finally:
        watch.close()


class ClientCancelsAsTheLimitPasses(StallWatch):
    """The race: the client's cancel lands in the same loop turn as the watch's own."""

    def _check(self) -> None:
        super()._check()
        if self.expired:
            self.reader.cancel()

    reader: asyncio.Task[str]


async def test_a_cancel_from_elsewhere_propagates_even_when_the_limit_passed_too() -> None:
    watch = ClientCancelsAsTheLimitPasses(0.02, deadline_s=60)
    watch.reader = asyncio.ensure_future(read(watch, asyncio.get_running_loop().create_future()))
    try:
        await watch.reader
    except asyncio.CancelledError:
        pass
    else:
        raise AssertionError("the client's cancel was swallowed as a stall")
    finally:
        watch.close()


async def test_a_cancel_from_elsewhere_within_the_limit_propagates() -> None:
    watch = StallWatch(60, deadline_s=60)
    reader = asyncio.ensure_future(read(watch, asyncio.get_running_loop().create_future()))
    await asyncio.sleep(0)
    reader.cancel()
    try:
        await reader
    except asyncio.CancelledError:
        pass
    else:
        raise AssertionError("the cancel did not propagate")
    finally:
        watch.close()
