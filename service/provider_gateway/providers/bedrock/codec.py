"""Bedrock wire codec: domain requests to Converse / InvokeModel bodies, and responses to events.

Pure functions and small state machines, no I/O. Parsing is tolerant of missing or mistyped
fields (an absent field reads as empty) and raises `GatewayError(UNAVAILABLE)` for payloads that
are not JSON objects, so a malformed upstream never escapes as a KeyError or TypeError.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from typing import Any

from provider_gateway.domain import (
    ChatRequest,
    CompletionRequest,
    FinishReason,
    ImagePart,
    Message,
    ProviderFinish,
    ReasoningDelta,
    ReasoningPart,
    ResponseFormat,
    ResponseFormatType,
    Role,
    StreamEvent,
    TextDelta,
    TextPart,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallPart,
    ToolCallStart,
    ToolChoice,
    ToolChoiceMode,
    ToolResultPart,
    Usage,
    UsageEvent,
)
from provider_gateway.errors import ErrorKind, GatewayError, invalid_argument
from provider_gateway.providers.anthropic.codec import MIN_THINKING_BUDGET, thinking_budget
from provider_gateway.providers.bedrock.models import Family
from provider_gateway.providers.owned_options import owned, refuse_owned
from provider_gateway.providers.structured_output import closed_objects, unhonoured

ANTHROPIC_VERSION = "bedrock-2023-05-31"
CACHE_POINT: dict[str, Any] = {"cachePoint": {"type": "default"}}
DEFAULT_THINKING_BUDGET = 4096
THINKING_ANSWER_TOKENS = 4096  # maxTokens = budget + this, when thinking is on and no max is given
MAX_CACHE_POINTS = 4  # per request, as Bedrock documents for prompt caching
IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}
# Converse parameters that provider_options may set directly; other keys are model fields.
# Fields the gateway owns (owned_options.py), as Converse parameters and as the model fields that
# additionalModelRequestFields or an InvokeModel body would carry for any model family.
OWNED_FIELDS = owned(
    "modelId", "messages", "system", "inferenceConfig", "toolConfig", "prompt", "message",
    "chat_history", "max_tokens", "max_tokens_to_sample", "max_gen_len", "maxTokenCount",
    "textGenerationConfig", "n", "num_generations", "temperature", "top_p", "p", "stop",
    "stop_sequences", "tools", "tool_choice", "response_format", "thinking", "reasoning_config",
)  # fmt: skip
CONVERSE_TOP_LEVEL = frozenset(
    {"guardrailConfig", "performanceConfig", "requestMetadata", "additionalModelResponseFieldPaths"}
)

STOP_REASONS = {
    "end_turn": FinishReason.STOP,
    "stop_sequence": FinishReason.STOP,
    "stop": FinishReason.STOP,
    "finish": FinishReason.STOP,
    "complete": FinishReason.STOP,
    "max_tokens": FinishReason.LENGTH,
    "length": FinishReason.LENGTH,
    "model_context_window_exceeded": FinishReason.LENGTH,
    "tool_use": FinishReason.TOOL_CALLS,
    "tool_call": FinishReason.TOOL_CALLS,
    "guardrail_intervened": FinishReason.CONTENT_FILTER,
    "content_filtered": FinishReason.CONTENT_FILTER,
    "error_toxic": FinishReason.CONTENT_FILTER,
}


def finish_reason(raw: str) -> FinishReason:
    return STOP_REASONS.get(raw.lower(), FinishReason.OTHER) if raw else FinishReason.UNSPECIFIED


def malformed(what: str) -> GatewayError:
    return GatewayError(ErrorKind.UNAVAILABLE, f"malformed {what} from Bedrock")


# --- tolerant readers --------------------------------------------------------------------------


def _obj(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _int(value: Any) -> int:
    """A token count: a non-negative int that fits the API's int64, else 0."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63:
        return value
    return 0


def _floats(value: Any) -> list[float]:
    numbers = [v for v in _list(value) if isinstance(v, int | float) and not isinstance(v, bool)]
    return [float(v) for v in numbers if not isinstance(v, int) or abs(v) < 2**1000]


def decode_json_object(data: bytes | str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise malformed(what) from None
    if not isinstance(value, dict):
        raise malformed(what)
    return value


# --- usage -------------------------------------------------------------------------------------


def usage(
    input_tokens: int, output_tokens: int, cache_read: int, cache_write: int, raw: Mapping[str, Any]
) -> Usage:
    """Normalised usage: Bedrock reports input without cache; the gateway's input includes it."""
    return Usage(
        input_tokens=input_tokens + cache_read + cache_write,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        raw=dict(raw),
    )


def converse_usage(raw_usage: Any, metrics: Any = None) -> Usage:
    raw = _obj(raw_usage)
    result = usage(
        _int(raw.get("inputTokens")),
        _int(raw.get("outputTokens")),
        _int(raw.get("cacheReadInputTokens")),
        _int(raw.get("cacheWriteInputTokens")),
        raw,
    )
    latency = _int(_obj(metrics).get("latencyMs"))
    if latency:
        result.raw["latencyMs"] = latency
    return result


# --- Converse requests -------------------------------------------------------------------------


def image_block(part: ImagePart) -> dict[str, Any]:
    data, media_type = part.data, part.media_type
    if not data and part.url.startswith("data:"):
        header, _, encoded = part.url.partition(",")
        media_type = media_type or header[5:].split(";", 1)[0]
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise invalid_argument("image.url: the data: URL is not valid base64") from None
    if not data:
        raise invalid_argument("image.url: Bedrock takes image bytes or a data: URL, not an http(s) URL")
    image_format = IMAGE_FORMATS.get(media_type.lower())
    if image_format is None:
        raise invalid_argument(
            f"image.media_type: Bedrock accepts {', '.join(sorted(IMAGE_FORMATS))}; got {media_type!r}"
        )
    return {"image": {"format": image_format, "source": {"bytes": data}}}


def tool_input(call: ToolCall) -> Any:
    try:
        return json.loads(call.arguments_json) if call.arguments_json else {}
    except ValueError:
        raise invalid_argument(f"tool_call {call.id!r}: arguments_json is not valid JSON") from None


def content_blocks(message: Message) -> list[dict[str, Any]]:
    """One message's parts as Converse content blocks, with cache points after marked parts."""
    blocks: list[dict[str, Any]] = []
    # Reasoning must come first in an assistant turn for Claude to accept the replay.
    parts = sorted(message.content, key=lambda p: not isinstance(p, ReasoningPart))
    for part in parts:
        if isinstance(part, TextPart):
            if part.text:
                blocks.append({"text": part.text})
        elif isinstance(part, ImagePart):
            blocks.append(image_block(part))
        elif isinstance(part, ToolCallPart):
            call = part.call
            blocks.append({"toolUse": {"toolUseId": call.id, "name": call.name, "input": tool_input(call)}})
        elif isinstance(part, ToolResultPart):
            result = {
                "toolUseId": part.tool_call_id,
                "content": [{"text": part.content or "(empty)"}],
                "status": "error" if part.is_error else "success",
            }
            blocks.append({"toolResult": result})
        else:
            reasoning: dict[str, Any] = {"text": part.text}
            if part.signature:
                reasoning["signature"] = part.signature
            blocks.append({"reasoningContent": {"reasoningText": reasoning}})
        if part.cache_breakpoint and blocks:
            blocks.append(dict(CACHE_POINT))
    return blocks


def converse_messages(
    messages: Iterable[Message], prompt_caching: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system blocks, messages): tool results become user turns and same-role turns merge."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        blocks = content_blocks(message)
        if message.role is Role.SYSTEM:
            system.extend(b for b in blocks if "text" in b or "cachePoint" in b)
            continue
        role = "assistant" if message.role is Role.ASSISTANT else "user"
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    if prompt_caching:
        _add_cache_points(system, turns)
    _limit_cache_points(system, turns)
    return system, turns


def _add_cache_points(system: list[dict[str, Any]], turns: list[dict[str, Any]]) -> None:
    """The lineage's automatic caching: after the system prompt and the last two user turns."""
    if system and "cachePoint" not in system[-1]:
        system.append(dict(CACHE_POINT))
    user_turns = [t for t in turns if t["role"] == "user"][-2:]
    for turn in user_turns:
        if "cachePoint" not in turn["content"][-1]:
            turn["content"].append(dict(CACHE_POINT))


def _limit_cache_points(system: list[dict[str, Any]], turns: list[dict[str, Any]]) -> None:
    """Bedrock accepts at most MAX_CACHE_POINTS per request: drop the earliest message ones."""
    blocks = [t["content"] for t in turns]
    points = [(c, b) for c in blocks for b in c if "cachePoint" in b]
    allowed = MAX_CACHE_POINTS - sum(1 for b in system if "cachePoint" in b)
    for content, block in points[: max(len(points) - allowed, 0)]:
        content.remove(block)


def tool_config(
    tools: list[Tool], mode: ToolChoiceMode, name: str, history_has_tools: bool
) -> dict[str, Any] | None:
    # Converse has no "none" choice: leave tools out, unless the history holds tool blocks, which
    # Bedrock accepts only with a toolConfig present.
    if not tools or (mode is ToolChoiceMode.NONE and not history_has_tools):
        return None
    config: dict[str, Any] = {
        "tools": [
            {
                "toolSpec": {
                    "name": t.name,
                    "description": t.description or t.name,
                    "inputSchema": {"json": dict(t.parameters) or {"type": "object", "properties": {}}},
                }
            }
            for t in tools
        ]
    }
    if mode is ToolChoiceMode.REQUIRED:
        config["toolChoice"] = {"any": {}}
    elif mode is ToolChoiceMode.TOOL:
        config["toolChoice"] = {"tool": {"name": name}}
    # AUTO is Bedrock's default; leaving `toolChoice` out also suits models that reject the field.
    return config


def reasoning_fields(request: ChatRequest, family: Family) -> dict[str, Any]:
    """Model fields that turn reasoning on: Claude's `thinking`, Nova 2's `reasoningConfig`."""
    options = request.reasoning
    if options is None or not (options.enabled or options.effort):
        return {}
    if family is Family.ANTHROPIC:
        # The direct Anthropic API's rules, so that both budget and refuse alike. Converse needs no
        # maximum: without one the budget is the requested or default one, plus room for the answer.
        requested = max(MIN_THINKING_BUDGET, options.budget_tokens or DEFAULT_THINKING_BUDGET)
        max_tokens = request.max_tokens or requested + THINKING_ANSWER_TOKENS
        budget = thinking_budget(request, max_tokens, forced_tool=bool(request.tools))
        return {"thinking": {"type": "enabled", "budget_tokens": budget}}
    if family is Family.NOVA:
        effort = {"": "medium", "minimal": "low"}.get(options.effort, options.effort)
        return {"reasoningConfig": {"type": "enabled", "maxReasoningEffort": effort}}
    return {}


def output_config(fmt: ResponseFormat | None, model_id: str) -> dict[str, Any] | None:
    """Converse's native structured output (`outputConfig.textFormat`, the schema as a JSON string),
    or a refusal: Converse has no schema-less JSON mode."""
    if fmt is None or fmt.type is ResponseFormatType.TEXT:
        return None
    if fmt.type is ResponseFormatType.JSON_OBJECT:
        raise unhonoured(
            "response_format",
            "Bedrock",
            model_id,
            "Converse has no JSON mode without a schema; send TYPE_JSON_SCHEMA",
        )
    schema = {
        "schema": json.dumps(closed_objects(fmt.json_schema or {})),
        "name": fmt.schema_name or "response",
    }
    return {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": schema}}}


def converse_request(
    request: ChatRequest, model_id: str, family: Family, *, prompt_caching: bool = False
) -> dict[str, Any]:
    """Keyword arguments for `converse` / `converse_stream`."""
    system, messages = converse_messages(request.messages, prompt_caching)
    if not messages:
        raise invalid_argument("messages: Bedrock needs at least one user or assistant message")
    kwargs: dict[str, Any] = {"modelId": model_id, "messages": messages}
    if system:
        kwargs["system"] = system
    extra = reasoning_fields(request, family)
    inference: dict[str, Any] = {}
    if request.max_tokens is not None:
        inference["maxTokens"] = request.max_tokens
    elif "thinking" in extra:  # Claude needs room for the answer beyond the thinking budget
        inference["maxTokens"] = extra["thinking"]["budget_tokens"] + THINKING_ANSWER_TOKENS
    if not extra:  # Claude rejects temperature and top_p while thinking; dropped for Nova 2 alike
        if request.temperature is not None:
            inference["temperature"] = request.temperature
        if request.top_p is not None:
            inference["topP"] = request.top_p
    if request.stop:
        inference["stopSequences"] = list(request.stop)
    if inference:
        kwargs["inferenceConfig"] = inference
    choice = request.tool_choice or ToolChoice()
    has_tool_blocks = any(
        isinstance(p, ToolCallPart | ToolResultPart) for m in request.messages for p in m.content
    )
    if tools := tool_config(request.tools, choice.mode, choice.name, has_tool_blocks):
        kwargs["toolConfig"] = tools
    if output := output_config(request.response_format, model_id):
        kwargs["outputConfig"] = output
    for key, value in refuse_owned(request.provider_options, OWNED_FIELDS).items():
        (kwargs if key in CONVERSE_TOP_LEVEL else extra)[key] = value
    if extra:
        kwargs["additionalModelRequestFields"] = extra
    return kwargs


def count_tokens_input(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The CountTokens `input` for a Converse request (same messages, system and tools)."""
    converse = {k: kwargs[k] for k in ("messages", "system", "toolConfig") if k in kwargs}
    return {"converse": converse}


# --- Converse responses ------------------------------------------------------------------------


class ConverseStreamDecoder:
    """Turns ConverseStream events (botocore-parsed dicts) into domain events."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.stop_reason: str | None = None
        self._tools: dict[int, tuple[int, str, str, list[str]]] = {}  # block -> (index, id, name, args)
        self._tool_count = 0

    def feed(self, event: Mapping[str, Any]) -> list[StreamEvent]:
        if not isinstance(event, Mapping):
            raise malformed("ConverseStream event")
        out: list[StreamEvent] = []
        if "contentBlockStart" in event:
            start = _obj(event["contentBlockStart"])
            tool = _obj(_obj(start.get("start")).get("toolUse"))
            if tool:
                index = self._tool_count
                self._tool_count += 1
                call_id, name = _str(tool.get("toolUseId")), _str(tool.get("name"))
                self._tools[_int(start.get("contentBlockIndex"))] = (index, call_id, name, [])
                out.append(ToolCallStart(index, call_id, name))
        elif "contentBlockDelta" in event:
            body = _obj(event["contentBlockDelta"])
            out.extend(self._delta(_int(body.get("contentBlockIndex")), _obj(body.get("delta"))))
        elif "contentBlockStop" in event:
            block = _int(_obj(event["contentBlockStop"]).get("contentBlockIndex"))
            tool_state = self._tools.pop(block, None)
            if tool_state is not None:
                index, call_id, name, args = tool_state
                out.append(ToolCallEnd(index, ToolCall(call_id, name, "".join(args) or "{}")))
        elif "messageStop" in event:
            self.stop_reason = _str(_obj(event["messageStop"]).get("stopReason"))
        elif "metadata" in event:
            metadata = _obj(event["metadata"])
            if "usage" in metadata:
                out.append(UsageEvent(converse_usage(metadata.get("usage"), metadata.get("metrics"))))
        return out

    def _delta(self, block: int, delta: Mapping[str, Any]) -> list[StreamEvent]:
        if "text" in delta:
            text = _str(delta["text"])
            return [TextDelta(text)] if text else []
        if "toolUse" in delta:
            piece = _str(_obj(delta["toolUse"]).get("input"))
            tool_state = self._tools.get(block)
            if tool_state is None or not piece:
                return []
            tool_state[3].append(piece)
            return [ToolCallDelta(tool_state[0], piece)]
        if "reasoningContent" in delta:
            reasoning = _obj(delta["reasoningContent"])
            text, signature = _str(reasoning.get("text")), _str(reasoning.get("signature"))
            return [ReasoningDelta(text, signature)] if text or signature else []
        return []

    def end(self) -> list[StreamEvent]:
        """Call when the stream ends: the finish, or an error if Bedrock never said it stopped."""
        if self.stop_reason is None:
            raise GatewayError(ErrorKind.UNAVAILABLE, "Bedrock stream ended before messageStop")
        return [ProviderFinish(finish_reason(self.stop_reason), self.stop_reason, model=self.model)]


def converse_response_events(response: Mapping[str, Any], model: str) -> list[StreamEvent]:
    """A whole Converse response as the events its stream would have carried."""
    message = _obj(_obj(response.get("output")).get("message"))
    events: list[StreamEvent] = []
    tool_index = 0
    for block in _list(message.get("content")):
        block = _obj(block)
        if "text" in block:
            if text := _str(block["text"]):
                events.append(TextDelta(text))
        elif "reasoningContent" in block:
            reasoning = _obj(_obj(block["reasoningContent"]).get("reasoningText"))
            events.append(ReasoningDelta(_str(reasoning.get("text")), _str(reasoning.get("signature"))))
        elif "toolUse" in block:
            tool = _obj(block["toolUse"])
            call = ToolCall(
                _str(tool.get("toolUseId")), _str(tool.get("name")), json.dumps(tool.get("input", {}))
            )
            events += [ToolCallStart(tool_index, call.id, call.name), ToolCallEnd(tool_index, call)]
            tool_index += 1
    if "usage" in response:
        events.append(UsageEvent(converse_usage(response.get("usage"), response.get("metrics"))))
    stop = _str(response.get("stopReason"))
    events.append(ProviderFinish(finish_reason(stop), stop, model=model))
    return events


# --- InvokeModel bodies ------------------------------------------------------------------------


def invoke_body(family: Family, request: CompletionRequest, default_max_tokens: int) -> dict[str, Any]:
    """The InvokeModel JSON body each family documents, for a plain prompt completion."""
    prompt, max_tokens = request.prompt, request.max_tokens or default_max_tokens
    temperature, top_p, stop = request.temperature, request.top_p, list(request.stop)
    body: dict[str, Any]
    if family is Family.ANTHROPIC:
        body = {
            "anthropic_version": ANTHROPIC_VERSION,
            "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": [{"type": "text", "text": prompt}]}],
        }
        _put(body, temperature=temperature, top_p=top_p, stop_sequences=stop)
    elif family is Family.NOVA:
        config: dict[str, Any] = {"maxTokens": max_tokens}
        _put(config, temperature=temperature, topP=top_p, stopSequences=stop)
        body = {
            "schemaVersion": "messages-v1",
            "messages": [{"role": "user", "content": [{"text": prompt}]}],
            "inferenceConfig": config,
        }
    elif family is Family.TITAN:
        config = {"maxTokenCount": max_tokens}
        _put(config, temperature=temperature, topP=top_p, stopSequences=stop)
        body = {"inputText": prompt, "textGenerationConfig": config}
    elif family is Family.LLAMA:
        body = {"prompt": prompt, "max_gen_len": max_tokens}
        _put(body, temperature=temperature, top_p=top_p)
    elif family is Family.MISTRAL:
        body = {"prompt": prompt, "max_tokens": max_tokens}
        _put(body, temperature=temperature, top_p=top_p, stop=stop)
    elif family is Family.COHERE:
        # Command R and later take `message` (+ `chat_history`); legacy Command takes `prompt`.
        is_legacy = "command-r" not in request.model
        body = {"prompt": prompt} if is_legacy else {"message": prompt, "chat_history": []}
        body["max_tokens"] = max_tokens
        _put(body, temperature=temperature, p=top_p, stop_sequences=stop)
    else:
        raise invalid_argument(
            f"model: no InvokeModel body is known for {request.model!r}; use Chat (Converse) instead"
        )
    body.update(refuse_owned(request.provider_options, OWNED_FIELDS))
    return body


def _put(target: dict[str, Any], **values: Any) -> None:
    for key, value in values.items():
        if value is not None and value != []:
            target[key] = value


# --- InvokeModel responses and stream chunks ---------------------------------------------------


ANTHROPIC_USAGE = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
NOVA_USAGE = ("inputTokens", "outputTokens", "cacheReadInputTokenCount", "cacheWriteInputTokenCount")


class InvokeDecoder:
    """Decodes one family's InvokeModel stream chunks (already JSON-decoded) into events.

    `feed` takes a chunk; `end` returns usage and finish. A whole InvokeModel response goes
    through `response`, which reuses the chunk logic where the shapes agree.
    """

    def __init__(self, family: Family, model: str) -> None:
        self.family = family
        self.model = model
        self.stop_reason = ""
        self.response_id = ""
        self.input_tokens = 0
        self.output_tokens = 0
        self.cache_read = 0
        self.cache_write = 0
        self.raw_usage: dict[str, Any] = {}
        self._tool_index = -1
        self._anthropic_tools: dict[int, tuple[int, str, str, list[str]]] = {}

    def feed(self, chunk: Mapping[str, Any]) -> list[StreamEvent]:
        metrics = _obj(chunk.get("amazon-bedrock-invocationMetrics"))
        if metrics:  # Bedrock's own counts, on the last chunk of every family
            self.raw_usage["amazon-bedrock-invocationMetrics"] = dict(metrics)
            self.input_tokens = self.input_tokens or _int(metrics.get("inputTokenCount"))
            self.output_tokens = self.output_tokens or _int(metrics.get("outputTokenCount"))
        handler = getattr(self, f"_{self.family.value}_chunk")
        events: list[StreamEvent] = handler(chunk)
        return events

    def end(self) -> list[StreamEvent]:
        used = usage(self.input_tokens, self.output_tokens, self.cache_read, self.cache_write, self.raw_usage)
        finish = ProviderFinish(
            finish_reason(self.stop_reason), self.stop_reason, model=self.model, response_id=self.response_id
        )
        return [UsageEvent(used), finish]

    def response(self, body: Mapping[str, Any]) -> list[StreamEvent]:
        if self.family is Family.ANTHROPIC:
            events = self._anthropic_message(body)
        elif self.family is Family.NOVA:
            events = self._nova_message(body)
        elif self.family is Family.TITAN:
            self.input_tokens = _int(body.get("inputTextTokenCount"))
            events = []
            for result in _list(body.get("results")):
                events += self._titan_chunk(_obj(result))
        elif self.family is Family.COHERE and "generations" in body:
            events = []
            for generation in _list(body.get("generations")):
                events += self._cohere_chunk(_obj(generation))
        else:
            events = self.feed(body)
        return events + self.end()

    # Anthropic Messages on Bedrock ------------------------------------------------------------

    def _take_usage(self, raw: Mapping[str, Any], names: tuple[str, str, str, str]) -> None:
        """Record a usage object; `names` are the family's input, output, cache-read, cache-write keys."""
        self.raw_usage.update(raw)
        self.input_tokens = _int(raw.get(names[0])) or self.input_tokens
        self.output_tokens = _int(raw.get(names[1])) or self.output_tokens
        self.cache_read = _int(raw.get(names[2])) or self.cache_read
        self.cache_write = _int(raw.get(names[3])) or self.cache_write

    def _anthropic_usage(self, raw: Mapping[str, Any]) -> None:
        self._take_usage(raw, ANTHROPIC_USAGE)

    def _anthropic_chunk(self, chunk: Mapping[str, Any]) -> list[StreamEvent]:
        kind = _str(chunk.get("type"))
        if kind == "message_start":
            message = _obj(chunk.get("message"))
            self.response_id = _str(message.get("id"))
            self._anthropic_usage(_obj(message.get("usage")))
        elif kind == "content_block_start":
            block = _obj(chunk.get("content_block"))
            if _str(block.get("type")) == "tool_use":
                self._tool_index += 1
                call_id, name = _str(block.get("id")), _str(block.get("name"))
                self._anthropic_tools[_int(chunk.get("index"))] = (self._tool_index, call_id, name, [])
                return [ToolCallStart(self._tool_index, call_id, name)]
            if text := _str(block.get("text")):
                return [TextDelta(text)]
        elif kind == "content_block_delta":
            return self._anthropic_delta(_int(chunk.get("index")), _obj(chunk.get("delta")))
        elif kind == "content_block_stop":
            tool = self._anthropic_tools.pop(_int(chunk.get("index")), None)
            if tool is not None:
                return [ToolCallEnd(tool[0], ToolCall(tool[1], tool[2], "".join(tool[3]) or "{}"))]
        elif kind == "message_delta":
            self.stop_reason = _str(_obj(chunk.get("delta")).get("stop_reason")) or self.stop_reason
            self._anthropic_usage(_obj(chunk.get("usage")))
        elif kind == "error":
            error = _obj(chunk.get("error"))
            raise GatewayError(
                ErrorKind.UNAVAILABLE,
                f"Bedrock Claude stream error {_str(error.get('type'))}: {_str(error.get('message'))}",
            )
        return []

    def _anthropic_delta(self, block: int, delta: Mapping[str, Any]) -> list[StreamEvent]:
        kind = _str(delta.get("type"))
        if kind == "text_delta":
            text = _str(delta.get("text"))
            return [TextDelta(text)] if text else []
        if kind == "thinking_delta":
            return [ReasoningDelta(_str(delta.get("thinking")))]
        if kind == "signature_delta":
            return [ReasoningDelta("", _str(delta.get("signature")))]
        if kind == "input_json_delta":
            tool = self._anthropic_tools.get(block)
            piece = _str(delta.get("partial_json"))
            if tool is None or not piece:
                return []
            tool[3].append(piece)
            return [ToolCallDelta(tool[0], piece)]
        return []

    def _anthropic_message(self, body: Mapping[str, Any]) -> list[StreamEvent]:
        self.response_id = _str(body.get("id"))
        self.stop_reason = _str(body.get("stop_reason"))
        self._anthropic_usage(_obj(body.get("usage")))
        events: list[StreamEvent] = []
        for block in map(_obj, _list(body.get("content"))):
            kind = _str(block.get("type"))
            if kind == "text" and (text := _str(block.get("text"))):
                events.append(TextDelta(text))
            elif kind == "thinking":
                events.append(ReasoningDelta(_str(block.get("thinking")), _str(block.get("signature"))))
            elif kind == "tool_use":
                self._tool_index += 1
                call = ToolCall(
                    _str(block.get("id")), _str(block.get("name")), json.dumps(block.get("input"))
                )
                events += [
                    ToolCallStart(self._tool_index, call.id, call.name),
                    ToolCallEnd(self._tool_index, call),
                ]
        return events

    # Amazon Nova (its stream mirrors ConverseStream's event names) -----------------------------

    def _nova_usage(self, raw: Mapping[str, Any]) -> None:
        self._take_usage(raw, NOVA_USAGE)

    def _nova_chunk(self, chunk: Mapping[str, Any]) -> list[StreamEvent]:
        if "contentBlockDelta" in chunk:
            delta = _obj(_obj(chunk["contentBlockDelta"]).get("delta"))
            if text := _str(delta.get("text")):
                return [TextDelta(text)]
            reasoning = _obj(delta.get("reasoningContent"))
            if reasoning_text := _str(reasoning.get("text")):
                return [ReasoningDelta(reasoning_text)]
        elif "messageStop" in chunk:
            self.stop_reason = _str(_obj(chunk["messageStop"]).get("stopReason"))
        elif "metadata" in chunk:
            self._nova_usage(_obj(_obj(chunk["metadata"]).get("usage")))
        return []

    def _nova_message(self, body: Mapping[str, Any]) -> list[StreamEvent]:
        self.stop_reason = _str(body.get("stopReason"))
        self._nova_usage(_obj(body.get("usage")))
        message = _obj(_obj(body.get("output")).get("message"))
        texts = [_str(_obj(block).get("text")) for block in _list(message.get("content"))]
        return [TextDelta(t) for t in texts if t]

    # Titan, Llama, Mistral, Cohere: flat chunks -----------------------------------------------

    def _titan_chunk(self, chunk: Mapping[str, Any]) -> list[StreamEvent]:
        self.input_tokens = _int(chunk.get("inputTextTokenCount")) or self.input_tokens
        count = _int(chunk.get("totalOutputTextTokenCount")) or _int(chunk.get("tokenCount"))
        self.output_tokens = count or self.output_tokens
        self.stop_reason = _str(chunk.get("completionReason")) or self.stop_reason
        self._raw(chunk, "inputTextTokenCount", "totalOutputTextTokenCount", "tokenCount")
        text = _str(chunk.get("outputText"))
        return [TextDelta(text)] if text else []

    def _llama_chunk(self, chunk: Mapping[str, Any]) -> list[StreamEvent]:
        self.input_tokens = _int(chunk.get("prompt_token_count")) or self.input_tokens
        self.output_tokens = _int(chunk.get("generation_token_count")) or self.output_tokens
        self.stop_reason = _str(chunk.get("stop_reason")) or self.stop_reason
        self._raw(chunk, "prompt_token_count", "generation_token_count")
        text = _str(chunk.get("generation"))
        return [TextDelta(text)] if text else []

    def _mistral_chunk(self, chunk: Mapping[str, Any]) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        for output in map(_obj, _list(chunk.get("outputs"))):
            if text := _str(output.get("text")):
                events.append(TextDelta(text))
            self.stop_reason = _str(output.get("stop_reason")) or self.stop_reason
        return events

    def _cohere_chunk(self, chunk: Mapping[str, Any]) -> list[StreamEvent]:
        self.stop_reason = _str(chunk.get("finish_reason")) or self.stop_reason
        self.response_id = _str(chunk.get("generation_id")) or self.response_id
        if chunk.get("is_finished") is True or _str(chunk.get("event_type")) == "stream-end":
            meta = _obj(_obj(_obj(chunk.get("response")).get("meta")).get("billed_units"))
            self.input_tokens = _int(meta.get("input_tokens")) or self.input_tokens
            self.output_tokens = _int(meta.get("output_tokens")) or self.output_tokens
            return []
        events: list[StreamEvent] = []
        if text := _str(chunk.get("text")):
            events.append(TextDelta(text))
        for generation in map(_obj, _list(chunk.get("generations"))):  # legacy Command stream
            if generation_text := _str(generation.get("text")):
                events.append(TextDelta(generation_text))
            self.stop_reason = _str(generation.get("finish_reason")) or self.stop_reason
        return events

    def _other_chunk(self, chunk: Mapping[str, Any]) -> list[StreamEvent]:
        raise invalid_argument(f"model: no InvokeModel stream parser is known for {self.model!r}")

    def _raw(self, chunk: Mapping[str, Any], *keys: str) -> None:
        self.raw_usage.update({k: chunk[k] for k in keys if chunk.get(k) is not None})


def stream_chunk_payload(event: Mapping[str, Any]) -> dict[str, Any] | None:
    """The JSON object inside one InvokeModelWithResponseStream `chunk` event, or None for others."""
    if not isinstance(event, Mapping):
        raise malformed("InvokeModel stream event")
    chunk = _obj(event.get("chunk"))
    data = chunk.get("bytes")
    if data is None:
        return None
    if not isinstance(data, bytes | str):
        raise malformed("InvokeModel stream chunk")
    return decode_json_object(data, "InvokeModel stream chunk")


# --- embeddings --------------------------------------------------------------------------------


def titan_embed_body(text: str, dimensions: int) -> dict[str, Any]:
    body: dict[str, Any] = {"inputText": text}
    if dimensions:
        body["dimensions"] = dimensions
        body["normalize"] = True
    return body


def titan_embed_response(body: Mapping[str, Any]) -> tuple[list[float], int]:
    vector = _floats(body.get("embedding"))
    if not vector:
        raise malformed("Titan embedding response")
    return vector, _int(body.get("inputTextTokenCount"))


def cohere_embed_body(texts: list[str]) -> dict[str, Any]:
    return {"texts": texts, "input_type": "search_document", "embedding_types": ["float"]}


def cohere_embed_response(body: Mapping[str, Any], expected: int) -> list[list[float]]:
    embeddings = body.get("embeddings")
    if isinstance(embeddings, Mapping):  # with embedding_types: {"float": [[...], ...]}
        embeddings = embeddings.get("float")
    vectors = [_floats(v) for v in _list(embeddings)]
    if len(vectors) != expected or not all(vectors):
        raise malformed("Cohere embedding response")
    return vectors
