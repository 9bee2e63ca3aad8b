"""Small helpers over the typed `StreamEvent` messages."""

from __future__ import annotations

from collections.abc import Iterable

from provider_gateway.v1 import provider_service_pb2 as pb


def text_of(events: Iterable[pb.StreamEvent]) -> str:
    """The answer text of a list of stream events."""
    return "".join(e.text_delta.text for e in events if e.WhichOneof("event") == "text_delta")
