"""The caller's gRPC deadline, visible to upstream calls without threading it through every adapter.

The servicer sets it per request (a ContextVar, so concurrent requests never see each other's);
`http.client` caps every upstream timeout by what is left, so a request with 2 s left never waits
30 s for a first byte.
"""

from __future__ import annotations

import time
from contextvars import ContextVar, Token

_deadline: ContextVar[float | None] = ContextVar("provider_gateway_upstream_deadline", default=None)


def set_deadline(seconds_remaining: float | None) -> Token[float | None]:
    """Record the caller's remaining time (None: no deadline); returns a token for `reset`."""
    value = None if seconds_remaining is None else time.monotonic() + max(seconds_remaining, 0.0)
    return _deadline.set(value)


def reset(token: Token[float | None]) -> None:
    _deadline.reset(token)


def absolute() -> float | None:
    """The deadline as a `time.monotonic()` instant (None: no deadline)."""
    return _deadline.get()


def remaining() -> float | None:
    deadline = _deadline.get()
    return None if deadline is None else max(deadline - time.monotonic(), 0.0)


def cap(timeout: float | None) -> tuple[float | None, bool]:
    """The timeout to use now and whether the caller's deadline (not the setting) decided it."""
    left = remaining()
    if left is None:
        return timeout, False
    if timeout is None or left < timeout:
        return left, True
    return timeout, False
