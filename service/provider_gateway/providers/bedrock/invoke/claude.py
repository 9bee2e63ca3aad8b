"""Anthropic Claude Messages on Bedrock: the Messages API body with `anthropic_version`.

The stream is Anthropic's own event sequence; its final message is `message_stop`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from provider_gateway.domain import CompletionRequest, RawContent, ReasoningDelta, StreamEvent, TextDelta
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.providers.bedrock.common import items, obj, text
from provider_gateway.providers.bedrock.invoke.base import ConverseFeatures, FamilyCodec, put

ANTHROPIC_VERSION = "bedrock-2023-05-31"
USAGE_NAMES = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
# Claude 2 and Instant have no tool use or images; extended thinking came with Claude 3.7 Sonnet.
LEGACY_CLAUDE = ("claude-v2", "claude-instant")
THINKING_CLAUDE = re.compile(r"claude-(3-7-sonnet|(opus|sonnet|haiku)-[4-9])")
# The message's fields about its stop, without a typed event: RawContent after the content, as the
# Anthropic adapter passes them (`stop_sequence` as {"stop_sequence": "..."}: which one matched).
STOP_FIELDS = ("stop_details", "stop_sequence")


class ClaudeCodec(FamilyCodec):
    label = "Anthropic Claude Messages"
    stop_field = "stop_reason"
    end_marker = "message_stop"

    @classmethod
    def features(cls, name: str) -> ConverseFeatures:
        if name.startswith(LEGACY_CLAUDE):
            return ConverseFeatures()
        return ConverseFeatures(True, True, "budget" if THINKING_CLAUDE.match(name) else "")

    def __init__(self, model: str) -> None:
        super().__init__(model)
        self.stop_fields: dict[str, Any] = {}

    def closing(self) -> list[StreamEvent]:
        return [
            RawContent(name, dict(value) if isinstance(value, Mapping) else {name: value})
            for name, value in self.stop_fields.items()
            if isinstance(value, Mapping) or (isinstance(value, str) and value)
        ]

    def request(self, request: CompletionRequest, max_tokens: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "anthropic_version": ANTHROPIC_VERSION,
            "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": [{"type": "text", "text": request.prompt}]}],
        }
        put(body, temperature=request.temperature, top_p=request.top_p, stop_sequences=request.stop)
        return self.finish_body(body, request)

    def body(self, body: Mapping[str, Any]) -> list[StreamEvent]:
        if not isinstance(body.get("content"), list):
            raise self.unreadable("no content")
        self.response_id = text(body.get("id"))
        self.stop(body.get("stop_reason"))
        self.stop_fields.update((name, body.get(name)) for name in STOP_FIELDS)
        self.take_usage(obj(body.get("usage")), *USAGE_NAMES)
        events: list[StreamEvent] = []
        for block in map(obj, items(body.get("content"))):
            kind = text(block.get("type"))
            if kind == "text" and (value := text(block.get("text"))):
                events.append(TextDelta(value))
            elif kind == "thinking":
                events.append(ReasoningDelta(text(block.get("thinking")), text(block.get("signature"))))
            elif kind == "redacted_thinking":
                events.append(_redacted(block))
            elif kind == "tool_use":
                arguments = json.dumps(block.get("input", {}))
                events += self.tools.whole(text(block.get("id")), text(block.get("name")), arguments)
        return events

    def chunk(self, chunk: Mapping[str, Any]) -> list[StreamEvent]:
        kind = text(chunk.get("type"))
        if not kind:
            raise self.unreadable("a stream chunk without a type")
        # Other types are skipped: Anthropic may add event types and asks clients to ignore them.
        if kind == "message_start":
            message = obj(chunk.get("message"))
            self.response_id = text(message.get("id"))
            self.take_usage(obj(message.get("usage")), *USAGE_NAMES)
        elif kind == "content_block_start":
            block = obj(chunk.get("content_block"))
            if text(block.get("type")) == "tool_use":
                return self.tools.start(chunk.get("index"), text(block.get("id")), text(block.get("name")))
            if text(block.get("type")) == "redacted_thinking":  # whole in its start: no deltas
                return [_redacted(block)]
            if value := text(block.get("text")):
                return [TextDelta(value)]
        elif kind == "content_block_delta":
            return self._delta(chunk.get("index"), obj(chunk.get("delta")))
        elif kind == "content_block_stop":
            return self.tools.end(chunk.get("index"))
        elif kind == "message_delta":
            delta = obj(chunk.get("delta"))
            self.stop(delta.get("stop_reason"))
            self.stop_fields.update((name, delta[name]) for name in STOP_FIELDS if name in delta)
            self.take_usage(obj(chunk.get("usage")), *USAGE_NAMES)
        elif kind == "message_stop":
            self.finished = True
        elif kind == "error":
            error = obj(chunk.get("error"))
            raise GatewayError(
                ErrorKind.UNAVAILABLE,
                f"Bedrock Claude stream error {text(error.get('type'))}: {text(error.get('message'))}",
            )
        return []

    def _delta(self, block: Any, delta: Mapping[str, Any]) -> list[StreamEvent]:
        kind = text(delta.get("type"))
        if kind == "text_delta":
            value = text(delta.get("text"))
            return [TextDelta(value)] if value else []
        if kind == "thinking_delta":
            return [ReasoningDelta(text(delta.get("thinking")))]
        if kind == "signature_delta":
            return [ReasoningDelta("", text(delta.get("signature")))]
        if kind == "input_json_delta":
            return self.tools.delta(block, text(delta.get("partial_json")))
        return []


def _redacted(block: Mapping[str, Any]) -> ReasoningDelta:
    """A `redacted_thinking` block: its encrypted `data` as an opaque reasoning block, as the
    Anthropic adapter relays it (a next turn must send it back as it came)."""
    return ReasoningDelta("", signature=text(block.get("data")), redacted=True)
