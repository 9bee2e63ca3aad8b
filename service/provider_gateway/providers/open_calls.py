"""Every started tool call ends, and says whether its arguments are whole.

Vendors end a call their own way (a block stop, the finish, a whole call at once), and a stream
cut by max_tokens may end none. The router passes every stream through `OpenCalls`, and
`ResponseBuilder` every unary answer, so no provider can leave a client with a started call and no
end, or with half-arguments that look like a finished call.
"""

from __future__ import annotations

import dataclasses

import orjson

from provider_gateway.domain import StreamEvent, ToolCall, ToolCallDelta, ToolCallEnd, ToolCallStart
from provider_gateway.wire import json_text


class OpenCalls:
    """Watches a stream's tool-call events: `see` each, `close` at its end."""

    __slots__ = ("_open",)

    def __init__(self) -> None:
        self._open: dict[int, tuple[ToolCallStart, list[str]]] = {}

    def see(self, event: StreamEvent) -> StreamEvent:
        """The event, with an end's call marked incomplete when its arguments are not JSON."""
        if isinstance(event, ToolCallStart):
            self._open[event.index] = (event, [])
        elif isinstance(event, ToolCallDelta):
            if (pending := self._open.get(event.index)) is not None:
                pending[1].append(event.arguments_delta)
        elif isinstance(event, ToolCallEnd):
            self._open.pop(event.index, None)
            if (call := ended_call(event.call)) is not event.call:
                return ToolCallEnd(event.index, call)
        return event

    def close(self) -> list[ToolCallEnd]:
        """Ends for the calls the stream started and never ended: what arrived, incomplete."""
        ends = [
            ToolCallEnd(index, ToolCall(start.id, start.name, "".join(pieces), incomplete=True))
            for index, (start, pieces) in sorted(self._open.items())
        ]
        self._open.clear()
        return ends


def ended_call(call: ToolCall) -> ToolCall:
    """An ended call as the client gets it: marked incomplete when its arguments are not JSON."""
    if call.incomplete or is_json(call.arguments_json):
        return call
    return dataclasses.replace(call, incomplete=True)


def is_json(text: str) -> bool:
    try:
        json_text.loads(text)  # halves of a cut emoji included, as the edge joins them
    except orjson.JSONDecodeError:
        return False
    return True
