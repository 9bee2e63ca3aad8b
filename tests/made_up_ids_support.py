"""Made-up tool-call ids (`providers/made_up_ids.py`) carry a random tag per answer, so that the
turns of a conversation never share one. Tests that compare two decodings of one answer, or the
gateway with an SDK numbering calls itself, compare the ids without the tag."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from provider_gateway.domain import ChatResponse, ToolCall

_TAG = re.compile(r"(-|^call_)[0-9a-f]{12}_(?=[0-9]+$)")


def untagged(call_id: str) -> str:
    """`get_weather-<tag>_0` -> `get_weather-0`, `call_<tag>_1` -> `call_1`; other ids as they are."""
    return _TAG.sub(r"\1", call_id)


def untagged_calls(response: ChatResponse) -> ChatResponse:
    """The response with its tool calls' ids untagged."""
    calls = [dataclasses.replace(c, id=untagged(c.id)) for c in response.tool_calls]
    return dataclasses.replace(response, tool_calls=calls)


def untagged_view[V](view: V) -> V:
    """A replay `View` (tests/replay/support.py) with its tool calls' ids untagged."""
    calls = [(untagged(i), name, arguments) for i, name, arguments in view.tool_calls]  # type: ignore[attr-defined]
    return dataclasses.replace(view, tool_calls=calls)  # type: ignore[type-var]


def untagged_event(event: Any) -> Any:
    """A ToolCallStart or ToolCallEnd with its id untagged; any other event as it is."""
    if isinstance(getattr(event, "call", None), ToolCall):
        return dataclasses.replace(event, call=dataclasses.replace(event.call, id=untagged(event.call.id)))
    if isinstance(getattr(event, "id", None), str) and hasattr(event, "name"):
        return dataclasses.replace(event, id=untagged(event.id))
    return event
