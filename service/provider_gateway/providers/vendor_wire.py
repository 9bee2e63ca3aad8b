"""Pure pieces the Anthropic, Gemini/Vertex and Cohere codecs share: `provider_options` merging,
tool-call argument handling, streamed tool-call assembly, and the served tier's word.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from provider_gateway.domain import StreamEvent, ToolCall, ToolCallDelta, ToolCallEnd, ToolCallStart
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.providers.owned_options import refuse_owned


def merge_provider_options(
    body: dict[str, Any], options: Mapping[str, Any], owned_fields: frozenset[str]
) -> dict[str, Any]:
    """The proto's rule: provider-specific fields "merged into the upstream request body as given",
    except the ones the wire owns (`owned_fields`, refused: see owned_options.py).

    Tables merge one level deep, so `{"generationConfig": {"topK": 5}}` adds to the generated
    `generationConfig` instead of replacing it; any other value replaces the generated one.
    """
    for key, value in refuse_owned(options, owned_fields).items():
        current = body.get(key)
        body[key] = (
            {**current, **value} if isinstance(current, dict) and isinstance(value, Mapping) else value
        )
    return body


def served_tier(word: Any, synonyms: Mapping[str, str]) -> str:
    """The vendor's word for the tier it served a request on, as Usage.service_tier says it:
    lower-cased, then mapped by `synonyms` (the vendor's words for "standard", "flex",
    "priority"); a word it does not map stays as it came; "" when the vendor said none."""
    if not isinstance(word, str) or not word:
        return ""
    word = word.lower()
    return synonyms.get(word, word)


def arguments_object(call: ToolCall) -> Any:
    """A tool call's arguments as the JSON object vendors with structured arguments want."""
    try:
        return json.loads(call.arguments_json) if call.arguments_json else {}
    except json.JSONDecodeError:
        raise GatewayError(
            ErrorKind.INVALID_ARGUMENT, f"tool call {call.id!r}: arguments_json is not valid JSON"
        ) from None


def malformed(provider: str, what: str) -> GatewayError:
    return GatewayError(ErrorKind.UNAVAILABLE, f"malformed upstream event: {what}", provider=provider)


@dataclass(slots=True)
class _Pending:
    index: int
    id: str
    name: str
    arguments: list[str] = field(default_factory=list)


@dataclass(slots=True)
class ToolCallAssembler:
    """Streamed tool calls keyed by the vendor's block index, numbered 0.. in arrival order."""

    provider: str = ""
    count: int = 0
    _open: dict[int, _Pending] = field(default_factory=dict)

    def start(self, key: int, call_id: str, name: str, first: str = "") -> list[StreamEvent]:
        pending = _Pending(self.count, call_id, name)
        self.count += 1
        self._open[key] = pending
        return [ToolCallStart(pending.index, call_id, name), *self.delta(key, first)]

    def is_open(self, key: int) -> bool:
        return key in self._open

    def delta(self, key: int, piece: str) -> list[StreamEvent]:
        pending = self._open.get(key)
        if pending is None:
            raise malformed(
                self.provider, f"tool-call arguments for block {key}, which is not an open tool call"
            )
        if not piece:
            return []
        pending.arguments.append(piece)
        return [ToolCallDelta(pending.index, piece)]

    def end(self, key: int) -> list[StreamEvent]:
        pending = self._open.pop(key, None)
        if pending is None:
            return []
        call = ToolCall(pending.id, pending.name, "".join(pending.arguments) or "{}")
        return [ToolCallEnd(pending.index, call)]
