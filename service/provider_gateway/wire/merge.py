"""Merging runs of consecutive deltas: several tokens that are already in hand travel as one event.

Used where events are in hand together (the frames of one upstream read, the events queued behind
a gRPC write), never to wait for more: a lone token is passed on at once. Accumulated text,
reasoning and tool-call arguments are the same merged or not.
"""

from __future__ import annotations

from collections.abc import Iterable

from provider_gateway.domain import GatewayEvent, ReasoningDelta, StreamEvent, TextDelta, ToolCallDelta


# E: a provider's events, or the router's (which add Finish); the list keeps the type it was given.
def merge_deltas[E: (StreamEvent, GatewayEvent)](events: Iterable[E]) -> list[E]:
    """`events` with each run of mergeable deltas joined into one; order and content kept: text
    with text, reasoning of one block (a delta carrying a signature, redaction or id closes its
    block), and arguments of the same tool call."""
    merged: list[E] = []
    for event in events:
        last = merged[-1] if merged else None
        if isinstance(event, TextDelta) and isinstance(last, TextDelta):
            merged[-1] = TextDelta(last.text + event.text)
        elif isinstance(event, ReasoningDelta) and isinstance(last, ReasoningDelta) and not last.closes_block:
            # The later delta closes (or continues) the block the earlier text belongs to.
            merged[-1] = ReasoningDelta(last.text + event.text, event.signature, event.redacted, event.id)
        elif (
            isinstance(event, ToolCallDelta) and isinstance(last, ToolCallDelta) and last.index == event.index
        ):
            merged[-1] = ToolCallDelta(event.index, last.arguments_delta + event.arguments_delta)
        else:
            merged.append(event)
    return merged
