"""routing/stall.py: one timer per attempt bounds each read by its limit and the request's deadline,
and tells its own cancel apart from a client's or the server's (which must propagate)."""

from __future__ import annotations

import asyncio
import time

from provider_gateway.routing.stall import StallWatch, Watchdog


async def read(watch: StallWatch, wait: asyncio.Future[None]) -> str:
    """One read as an attempt makes it: what ended it."""
    watch.reading(time.perf_counter_ns(), asyncio.current_task())
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

    def check(self, now_ns: int) -> int | None:
        due_ns = super().check(now_ns)
        if self.expired:
            self.reader.cancel()
        return due_ns

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


async def test_attempts_sharing_a_watchdog_each_stop_at_their_own_limit() -> None:
    """A router's attempts share one timer: one that joins later with a shorter limit must still be
    stopped at its limit (not when the timer armed for the first would fire), and the longer one
    goes on reading after the shorter one was stopped and left."""
    watchdog = Watchdog()
    loop = asyncio.get_running_loop()
    long = StallWatch(3.0, deadline_s=60, watchdog=watchdog)
    short = StallWatch(0.03, deadline_s=60, watchdog=watchdog)
    slow_event = loop.create_future()
    loop.call_later(1.0, slow_event.set_result, None)
    try:
        long_read = asyncio.ensure_future(read(long, slow_event))
        await asyncio.sleep(0)
        short_read = asyncio.ensure_future(read(short, loop.create_future()))
        done, _ = await asyncio.wait([short_read], timeout=0.8)
        assert done
        assert short_read.result() == "stalled"
        assert not long_read.done()
        assert await long_read == "event"
    finally:
        long.close()
        short.close()


async def test_a_watch_that_left_stops_nothing_and_the_others_still_are_watched() -> None:
    watchdog = Watchdog()
    loop = asyncio.get_running_loop()
    first = StallWatch(0.02, deadline_s=60, watchdog=watchdog)
    event = loop.create_future()
    event.set_result(None)
    assert await read(first, event) == "event"
    first.close()  # the attempt ended: the timer armed for it fires later and finds nobody
    second = StallWatch(0.05, deadline_s=60, watchdog=watchdog)
    try:
        assert await read(second, loop.create_future()) == "stalled"
        task = asyncio.current_task()
        assert task is not None
        assert task.cancelling() == 0
    finally:
        second.close()


async def test_deadlines_of_unary_calls_joining_later_share_the_armed_timer() -> None:
    """Unary calls (no limit but the deadline) started one after the other: each is stopped by its
    own deadline, the first even when a later one is still waiting."""
    watchdog = Watchdog()
    loop = asyncio.get_running_loop()
    watches = [StallWatch(None, deadline_s=0.03 + 0.02 * i, watchdog=watchdog) for i in range(3)]
    try:
        reads = [asyncio.ensure_future(read(w, loop.create_future())) for w in watches]
        assert await asyncio.gather(*reads) == ["deadline"] * 3
    finally:
        for watch in watches:
            watch.close()


async def test_the_shared_timer_keeps_nothing_of_the_request_that_armed_it_alive() -> None:
    """The router's timer outlives the attempt that armed it; a request's context (its caller, its
    budget check in flight...) must not stay in memory with it."""
    import contextvars
    import gc
    import weakref

    class State:
        pass

    held: contextvars.ContextVar[State | None] = contextvars.ContextVar("held", default=None)
    watchdog = Watchdog()

    async def request() -> weakref.ref[State]:
        state = State()
        held.set(state)
        watch = StallWatch(30.0, deadline_s=60, watchdog=watchdog)  # arms the timer 30 s ahead
        event = asyncio.get_running_loop().create_future()
        event.set_result(None)
        assert await read(watch, event) == "event"
        watch.close()
        return weakref.ref(state)

    state = await asyncio.create_task(request(), context=contextvars.copy_context())
    await asyncio.sleep(0)  # the loop lets go of the finished task
    gc.collect()
    assert state() is None
