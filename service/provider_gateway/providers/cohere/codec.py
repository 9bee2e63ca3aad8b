"""Cohere v2 Chat wire format: pure, no I/O.

Cohere's stream has its own event names (message-start, content-delta, tool-plan-delta,
tool-call-start/-delta/-end, message-end). Its `tool_choice` knows only REQUIRED and NONE, so a
named tool is sent as REQUIRED with just that tool offered. A whole (`stream: false`) answer is read
by the stream's decoder as the events its stream would carry (`response`).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from provider_gateway.domain import (
    ChatRequest,
    ChatResponse,
    EmbedRequest,
    FinishReason,
    ImagePart,
    Message,
    ModelInfo,
    ProviderFinish,
    RawContent,
    ReasoningDelta,
    ResponseFormatType,
    Role,
    StreamEvent,
    TextDelta,
    TextPart,
    ToolCallPart,
    ToolChoiceMode,
    ToolResultPart,
    Usage,
    UsageEvent,
)
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.providers.base import fold
from provider_gateway.providers.embed_dimensions import COHERE_V4_SIZES, check_size
from provider_gateway.providers.owned_options import owned
from provider_gateway.providers.shapes import shape_checked
from provider_gateway.providers.vendor_wire import ToolCallAssembler, malformed, merge_provider_options

FINISH_REASONS = {
    "COMPLETE": FinishReason.STOP,
    "STOP_SEQUENCE": FinishReason.STOP,
    "MAX_TOKENS": FinishReason.LENGTH,
    "TOOL_CALL": FinishReason.TOOL_CALLS,
}


def _user_content(message: Message) -> str | list[dict[str, Any]]:
    if all(isinstance(p, TextPart) for p in message.content):
        return message.text
    content: list[dict[str, Any]] = []
    for part in message.content:
        if isinstance(part, TextPart):
            content.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            url = part.url or f"data:{part.media_type};base64,{base64.b64encode(part.data).decode('ascii')}"
            content.append({"type": "image_url", "image_url": {"url": url}})
    return content


def _convert(message: Message) -> list[dict[str, Any]]:
    if message.role is Role.SYSTEM:
        return [{"role": "system", "content": message.text}]
    results = [p for p in message.content if isinstance(p, ToolResultPart)]
    if results:  # each result is its own `tool` message
        tools = [{"role": "tool", "tool_call_id": p.tool_call_id, "content": p.content} for p in results]
        return tools + _beside_results(message)
    if message.role is Role.ASSISTANT:
        calls = [p.call for p in message.content if isinstance(p, ToolCallPart)]
        out: dict[str, Any] = {"role": "assistant"}
        if calls:
            out["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments_json or "{}"},
                }
                for c in calls
            ]
            if message.text:
                out["tool_plan"] = message.text
        else:
            out["content"] = message.text
        return [out]
    return [{"role": "user", "content": _user_content(message)}]


def _beside_results(message: Message) -> list[dict[str, Any]]:
    """The text and images of a turn that also holds tool results ("here are the results, now
    summarise"), as a user message after the `tool` ones: Cohere's messages hold one or the other."""
    rest = tuple(
        p for p in message.content if isinstance(p, ImagePart) or (isinstance(p, TextPart) and p.text)
    )
    return [{"role": "user", "content": _user_content(Message(Role.USER, rest))}] if rest else []


# Body fields the gateway owns in v2 Chat bodies (owned_options.py).
OWNED_FIELDS = owned(
    "model", "messages", "stream", "max_tokens", "temperature", "p", "stop_sequences",
    "tools", "tool_choice", "response_format", "thinking",
)  # fmt: skip


def emulated_fields(request: ChatRequest) -> tuple[str, ...]:
    """What `build_chat_body` emulates: a named tool choice (only that tool, REQUIRED)."""
    choice = request.tool_choice
    named = request.tools and choice is not None and choice.mode is ToolChoiceMode.TOOL
    return ("tool_choice",) if named else ()


def build_chat_body(request: ChatRequest, *, stream: bool = True) -> dict[str, Any]:
    messages = [m for message in request.messages for m in _convert(message)]
    body: dict[str, Any] = {"model": request.model, "messages": messages, "stream": stream}
    choice = request.tool_choice
    tools = request.tools
    if tools and not (choice and choice.mode is ToolChoiceMode.NONE):
        if choice and choice.mode is ToolChoiceMode.TOOL:
            tools = [t for t in tools if t.name == choice.name]
        body["tools"] = [
            {
                "type": "function",
                "function": {"name": t.name, "description": t.description, "parameters": dict(t.parameters)},
            }
            for t in tools
        ]
        if choice and choice.mode in (ToolChoiceMode.REQUIRED, ToolChoiceMode.TOOL):
            body["tool_choice"] = "REQUIRED"
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["p"] = request.top_p
    if request.stop:
        body["stop_sequences"] = list(request.stop)
    fmt = request.response_format
    if fmt and fmt.type is not ResponseFormatType.TEXT:
        body["response_format"] = {"type": "json_object"}
        if fmt.type is ResponseFormatType.JSON_SCHEMA and fmt.json_schema:
            body["response_format"]["json_schema"] = dict(fmt.json_schema)
    reasoning = request.reasoning
    if reasoning and reasoning.enabled:
        thinking: dict[str, Any] = {"type": "enabled"}
        if reasoning.budget_tokens:
            thinking["token_budget"] = reasoning.budget_tokens
        body["thinking"] = thinking
    return merge_provider_options(body, request.provider_options, OWNED_FIELDS)


def build_embed_body(request: EmbedRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": request.model,
        "texts": list(request.inputs),
        "input_type": "search_document",
        "embedding_types": ["float"],
        # Cohere cuts an over-long input at its end by default and says nothing: refused instead
        # (a 400 naming the length), never an embedding of part of the text.
        "truncate": "NONE",
    }
    if request.dimensions:  # `output_dimension` is Embed v4's: v3 and older have one width
        sizes = () if re.search(r"-v[1-3](?:\.|$)", request.model) else COHERE_V4_SIZES
        why = "Cohere Embed v3 and older have one width; embed-v4.0 takes a size"
        check_size(request.dimensions, sizes, "Cohere", request.model, why)
        body["output_dimension"] = request.dimensions
    return body


def normalise_usage(raw: Mapping[str, Any]) -> Usage:
    """Prefer `tokens` (what the model saw) over `billed_units`; `cached_tokens` are part of input."""
    tokens = raw.get("tokens") or raw.get("billed_units") or {}
    return Usage(
        input_tokens=int(tokens.get("input_tokens") or 0),
        output_tokens=int(tokens.get("output_tokens") or 0),
        cache_read_tokens=int(raw.get("cached_tokens") or 0),
        raw=dict(raw),
    )


@dataclass(slots=True)
class ChatStreamDecoder:
    provider: str = ""
    model: str = ""  # the one asked for: Cohere's answers name none
    emulated: tuple[str, ...] = ()  # `emulated_fields` of the request, for the finish
    response_id: str = ""
    finish_reason: str = ""
    usage_raw: dict[str, Any] = field(default_factory=dict)
    finished: bool = False
    tools: ToolCallAssembler = field(default_factory=ToolCallAssembler)

    def __post_init__(self) -> None:
        self.tools.provider = self.provider

    @shape_checked
    def feed(self, data: Any) -> list[StreamEvent]:
        if not isinstance(data, Mapping):
            raise malformed(self.provider, "event data is not a JSON object")
        kind = data.get("type")
        message = ((data.get("delta") or {}).get("message")) or {}
        if kind == "message-start":
            self.response_id = str(data.get("id") or "")
        elif kind == "content-delta":
            content = message.get("content") or {}
            if content.get("thinking"):
                return [ReasoningDelta(str(content["thinking"]))]
            if content.get("text"):
                return [TextDelta(str(content["text"]))]
        elif kind == "tool-plan-delta":
            plan = str(message.get("tool_plan") or "")
            return [ReasoningDelta(plan)] if plan else []
        elif kind == "tool-call-start":
            raw = message.get("tool_calls") or {}
            function = raw.get("function") or {}
            key = int(data.get("index", 0))
            return self.tools.start(
                key,
                str(raw.get("id") or ""),
                str(function.get("name") or ""),
                str(function.get("arguments") or ""),
            )
        elif kind == "tool-call-delta":
            piece = str(((message.get("tool_calls") or {}).get("function") or {}).get("arguments") or "")
            return self.tools.delta(int(data.get("index", 0)), piece)
        elif kind == "tool-call-end":
            return self.tools.end(int(data.get("index", 0)))
        elif kind == "citation-start":  # no typed event: the citation as Cohere sent it
            citation = message.get("citations")
            return [RawContent("citation", dict(citation))] if isinstance(citation, Mapping) else []
        elif kind == "message-end":
            return self._end(data.get("delta") or {})
        return []  # content-start, content-end, citation-end: nothing to pass on

    def _end(self, delta: Mapping[str, Any]) -> list[StreamEvent]:
        self.finished = True
        self.finish_reason = str(delta.get("finish_reason") or "")
        if delta.get("error") or self.finish_reason == "ERROR":
            raise GatewayError(
                ErrorKind.UNAVAILABLE,
                f"cohere generation error: {delta.get('error') or self.finish_reason}",
                provider=self.provider,
            )
        self.usage_raw = dict(delta.get("usage") or {})
        reason = FINISH_REASONS.get(self.finish_reason, FinishReason.OTHER)
        if not self.finish_reason:  # a message-end that names no reason: not a STOP, not OTHER
            reason = FinishReason.UNSPECIFIED
        return [
            UsageEvent(normalise_usage(self.usage_raw)),
            ProviderFinish(reason, self.finish_reason, self.model, self.response_id, self.emulated),
        ]

    @shape_checked
    def response(self, body: Any) -> ChatResponse:
        """A whole v2 chat answer: `message` content, tool plan and calls, then the end. An
        answer (a `message` object) without a finish_reason finishes UNSPECIFIED, as its stream's
        message-end without one does (Cohere's API reference types it optional); any other body
        (an error's `message` text) is not an answer."""
        if not isinstance(body, Mapping) or not isinstance(body.get("message"), Mapping):
            said = body.get("message") if isinstance(body, Mapping) else None
            detail = said if isinstance(said, str) else str(body)[:80]
            raise malformed(self.provider, f"an answer without a finish_reason or message: {detail!r}")
        self.response_id = str(body.get("id") or "")
        message = body.get("message") or {}
        events: list[StreamEvent] = []
        for item in message.get("content") or []:
            if item.get("type") == "thinking" and item.get("thinking"):
                events.append(ReasoningDelta(str(item["thinking"])))
            elif item.get("type") == "text" and item.get("text"):
                events.append(TextDelta(str(item["text"])))
        if message.get("tool_plan"):
            events.append(ReasoningDelta(str(message["tool_plan"])))
        events += [
            RawContent("citation", dict(c)) for c in message.get("citations") or [] if isinstance(c, Mapping)
        ]
        calls = message.get("tool_calls") or []
        for index, call in enumerate(calls):
            function = call.get("function") or {}
            call_id, name = str(call.get("id") or ""), str(function.get("name") or "")
            events += self.tools.start(index, call_id, name, str(function.get("arguments") or ""))
            # MAX_TOKENS cut the last call: left open (incomplete), as its stream leaves it
            if not (body.get("finish_reason") == "MAX_TOKENS" and index == len(calls) - 1):
                events += self.tools.end(index)
        events += self._end(body)
        return fold(events)


@shape_checked
def parse_embeddings(body: Any, *, provider: str = "") -> tuple[list[list[float]], Usage]:
    embeddings = body.get("embeddings") if isinstance(body, Mapping) else None
    vectors = embeddings.get("float") if isinstance(embeddings, Mapping) else embeddings
    if not isinstance(vectors, list):
        raise GatewayError(ErrorKind.UNAVAILABLE, "malformed embed response: no float embeddings")
    billed = ((body.get("meta") or {}).get("billed_units")) or {}
    return [list(map(float, v)) for v in vectors], Usage(
        input_tokens=int(billed.get("input_tokens") or 0), raw=dict(billed)
    )


@shape_checked
def parse_models(body: Any, *, provider: str = "") -> list[ModelInfo]:
    models = []
    for item in (body.get("models") if isinstance(body, Mapping) else None) or []:
        if not isinstance(item, Mapping) or not item.get("name"):
            continue
        endpoints = item.get("endpoints") or []
        features = item.get("features") or []
        models.append(
            ModelInfo(
                id=str(item["name"]),
                display_name=str(item["name"]),
                context_window=int(item.get("context_length") or 0),
                vision="vision" in features or bool(item.get("supports_vision")),
                tools="tools" in features or "tool_use" in features,
                embeddings="embed" in endpoints,
            )
        )
    return models


@shape_checked
def parse_token_count(answer: Any, *, provider: str = "") -> int:
    """`/v1/tokenize` answers the token ids; the count is their number."""
    tokens = answer.get("tokens") or []
    if not isinstance(tokens, list):
        raise malformed(provider, "tokenize answer: tokens is not a list")
    return len(tokens)
