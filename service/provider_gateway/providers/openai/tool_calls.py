"""Chat Completions tool-call fragments as the client's ToolCallStart, ToolCallDelta and ToolCallEnd.

A call's fragments merge by `tool_calls[].index`, and any fragment may carry its id, its name or
arguments: a host may name a call after its first arguments (the SDK merges the later fields).
A fragment at a used index with an id other than that call's is a new call (parallel calls that
all say `"index": 0`). A call without an id gets one made up for this answer alone
(`made_up_ids`): the same tool called in two turns has two ids, as a conversation needs.
A call starts for the client once its name is known, its arguments so far in one delta: the
client gets the tool's name with the call's first event, and text is never held back.

Gemini's OpenAI-compatible endpoint sends no `index`: each call whole in its own chunk. An
index-less fragment continues the latest call unless it is another one: a different id, or a
name when the latest call is named and either differs or has whole arguments already.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from provider_gateway.domain import StreamEvent, ToolCall, ToolCallDelta, ToolCallEnd, ToolCallStart
from provider_gateway.providers.made_up_ids import answer_tag
from provider_gateway.providers.open_calls import is_json
from provider_gateway.providers.openai.codec import ChatWire


@dataclass(slots=True)
class _Call:
    index: int  # the client's (`ToolCallStart.index`)
    upstream_id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)
    started: bool = False
    ended: bool = False


class ChatToolCalls:
    """One answer's tool calls: `fragment` for each piece, `end` at the finish (or the stream's end)."""

    __slots__ = ("_by_upstream_index", "_calls", "_latest", "_tag", "_wire")

    def __init__(self, wire: ChatWire) -> None:
        self._wire = wire
        self._calls: dict[int, _Call] = {}
        self._by_upstream_index: dict[int, _Call] = {}
        self._latest: _Call | None = None
        self._tag = ""  # drawn at the answer's first made-up id (`made_up_ids`)

    def __bool__(self) -> bool:
        """True once the answer has called a tool."""
        return bool(self._calls)

    def fragment(
        self, upstream_index: int | None, first_in_list: bool, call_id: str, name: str, arguments: str
    ) -> list[StreamEvent]:
        """A fragment's events. `first_in_list`: no earlier entry of the same `tool_calls` list
        (the entries of one list are distinct calls)."""
        if upstream_index is not None:
            call = self._by_upstream_index.get(upstream_index)
            if call is None or (call_id and _other_id(call, call_id)):  # most fragments carry no id
                call = self._by_upstream_index[upstream_index] = self._open(upstream_index)
        else:
            call = self._latest
            if call is None or not first_in_list or _another(call, call_id, name):
                call = self._open(None)
        self._latest = call
        if call.ended:
            return []  # a fragment after the finish: the client has the call whole already
        call.upstream_id = call.upstream_id or call_id  # the first one given, as the SDK keeps it
        call.name = call.name or name
        if arguments:
            call.arguments.append(arguments)
        if call.started:
            return [ToolCallDelta(call.index, arguments)] if arguments else []
        return self._start(call) if call.name else []

    def end(self) -> list[StreamEvent]:
        """Ends for the calls not ended yet, each started first if its name never came."""
        events: list[StreamEvent] = []
        for index in sorted(self._calls):
            call = self._calls[index]
            if call.ended:
                continue
            call.ended = True
            if not call.started:
                events.extend(self._start(call))
            whole = ToolCall(self._client_id(call), call.name, "".join(call.arguments) or "{}")
            events.append(ToolCallEnd(index, whole))
        return events

    def _open(self, upstream_index: int | None) -> _Call:
        """A new call, at its upstream index when that is free (nearly always: indices from 0)."""
        if upstream_index is None or upstream_index in self._calls:
            upstream_index = max(self._calls, default=-1) + 1
        call = self._calls[upstream_index] = _Call(upstream_index)
        return call

    def _start(self, call: _Call) -> list[StreamEvent]:
        call.started = True
        events: list[StreamEvent] = [ToolCallStart(call.index, self._client_id(call), call.name)]
        if call.arguments:
            events.append(ToolCallDelta(call.index, "".join(call.arguments)))
        return events

    def _client_id(self, call: _Call) -> str:
        self._tag = self._tag or answer_tag()
        return self._wire.answer_tool_id(call.upstream_id, f"call_{self._tag}_{call.index}")


def _other_id(call: _Call, call_id: str) -> bool:
    """Whether a fragment with an id, at a used index, is a new call: an id other than the call's.
    Ollama's /v1 and some vLLM-style servers give every call of a parallel batch `"index": 0`; a
    host repeating one call's id on each of its fragments gives the same id."""
    return bool(call.upstream_id) and call_id != call.upstream_id


def _another(latest: _Call, call_id: str, name: str) -> bool:
    """Whether an index-less fragment is a call other than the latest one."""
    if call_id and latest.upstream_id:
        return call_id != latest.upstream_id
    if not name or not latest.name:
        return False  # the latest call's later id or name, or more of its arguments
    return name != latest.name or is_json("".join(latest.arguments))
