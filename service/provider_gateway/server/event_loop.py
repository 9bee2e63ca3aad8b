"""The event loop the server runs on: asyncio's own, or libuv's (uvloop) under grpc.aio."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

LOOPS = ("asyncio", "uvloop")


def eager_asyncio_loop() -> asyncio.AbstractEventLoop:
    """asyncio's loop, with each new task started at once, in its creator's step, up to its first
    wait (Python 3.12's eager task factory) instead of a loop iteration later. grpc.aio makes three
    tasks per call and the gateway one per stream: at 50 streams, 5-10% less CPU per stream and
    4-15% more streams/s, and 0.1-0.2 ms off the time to first token at one client
    (benchmarks/RESULTS.md, 2026-12-07). The suite's event loop is made here too (tests/conftest.py).

    Python 3.12.0-3.12.4 crash on `Task.get_coro()` of a task that finished eagerly (CPython
    gh-122332); nothing in the gateway, asyncio, grpc or anyio asks a finished task for it."""
    loop = asyncio.new_event_loop()
    loop.set_task_factory(asyncio.eager_task_factory)
    return loop


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """For `asyncio.run(..., loop_factory=...)`."""
    if name == "uvloop":
        try:
            import uvloop  # type: ignore[import-not-found, unused-ignore]  # an optional extra
        except ImportError:
            raise SystemExit(
                "provider-gateway: --loop uvloop needs the uvloop extra: pip install 'provider-gateway-server[uvloop]'"
            ) from None
        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
        return factory
    return eager_asyncio_loop
