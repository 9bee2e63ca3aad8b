"""A kept answer sent again: its messages as stored, its Finish saying that nothing was spent."""

from __future__ import annotations

from provider_gateway.v1 import provider_service_pb2 as pb

# What a hit cost: nothing, known (as a request that consumed nothing reports it).
FREE = pb.Cost(amount_micros=0, currency="USD", known=True, usage_source="none")


def served_again(finish: pb.Finish, total_us: int, first_us: int = 0, upstream_us: int = 0) -> None:
    """The stored Finish rewritten for this call: no upstream attempt was made, nothing was spent,
    and the timing is this call's: all of it the gateway's own, but `upstream_us`, the wait for an
    identical call's answer. Usage stays the stored answer's."""
    finish.ClearField("attempts")
    finish.cost.CopyFrom(FREE)
    finish.timing.CopyFrom(
        pb.Timing(
            gateway_overhead_us=total_us - upstream_us,
            total_us=total_us,
            time_to_first_token_us=first_us,
            upstream_us=upstream_us,
        )
    )


def keepable(finish: pb.Finish) -> bool:
    """A complete answer worth serving again: a content filter's stop is not (asked again, the
    provider may answer, and a refusal should not outlive its moment)."""
    return finish.reason != pb.FINISH_REASON_CONTENT_FILTER
