"""The admission gate: a request's budget check is in flight while the request does its own work,
and is awaited once, at the last point before anything is sent upstream.

The server sends a metered call's check (one round trip to the meters) as the call starts and puts
it in `pending`; the request validates, converts and plans while the round trip is under way, and
the retry loop awaits it (`Admission.wait`) before its first attempt, so that no provider sees a request
its check has not admitted. The retry loop waits there after reading its plan's holds (answered in
process: routing/holds_view.py; a round trip overlapping the check's only with `[redis]
holds_refresh_ms = 0` or a deployment's first call) and before anything with an effect: a
deployment's rpm, a capacity slot, an attempt (benchmarks/RESULTS.md measures both places). A refusal raised there is the check's own error (QuotaExceeded): the retry
loop lets it through untouched, before any attempt, so it is never retried, failed over, charged
to an attempt nor held against a breaker or limiter. With no check in flight the gate is open.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar


class Admission:
    """One request's check in flight (a task the server started)."""

    __slots__ = ("check",)

    def __init__(self, check: asyncio.Task[None]) -> None:
        self.check = check

    async def wait(self) -> None:
        """Return once the check admits the request; raise its refusal or failure."""
        if not self.check.done():
            # Shielded: a call cancelled here (the client left, its deadline passed) leaves its
            # check to finish, so the server learns whether a reservation was made and refunds it.
            await asyncio.shield(self.check)
        self.check.result()

    def admitted(self) -> bool:
        """Whether the check has answered and admitted the request (its reservation stands)."""
        return self.check.done() and not self.check.cancelled() and self.check.exception() is None


# The current call's check in flight; set by the server around each metered call.
pending: ContextVar[Admission | None] = ContextVar("pending_admission", default=None)
