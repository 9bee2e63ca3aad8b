"""Events in hand together, sent as one message (`StreamOptions.batch_events`).

Each gRPC message costs grpc.aio about 70 us on the gateway's side and as much on the client's,
more than a short answer's whole text. Under load the coalescing relay often takes a stream's rest
in one go (its text, merged, then the finish): with the option those go out as one `batch`
message instead of two or more. Nothing waits to be batched: the relay hands over only what has
already arrived, so a lone event goes out alone and at once, as without the option.

A batch stays within the send limit: events that would take it over start the next message.
"""

from __future__ import annotations

from provider_gateway.domain import GatewayEvent
from provider_gateway.server.convert import StreamMessages
from provider_gateway.v1 import provider_service_pb2 as pb

# An event's own tag and length inside the batch, at most (a length under the send limit).
EVENT_ROOM = 6


def batched(messages: StreamMessages, events: list[GatewayEvent], bound: int) -> list[pb.StreamEvent]:
    """`events` as the messages to send: runs of them that fit `bound` bytes together as batches,
    an event alone as itself. The messages are new (StreamMessages reuses its own)."""
    sent: list[pb.StreamEvent] = []
    batch = pb.StreamEvent()
    held = batch.batch.events
    size = 0
    for event in events:
        message = messages.to_proto(event)
        if message is None:
            continue
        room = message.ByteSize() + EVENT_ROOM
        if held and size + room > bound:
            sent.append(_sent(batch))
            batch = pb.StreamEvent()
            held = batch.batch.events
            size = 0
        held.add().CopyFrom(message)
        size += room
    if held:
        sent.append(_sent(batch))
    return sent


def _sent(batch: pb.StreamEvent) -> pb.StreamEvent:
    """`batch` as it goes out: its one event alone, unwrapped (never a batch of one)."""
    events = batch.batch.events
    return events[0] if len(events) == 1 else batch
