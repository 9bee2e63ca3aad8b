"""OpenAI Chat Completions wire format: request bodies from domain types, chunks to domain events.

Pure: no I/O. The same codec serves every preset; the preset's switches select the quirks.
"""

from __future__ import annotations

import base64
import hashlib
import re
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from provider_gateway.domain import (
    ChatRequest,
    EmbedResult,
    FinishReason,
    ImagePart,
    Message,
    ModelInfo,
    ProviderFinish,
    ReasoningDelta,
    ReasoningPart,
    ResponseFormatType,
    Role,
    StreamEvent,
    TextDelta,
    TextPart,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallPart,
    ToolCallStart,
    ToolChoiceMode,
    ToolResultPart,
    Usage,
    UsageEvent,
)
from provider_gateway.errors import GatewayError
from provider_gateway.http.errors import error_from_response
from provider_gateway.providers.openai.presets import Preset
from provider_gateway.providers.shapes import shape_checked
from provider_gateway.wire.think import ThinkSplitter

# o1, o3, o4 families and gpt-5, also behind a vendor prefix ("openai/o3-mini" on OpenRouter).
_REASONING_MODEL = re.compile(r"^(?:[\w.-]+/)?(?:o[134](?:$|-)|gpt-5)")
_DEEPSEEK_REASONER = re.compile(r"deepseek-(?:reasoner|r1)", re.IGNORECASE)
_ALNUM = string.ascii_letters + string.digits
FINISH_REASONS = {
    "stop": FinishReason.STOP,
    "length": FinishReason.LENGTH,
    "tool_calls": FinishReason.TOOL_CALLS,
    "function_call": FinishReason.TOOL_CALLS,
    "content_filter": FinishReason.CONTENT_FILTER,
    "model_length": FinishReason.LENGTH,  # Mistral
}


def is_reasoning_model(model: str) -> bool:
    return bool(_REASONING_MODEL.match(model))


def short_tool_id(call_id: str) -> str:
    """Mistral's rule: exactly 9 alphanumerics. Valid ids pass; others map to a stable hash."""
    if len(call_id) == 9 and call_id.isascii() and call_id.isalnum():
        return call_id
    digest = int.from_bytes(hashlib.sha256(call_id.encode()).digest()[:8], "big")
    out = []
    for _ in range(9):
        digest, digit = divmod(digest, len(_ALNUM))
        out.append(_ALNUM[digit])
    return "".join(out)


def _image(part: ImagePart) -> dict[str, Any]:
    if part.data:
        encoded = base64.b64encode(part.data).decode("ascii")
        url = f"data:{part.media_type or 'image/png'};base64,{encoded}"
    else:
        url = part.url
    return {"type": "image_url", "image_url": {"url": url}}


def _messages(request: ChatRequest, preset: Preset) -> list[dict[str, Any]]:
    reasoning_model = is_reasoning_model(request.model)
    tool_id: Callable[[str], str] = short_tool_id if preset.short_tool_ids else str
    out: list[dict[str, Any]] = []
    for message in request.messages:
        out.extend(_message(message, reasoning_model, tool_id, preset.deepseek_messages))
    if preset.deepseek_messages and _DEEPSEEK_REASONER.search(request.model):
        out = _deepseek_reasoner_rules(out)
    return out


def _message(
    message: Message, reasoning_model: bool, tool_id: Callable[[str], str], replay_reasoning: bool
) -> list[dict[str, Any]]:
    if message.role is Role.SYSTEM:
        return [{"role": "developer" if reasoning_model else "system", "content": message.text}]
    results = [p for p in message.content if isinstance(p, ToolResultPart)]
    out: list[dict[str, Any]] = [
        {"role": "tool", "tool_call_id": tool_id(p.tool_call_id), "content": p.content} for p in results
    ]
    if message.role is Role.ASSISTANT:
        calls = [p.call for p in message.content if isinstance(p, ToolCallPart)]
        entry: dict[str, Any] = {"role": "assistant", "content": message.text or None}
        if calls:
            entry["tool_calls"] = [
                {
                    "id": tool_id(c.id),
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments_json},
                }
                for c in calls
            ]
        # Reasoning is replayed only where required: DeepSeek's thinking mode wants the
        # reasoning_content of tool-call turns back (400 otherwise) and ignores it elsewhere;
        # other hosts reject or ignore unknown message fields.
        reasoning = "".join(p.text for p in message.content if isinstance(p, ReasoningPart))
        if replay_reasoning and calls and reasoning:
            entry["reasoning_content"] = reasoning
        return [*out, entry]
    parts = [p for p in message.content if isinstance(p, TextPart | ImagePart)]
    if not parts:
        return out
    entry = {"role": "user"}
    if all(isinstance(p, TextPart) for p in parts):
        entry["content"] = message.text
    else:
        entry["content"] = [
            {"type": "text", "text": p.text} if isinstance(p, TextPart) else _image(p)
            for p in parts
            if isinstance(p, TextPart | ImagePart)
        ]
    if message.name:
        entry["name"] = message.name
    return [*out, entry]


def _deepseek_reasoner_rules(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """System prompt as the first user message; consecutive same-role text messages merged."""
    merged: list[dict[str, Any]] = []
    for message in messages:
        message = dict(message)
        if message["role"] in ("system", "developer"):
            message["role"] = "user"
        previous = merged[-1] if merged else None
        mergeable = message["role"] in ("user", "assistant") and "tool_calls" not in message
        if (
            previous is not None
            and mergeable
            and previous["role"] == message["role"]
            and "tool_calls" not in previous
            and isinstance(previous.get("content"), str)
            and isinstance(message.get("content"), str)
        ):
            previous["content"] = f"{previous['content']}\n\n{message['content']}"
        else:
            merged.append(message)
    return merged


# Fields the gateway owns: a caller's provider_options may not change what is asked or how it streams.
RESERVED_FIELDS = frozenset({"model", "messages", "stream", "stream_options"})


def host_options(options: dict[str, Any]) -> dict[str, Any]:
    """The caller's escape hatch for host-specific fields (seed, logit_bias...), minus reserved ones."""
    return {k: v for k, v in options.items() if k not in RESERVED_FIELDS}


def function_tools(request: ChatRequest) -> list[dict[str, Any]]:
    """Tool declarations as OpenAI documents them (Ollama takes the same); none for tool_choice none."""
    if request.tool_choice and request.tool_choice.mode is ToolChoiceMode.NONE:
        return []
    return [
        {
            "type": "function",
            "function": {"name": t.name, "description": t.description, "parameters": dict(t.parameters)},
        }
        for t in request.tools
    ]


def chat_body(
    request: ChatRequest, preset: Preset, *, stream: bool, model: str | None = None
) -> dict[str, Any]:
    """The `/chat/completions` body for this request on this host."""
    reasoning_model = is_reasoning_model(request.model)
    body: dict[str, Any] = {"model": model or request.model, "messages": _messages(request, preset)}
    if request.max_tokens is not None:
        body["max_completion_tokens" if reasoning_model else "max_tokens"] = request.max_tokens
    if not reasoning_model:
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
    elif request.reasoning and request.reasoning.effort:
        body["reasoning_effort"] = request.reasoning.effort
    if request.stop:
        body["stop"] = list(request.stop)
    if tools := function_tools(request):
        body["tools"] = tools
        if request.tool_choice:
            mode = request.tool_choice.mode
            body["tool_choice"] = (
                {"type": "function", "function": {"name": request.tool_choice.name}}
                if mode is ToolChoiceMode.TOOL
                else mode.value
            )
    fmt = request.response_format
    if fmt and fmt.type is ResponseFormatType.JSON_OBJECT:
        body["response_format"] = {"type": "json_object"}
    elif fmt and fmt.type is ResponseFormatType.JSON_SCHEMA:
        schema: dict[str, Any] = {
            "name": fmt.schema_name or "response",
            "schema": dict(fmt.json_schema or {}),
        }
        if fmt.strict:
            schema["strict"] = True
        body["response_format"] = {"type": "json_schema", "json_schema": schema}
    if stream:
        body["stream"] = True
        if preset.stream_usage:
            body["stream_options"] = {"include_usage": True}
    body.update(host_options(request.provider_options))

    return body


def normalise_usage(raw: dict[str, Any]) -> Usage:
    """OpenAI-family usage: prompt_tokens already includes cached tokens (a subset)."""
    prompt = int(raw.get("prompt_tokens") or 0)
    details = raw.get("prompt_tokens_details") or {}
    cached = int(details.get("cached_tokens") or raw.get("prompt_cache_hit_tokens") or 0)
    completion_details = raw.get("completion_tokens_details") or {}
    return Usage(
        input_tokens=prompt,
        output_tokens=int(raw.get("completion_tokens") or 0),
        cache_read_tokens=cached,
        reasoning_tokens=int(completion_details.get("reasoning_tokens") or 0),
        raw=dict(raw),
    )


def stream_error(provider: str, error: Any) -> GatewayError:
    """An error object inside a stream (OpenRouter sends `{"error": {"code": 502, "message": ...}}`)."""
    code = error.get("code") if isinstance(error, dict) else None
    status = code if isinstance(code, int) and 400 <= code < 600 else 500
    mapped = error_from_response(provider, status, {}, orjson.dumps({"error": error}))
    mapped.message = f"error inside the stream: {mapped.message}"
    mapped.args = (mapped.message,)
    return mapped


@dataclass(slots=True)
class _OpenCall:
    id: str
    name: str
    arguments: list[str] = field(default_factory=list)


class ChatStreamParser:
    """Chunks in (parsed JSON), domain events out; `close` ends open tool calls and reports."""

    def __init__(self, provider: str, preset: Preset) -> None:
        self.provider = provider
        self._think = ThinkSplitter() if preset.think_tags else None
        self._calls: dict[int, _OpenCall] = {}
        self._ended: set[int] = set()
        self.usage: Usage | None = None
        self.finish_reason = ""
        self.model = ""
        self.response_id = ""
        self.output_chars = 0

    @shape_checked
    def feed(self, chunk: dict[str, Any]) -> list[StreamEvent]:
        if chunk.get("error"):
            raise stream_error(self.provider, chunk["error"])
        self.model = chunk.get("model") or self.model
        self.response_id = chunk.get("id") or self.response_id
        events: list[StreamEvent] = []
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue  # n > 1 is not part of the gateway's contract
            events.extend(self._delta(choice.get("delta") or choice.get("message") or {}))
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
                events.extend(self._end_calls())
        if chunk.get("usage"):
            self.usage = normalise_usage(chunk["usage"])
        return events

    def _delta(self, delta: dict[str, Any]) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            events.append(ReasoningDelta(reasoning))
        content = delta.get("content")
        if isinstance(content, str) and content:
            self.output_chars += len(content)
            events.extend(self._think.feed(content) if self._think else [TextDelta(content)])
        for position, fragment in enumerate(delta.get("tool_calls") or []):
            events.extend(self._tool_fragment(fragment, position))
        return events

    def _tool_fragment(self, fragment: dict[str, Any], position: int) -> list[StreamEvent]:
        index = int(fragment.get("index", position))
        function = fragment.get("function") or {}
        events: list[StreamEvent] = []
        call = self._calls.get(index)
        if call is None:
            call = _OpenCall(fragment.get("id") or f"call_{index}", function.get("name") or "")
            self._calls[index] = call
            events.append(ToolCallStart(index, call.id, call.name))
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            call.arguments.append(arguments)
            self.output_chars += len(arguments)
            events.append(ToolCallDelta(index, arguments))
        return events

    def _end_calls(self) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        for index in sorted(self._calls):
            if index not in self._ended:
                self._ended.add(index)
                call = self._calls[index]
                events.append(
                    ToolCallEnd(index, ToolCall(call.id, call.name, "".join(call.arguments) or "{}"))
                )
        return events

    @shape_checked
    def close(self, estimated_usage: Usage | None = None) -> list[StreamEvent]:
        events: list[StreamEvent] = list(self._think.close()) if self._think else []
        events.extend(self._end_calls())
        usage = self.usage or estimated_usage
        if usage is not None:
            events.append(UsageEvent(usage))
        reason = FINISH_REASONS.get(
            self.finish_reason, FinishReason.OTHER if self.finish_reason else FinishReason.STOP
        )
        events.append(ProviderFinish(reason, self.finish_reason, self.model, self.response_id))
        return events


@shape_checked
def parse_embeddings(answer: Any, model: str, *, provider: str = "") -> EmbedResult:
    """`/embeddings`: rows carry their input's `index`; usage has only `prompt_tokens`."""
    rows = sorted(answer.get("data") or [], key=lambda row: int(row.get("index", 0)))
    usage = answer.get("usage") or {}
    return EmbedResult(
        vectors=[[float(x) for x in row["embedding"]] for row in rows],
        usage=Usage(input_tokens=int(usage.get("prompt_tokens") or 0), raw=dict(usage)),
        model=str(answer.get("model") or model),
    )


@shape_checked
def parse_models(answer: Any, *, provider: str = "") -> list[ModelInfo]:
    return [ModelInfo(id=str(row["id"])) for row in answer.get("data") or [] if "id" in row]
