"""Events in hand together, sent as one message (`StreamOptions.batch_events`).

Each gRPC message costs grpc.aio about 70 us on the gateway's side and as much on the client's,
more than a short answer's whole text. Under load the coalescing relay often takes a stream's rest
in one go (its text, merged, then the finish): with the option those go out as one `batch` message
instead of two or more. Nothing waits to be batched: the relay hands over only what has already
arrived, so a lone event goes out alone and at once, as without the option.

A batch holds at most BATCH_BYTES: batching pays for small events, and a client that never raised
gRPC's default receive limit (4 MiB: grpcurl, grpc-js) must get no message larger than it would
without the option. An event over it goes out alone, as it would anyway.
"""

from __future__ import annotations

from collections.abc import Iterable

from provider_gateway.domain import GatewayEvent
from provider_gateway.server.convert import StreamMessages
from provider_gateway.v1 import provider_service_pb2 as pb

BATCH_BYTES = 64 * 1024
# An event's own tag and length inside the batch, at most (a length under the send limit).
EVENT_ROOM = 6


class Batches:
    """Messages packed into batches of at most `bound` bytes, each event copied in as it comes
    (StreamMessages reuses its own message objects)."""

    __slots__ = ("_batch", "_bound", "_held", "_size", "sent")

    def __init__(self, bound: int) -> None:
        self._bound = min(bound, BATCH_BYTES)
        self.sent: list[pb.StreamEvent] = []
        self._batch = pb.StreamEvent()
        self._held = self._batch.batch.events
        self._size = 0

    def add(self, message: pb.StreamEvent) -> None:
        room = message.ByteSize() + EVENT_ROOM
        if self._held and self._size + room > self._bound:
            self._close()
        self._held.add().CopyFrom(message)
        self._size += room

    def done(self) -> list[pb.StreamEvent]:
        """The messages to send, the batch in progress closed."""
        if self._held:
            self._close()
        return self.sent

    def _close(self) -> None:
        events = self._held  # one event goes alone, unwrapped: never a batch of one
        self.sent.append(events[0] if len(events) == 1 else self._batch)
        self._batch = pb.StreamEvent()
        self._held = self._batch.batch.events
        self._size = 0


def batched(
    messages: StreamMessages, events: Iterable[GatewayEvent], bound: int
) -> tuple[list[pb.StreamEvent], Exception | None]:
    """`events` as the messages to send, runs of them batched within `bound` bytes; and the error
    that stopped their conversion, if one did, to be raised after what came before it is sent."""
    batches = Batches(bound)
    try:
        for event in events:
            if (message := messages.to_proto(event)) is not None:
                batches.add(message)
    except Exception as exc:
        return batches.done(), exc
    return batches.done(), None
