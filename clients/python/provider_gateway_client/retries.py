"""When to try a failed call again, and how long to wait first.

Only what cannot repeat output is retried: UNAVAILABLE (nothing was served), RESOURCE_EXHAUSTED
(a rate limit, after the delay it asked for) and a CANCELLED this process did not ask for (gRPC
ends a call that reaches a server just as it stops taking calls so, before any of it ran:
grpc/grpc#41785; or a provider cancelled the request). A stream is retried only before its first event;
once output arrived, a retry could show it twice; nor what the gateway said no retry can help
(`do_not_retry`: a provider said so, and no other could take the request). The call's `timeout` is
the budget of all its attempts together: a wait that would outlast it is not taken, the error is
raised instead.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import grpc

from provider_gateway_client.errors import GatewayError

RETRYABLE = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.CANCELLED}
)
# gRPC's wording (the sync API) for a call this process cancelled, or ended by closing the client
# (asyncio raises CancelledError instead): never retried.
LOCAL_CANCELS = ("Locally cancelled", "Channel closed")
# gRPC core's wording when a message passes the size limit, which it reports as RESOURCE_EXHAUSTED.
TOO_LARGE = "larger than max"
DEFAULT_MAX_RETRIES = 2
INITIAL_BACKOFF_S = 0.5
MAX_BACKOFF_S = 8.0
# A rate limit asking for longer than this is the caller's decision, not a silent wait.
MAX_RETRY_AFTER_S = 60.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = DEFAULT_MAX_RETRIES
    initial_backoff_s: float = INITIAL_BACKOFF_S
    max_backoff_s: float = MAX_BACKOFF_S

    def backoff(self, retry: int) -> float:
        """Exponential from `initial_backoff_s`, capped, with jitter so clients don't retry in step."""
        base = min(self.max_backoff_s, self.initial_backoff_s * 2**retry)
        return base * random.uniform(0.5, 1.0)

    def wait_before(self, retry: int, error: GatewayError, deadline: float | None) -> float | None:
        """Seconds to wait before retry number `retry` (0 first), or None to raise `error` now."""
        if retry >= self.max_retries or error.code not in RETRYABLE or error.do_not_retry:
            return None
        if error.code is grpc.StatusCode.RESOURCE_EXHAUSTED and TOO_LARGE in error.details:
            return None  # gRPC's own "message larger than max": the same request fails the same way
        if error.code is grpc.StatusCode.CANCELLED and any(w in error.details for w in LOCAL_CANCELS):
            return None
        if error.retry_after is not None:
            if error.retry_after > MAX_RETRY_AFTER_S:
                return None
            # The server's delay is a floor; a little jitter spreads the clients it held at once.
            wait = error.retry_after + random.uniform(0, 0.1 * error.retry_after)
        else:
            wait = self.backoff(retry)
        if deadline is not None and time.monotonic() + wait >= deadline:
            return None
        return wait


def deadline_of(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())
