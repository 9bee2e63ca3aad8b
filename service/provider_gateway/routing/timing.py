"""The timestamps of one request, across its attempts, and the Timing they add up to."""

from __future__ import annotations

import time

from provider_gateway.domain import Timing


def us(ns: int) -> int:
    return ns // 1000


class RequestClock:
    """Timestamps of one request, from its arrival at the gateway (perf_counter_ns).

    `deadline` is the client's deadline on the time.monotonic() scale, or None.
    """

    __slots__ = ("deadline", "downstream_ns", "first_token_ns", "received_ns", "upstream_ns")

    def __init__(self, received_ns: int | None = None, deadline: float | None = None) -> None:
        self.received_ns = received_ns if received_ns is not None else time.perf_counter_ns()
        self.upstream_ns = 0
        # Time a stream spent handing events to the client (gRPC send, flow control): not ours either.
        self.downstream_ns = 0
        self.first_token_ns = 0
        self.deadline = deadline

    def timing(self) -> Timing:
        total = time.perf_counter_ns() - self.received_ns
        ttft = self.first_token_ns - self.received_ns if self.first_token_ns else 0
        # (// 1000 as `us` does, written out: four calls fewer on every request; the fields in
        # order, positionally: a keyword costs about 0.6k instructions more per field)
        return Timing(
            max(total - self.upstream_ns - self.downstream_ns, 0) // 1000,  # gateway_overhead_us
            ttft // 1000,  # time_to_first_token_us
            total // 1000,  # total_us
            self.upstream_ns // 1000,  # upstream_us
        )
