"""The event loop the server runs on: asyncio's own, or libuv's (uvloop) under grpc.aio."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

LOOPS = ("asyncio", "uvloop")


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """For `asyncio.run(..., loop_factory=...)`; None: asyncio's default loop."""
    if name == "uvloop":
        try:
            import uvloop  # type: ignore[import-not-found, unused-ignore]  # an optional extra
        except ImportError:
            raise SystemExit(
                "provider-gateway: --loop uvloop needs the uvloop extra: pip install 'provider-gateway-server[uvloop]'"
            ) from None
        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
        return factory
    return None
