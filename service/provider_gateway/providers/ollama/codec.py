"""Ollama's native `/api/chat` format: request bodies from domain types, NDJSON lines to events.

Pure: no I/O. Tool calls arrive whole (arguments as a JSON object) in one line, so each becomes a
start, one argument delta and an end. Usage comes on the final `done: true` line; a non-streaming
answer is that line with the whole message, read by the same parser (`response`).
"""

from __future__ import annotations

import base64
import re
from typing import Any

import orjson

from provider_gateway.domain import (
    ChatRequest,
    ChatResponse,
    EmbedResult,
    FinishReason,
    ImagePart,
    Message,
    ModelInfo,
    ProviderFinish,
    ReasoningDelta,
    ResponseFormatType,
    Role,
    StreamEvent,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallPart,
    ToolCallStart,
    ToolResultPart,
    Usage,
    UsageEvent,
)
from provider_gateway.errors import ErrorKind, GatewayError, invalid_argument
from provider_gateway.providers.base import fold
from provider_gateway.providers.made_up_ids import answer_tag
from provider_gateway.providers.openai.codec import function_tools
from provider_gateway.providers.owned_options import owned
from provider_gateway.providers.shapes import shape_checked
from provider_gateway.providers.structured_output import unhonoured
from provider_gateway.providers.vendor_wire import merge_provider_options
from provider_gateway.wire.think import ThinkSplitter

# Body fields the gateway owns (owned_options.py): the token limit and sampling live in `options`.
OWNED_FIELDS = owned(
    "model", "messages", "prompt", "stream", "tools", "format", "think",
    "options.num_predict", "options.temperature", "options.top_p", "options.stop",
)  # fmt: skip
DONE_REASONS = {"stop": FinishReason.STOP, "length": FinishReason.LENGTH}
# Ollama documents `think` levels ("low" | "medium" | "high") for gpt-oss only (`gpt-oss:20b`,
# `gpt-oss:120b`...); other thinking models take true or false.
THINK_LEVEL_MODELS = re.compile(r"(?<![a-z0-9])gpt-oss(?![a-z0-9])", re.IGNORECASE)
THINK_LEVELS = ("low", "medium", "high")


def _message(message: Message) -> list[dict[str, Any]]:
    # Tool results go back as `tool` messages, as Ollama documents (the TypeScript lineage sent
    # them as `user` messages; the vendor's documentation wins).
    out: list[dict[str, Any]] = [
        {"role": "tool", "content": p.content, **({"tool_name": p.name} if p.name else {})}
        for p in message.content
        if isinstance(p, ToolResultPart)
    ]
    images = []
    for part in message.content:
        if isinstance(part, ImagePart):
            if not part.data:
                raise invalid_argument("Ollama takes images as bytes (base64), not URLs: send image.data")
            images.append(base64.b64encode(part.data).decode("ascii"))
    calls = [p.call for p in message.content if isinstance(p, ToolCallPart)]
    if message.text or images or calls or not out:
        entry: dict[str, Any] = {"role": message.role.value if message.role is not Role.TOOL else "user"}
        entry["content"] = message.text
        if images:
            entry["images"] = images
        if calls:
            entry["tool_calls"] = [
                {"function": {"name": c.name, "arguments": orjson.loads(c.arguments_json or "{}")}}
                for c in calls
            ]
        out.append(entry)
    return out


def chat_body(request: ChatRequest, *, stream: bool, keep_alive: str = "") -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": request.model,
        "messages": [m for message in request.messages for m in _message(message)],
        "stream": stream,
    }
    options: dict[str, Any] = {}
    if request.temperature is not None:
        options["temperature"] = request.temperature
    if request.top_p is not None:
        options["top_p"] = request.top_p
    if request.max_tokens is not None:
        options["num_predict"] = request.max_tokens
    if request.stop:
        options["stop"] = list(request.stop)
    if options:
        body["options"] = options
    if tools := function_tools(request):
        body["tools"] = tools
    fmt = request.response_format
    if fmt and fmt.type is ResponseFormatType.JSON_OBJECT:
        body["format"] = "json"
    elif fmt and fmt.type is ResponseFormatType.JSON_SCHEMA:
        body["format"] = dict(fmt.json_schema or {})
    if (think := _think(request)) is not None:
        body["think"] = think
    if keep_alive:
        body["keep_alive"] = keep_alive
    # Merged a table deep: `{"options": {"num_ctx": 8192}}` adds to the generated options.
    merge_provider_options(body, request.provider_options, OWNED_FIELDS)
    return body


def _think(request: ChatRequest) -> bool | str | None:
    """`think`: the effort as a level where Ollama documents levels, else true when reasoning is on;
    an effort it cannot take is refused, never dropped."""
    reasoning = request.reasoning
    if reasoning is None:
        return None
    if reasoning.effort:
        if not THINK_LEVEL_MODELS.search(request.model):
            why = "Ollama's `think` takes an effort level on gpt-oss models only (others: on or off)"
            raise unhonoured("reasoning.effort", "Ollama", request.model, why)
        if reasoning.effort not in THINK_LEVELS:
            why = f"gpt-oss's `think` levels are {', '.join(THINK_LEVELS)}"
            raise unhonoured("reasoning.effort", "Ollama", request.model, why)
        return reasoning.effort
    return True if reasoning.enabled else None


def normalise_usage(line: dict[str, Any]) -> Usage:
    raw = {k: v for k, v in line.items() if k.endswith(("_count", "_duration"))}
    return Usage(
        input_tokens=int(line.get("prompt_eval_count") or 0),
        output_tokens=int(line.get("eval_count") or 0),
        raw=raw,
    )


class ChatStreamParser:
    def __init__(self, provider: str) -> None:
        self.provider = provider
        self._think = ThinkSplitter()
        self._calls = 0
        self._tag = ""  # drawn at the answer's first made-up id
        self.done = False

    @shape_checked
    def feed(self, line: Any) -> list[StreamEvent]:
        if not isinstance(line, dict):
            raise GatewayError(
                ErrorKind.UNAVAILABLE,
                f"malformed line from {self.provider}: {line!r:.80}",
                provider=self.provider,
            )
        if line.get("error"):
            raise GatewayError(
                ErrorKind.UNAVAILABLE,
                f"Ollama error inside the stream: {line['error']}",
                provider=self.provider,
            )
        message = line.get("message") or {}
        events: list[StreamEvent] = []
        if isinstance(message.get("thinking"), str) and message["thinking"]:
            events.append(ReasoningDelta(message["thinking"]))
        if isinstance(message.get("content"), str) and message["content"]:
            events.extend(self._think.feed(message["content"]))
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            index = self._calls
            self._calls += 1
            call_id = str(call.get("id") or self._made_up_id(str(function.get("name") or "tool"), index))
            arguments = orjson.dumps(function.get("arguments") or {}).decode()
            name = str(function.get("name", ""))
            events += [
                ToolCallStart(index, call_id, name),
                ToolCallDelta(index, arguments),
                ToolCallEnd(index, ToolCall(call_id, name, arguments)),
            ]
        if line.get("done"):
            self.done = True
            events.extend(self._think.close())
            events.append(UsageEvent(normalise_usage(line)))
            # Servers before done_reason existed say none: UNSPECIFIED, not an invented "stop".
            raw_reason = str(line.get("done_reason") or "")
            if self._calls:
                reason = FinishReason.TOOL_CALLS
            elif raw_reason:
                reason = DONE_REASONS.get(raw_reason, FinishReason.OTHER)
            else:
                reason = FinishReason.UNSPECIFIED
            events.append(ProviderFinish(reason, raw_reason, str(line.get("model") or "")))
        return events

    def _made_up_id(self, name: str, index: int) -> str:
        """`name-<tag>_<index>`: /api/chat gives calls no id, and a counter alone would repeat the
        previous turn's ids (`made_up_ids`)."""
        self._tag = self._tag or answer_tag()
        return f"{name}-{self._tag}_{index}"

    @shape_checked
    def response(self, body: Any) -> ChatResponse:
        """A whole `"stream": false` answer: the done line, carrying the whole message."""
        events = self.feed(body)
        if not self.done:
            raise GatewayError(
                ErrorKind.UNAVAILABLE,
                f"{self.provider} answered without done: {str(body)[:80]!r}",
                provider=self.provider,
                retryable=True,
            )
        return fold(events)


@shape_checked
def parse_embeddings(answer: Any, model: str, *, provider: str = "") -> EmbedResult:
    """`/api/embed`: one vector per input; `prompt_eval_count` is the input token count."""
    return EmbedResult(
        vectors=[[float(x) for x in row] for row in answer.get("embeddings") or []],
        usage=Usage(input_tokens=int(answer.get("prompt_eval_count") or 0)),
        model=str(answer.get("model") or model),
    )


@shape_checked
def parse_models(answer: Any, *, provider: str = "") -> list[ModelInfo]:
    """`/api/tags`: the models pulled on this Ollama host."""
    return [ModelInfo(id=str(m["name"])) for m in answer.get("models") or [] if "name" in m]
