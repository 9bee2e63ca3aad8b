"""Bedrock wire codec: domain requests to Converse bodies, and responses to events (InvokeModel's
family codecs are in `invoke/`).

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
    ImagePart,
    Message,
    ProviderFinish,
    RawContent,
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
from provider_gateway.providers.anthropic.codec import (
    MIN_THINKING_BUDGET,
    MIN_TOP_P_WITH_THINKING,
    thinking_budget,
)
from provider_gateway.providers.bedrock.common import (
    OWNED_FIELDS,
    decode_json_object,
    finish_reason,
    malformed,
    usage,
)
from provider_gateway.providers.bedrock.common import count as _int
from provider_gateway.providers.bedrock.common import floats as _floats
from provider_gateway.providers.bedrock.common import items as _list
from provider_gateway.providers.bedrock.common import obj as _obj
from provider_gateway.providers.bedrock.common import text as _str
from provider_gateway.providers.bedrock.invoke import (
    InvokeDecoder,
    completion,
    converse_features,
    invoke_body,
)
from provider_gateway.providers.bedrock.invoke.base import ConverseFeatures
from provider_gateway.providers.bedrock.replay_rules import SEND_ALL, ReplayRules, replay_rules
from provider_gateway.providers.embed_dimensions import (
    COHERE_V4_SIZES,
    TITAN_V2_SIZES,
    check_size,
)
from provider_gateway.providers.owned_options import refuse_owned
from provider_gateway.providers.structured_output import closed_objects, unhonoured
from provider_gateway.providers.tool_ids import word_tool_id
from provider_gateway.providers.vendor_wire import served_tier

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
# Converse parameters that provider_options may set directly (the request's members the gateway
# does not write itself); other keys are model fields.
CONVERSE_TOP_LEVEL = frozenset(
    {
        "guardrailConfig",
        "performanceConfig",
        "serviceTier",
        "requestMetadata",
        "promptVariables",
        "additionalModelResponseFieldPaths",
    }
)
# Re-exported for the adapter: InvokeModel's family codecs live in `invoke/`.
__all__ = ["InvokeDecoder", "completion", "decode_json_object", "finish_reason", "invoke_body", "malformed"]


# --- usage -------------------------------------------------------------------------------------


# What a stream's `metadata` event or a whole response says of how the request was served
# (priority or flex tier, latency-optimized inference): it sets the price, so it goes in `usage.raw`.
SERVED_AS = ("serviceTier", "performanceConfig")
BEDROCK_TIERS = {"default": "standard"}  # `reserved` (provisioned capacity) stays: no token price


def converse_usage(holder: Mapping[str, Any]) -> Usage:
    """Usage from a stream's `metadata` event or a whole Converse response: Bedrock's usage, with
    `latencyMs` and the `SERVED_AS` fields Bedrock reports beside it."""
    raw = _obj(holder.get("usage"))
    result = usage(
        _int(raw.get("inputTokens")),
        _int(raw.get("outputTokens")),
        _int(raw.get("cacheReadInputTokens")),
        _int(raw.get("cacheWriteInputTokens")),
        raw,
    )
    latency = _int(_obj(holder.get("metrics")).get("latencyMs"))
    if latency:
        result.raw["latencyMs"] = latency
    result.raw.update({key: holder[key] for key in SERVED_AS if key in holder})
    # `serviceTier: {"type": "priority" | "default" | "flex" | "reserved"}` (botocore's model)
    result.service_tier = served_tier(_obj(holder.get("serviceTier")).get("type"), BEDROCK_TIERS)
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


def content_blocks(message: Message, rules: ReplayRules = SEND_ALL) -> list[dict[str, Any]]:
    """One message's parts as Converse content blocks, with cache points after marked parts."""
    blocks: list[dict[str, Any]] = []
    # Reasoning must come first in an assistant turn for Claude to accept the replay.
    parts = sorted(message.content, key=lambda p: not isinstance(p, ReasoningPart))
    for part in filter(rules.sendable, parts):
        if isinstance(part, TextPart):
            if part.text:
                blocks.append({"text": part.text})
        elif isinstance(part, ImagePart):
            blocks.append(image_block(part))
        elif isinstance(part, ToolCallPart):
            call = part.call
            tool_use = {"toolUseId": word_tool_id(call.id), "name": call.name, "input": tool_input(call)}
            blocks.append({"toolUse": tool_use})
        elif isinstance(part, ToolResultPart):
            result = {
                "toolUseId": word_tool_id(part.tool_call_id),
                "content": [{"text": part.content or "(empty)"}],
            }
            if rules.tool_status:
                result["status"] = "error" if part.is_error else "success"
            blocks.append({"toolResult": result})
        elif part.redacted:  # the encrypted block, sent back as Bedrock gave it (base64)
            blocks.append({"reasoningContent": {"redactedContent": part.signature}})
        else:
            reasoning: dict[str, Any] = {"text": part.text}
            if part.signature:
                reasoning["signature"] = part.signature
            blocks.append({"reasoningContent": {"reasoningText": reasoning}})
        if part.cache_breakpoint and blocks:
            blocks.append(dict(CACHE_POINT))
    return blocks


def converse_messages(
    messages: Iterable[Message], prompt_caching: bool, rules: ReplayRules = SEND_ALL
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system blocks, messages): tool results become user turns and same-role turns merge."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        blocks = content_blocks(message, rules)
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


def tool_config(tools: list[Tool], mode: ToolChoiceMode, name: str) -> dict[str, Any] | None:
    # Converse has no "none" choice: the tools are left out (see `tool_history_as_text`).
    if not tools or mode is ToolChoiceMode.NONE:
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


def has_tool_blocks(messages: Iterable[Message]) -> bool:
    return any(isinstance(p, ToolCallPart | ToolResultPart) for m in messages for p in m.content)


def emulated_fields(request: ChatRequest) -> tuple[str, ...]:
    """What `converse_request` emulates: tool_choice none over a history with tool blocks."""
    choice = request.tool_choice
    none = bool(request.tools) and choice is not None and choice.mode is ToolChoiceMode.NONE
    return ("tool_choice",) if none and has_tool_blocks(request.messages) else ()


def tool_history_as_text(messages: Iterable[Message]) -> list[Message]:
    """The history with its tool calls and results as text. Converse rejects tool blocks without a
    toolConfig, and a toolConfig lets the model call its tools: with tool_choice none the tools are
    left out and the earlier calls and results are told as text, so the model still sees them."""
    shown: list[Message] = []
    for message in messages:
        parts: list[Any] = []
        for part in message.content:
            if isinstance(part, ToolCallPart):
                call = part.call
                parts.append(TextPart(f"[called tool {call.name} (id {call.id}) with {call.arguments_json}]"))
            elif isinstance(part, ToolResultPart):
                status = "error" if part.is_error else "result"
                parts.append(TextPart(f"[tool {status} for id {part.tool_call_id}: {part.content}]"))
            else:
                parts.append(part)
        shown.append(Message(message.role, tuple(parts)))
    return shown


def reasoning_fields(
    request: ChatRequest, features: ConverseFeatures | None, unresolved: str = ""
) -> dict[str, Any]:
    """Model fields that turn reasoning on (Claude's `thinking`, Nova 2's `reasoningConfig`), or
    a refusal of what the model cannot take; a model of no known family gets none (`unresolved`:
    why an application profile's model is unknown, for that refusal)."""
    options = request.reasoning
    if options is None or not (options.enabled or options.effort or options.budget_tokens):
        return {}
    style = features.reasoning if features is not None else "unknown"
    if style == "budget":  # Claude: the direct Anthropic API's rules, so that both refuse alike
        if options.effort:
            raise _refused(request, "reasoning.effort", "Claude thinking takes a budget, not an effort")
        # Converse needs no maximum: without one the budget is the requested or default one, plus
        # room for the answer.
        requested = max(MIN_THINKING_BUDGET, options.budget_tokens or DEFAULT_THINKING_BUDGET)
        max_tokens = request.max_tokens or requested + THINKING_ANSWER_TOKENS
        budget = thinking_budget(request, max_tokens, forced_tool=bool(request.tools))
        return {"thinking": {"type": "enabled", "budget_tokens": budget}}
    if style == "effort":  # Nova 2
        if options.budget_tokens:
            raise _refused(
                request, "reasoning.budget_tokens", "Nova 2 reasoning takes an effort, not a budget"
            )
        effort = {"": "medium", "minimal": "low"}.get(options.effort, options.effort)
        return {"reasoningConfig": {"type": "enabled", "maxReasoningEffort": effort}}
    if style == "always" and not (options.effort or options.budget_tokens):
        return {}  # it reasons unasked: `enabled` is honoured as it is
    # Name what the model cannot take: any reasoning at all, or only the setting.
    settings = (("enabled", style != "always" and options.enabled), ("effort", options.effort))
    asked = [name for name, on in settings if on]
    field = "reasoning." + (asked[0] if asked else "budget_tokens")
    why = {
        "always": "the model reasons unasked and takes no reasoning setting",
        "unknown": "no reasoning setting is documented for this model on Bedrock"
        + (f"; {unresolved}" if unresolved else ""),
    }.get(style, "the model has no reasoning on Bedrock")
    raise _refused(request, field, why)


def _refused(request: ChatRequest, field: str, why: str) -> GatewayError:
    return unhonoured(field, "Bedrock", request.model, why)


def sampling(request: ChatRequest, extra: Mapping[str, Any]) -> dict[str, Any]:
    """temperature and topP. Claude thinking takes only temperature 1 and top_p from 0.95 to 1
    (as on the Anthropic API): other values are refused, never dropped."""
    if "thinking" in extra:
        if request.temperature is not None and request.temperature != 1:
            raise _refused(request, "temperature", "with thinking on only 1 is allowed")
        if request.top_p is not None and request.top_p < MIN_TOP_P_WITH_THINKING:
            raise _refused(request, "top_p", f"with thinking on it must be {MIN_TOP_P_WITH_THINKING} to 1")
    config: dict[str, Any] = {}
    if request.temperature is not None:
        config["temperature"] = request.temperature
    if request.top_p is not None:
        config["topP"] = request.top_p
    return config


def refuse_unoffered(request: ChatRequest, features: ConverseFeatures | None) -> None:
    """Tools and images on a model whose family says Converse offers it none."""
    if features is None:
        return
    if request.tools and not features.tools:
        raise _refused(request, "tools", "Converse offers this model no tool use")
    if not features.vision and any(isinstance(p, ImagePart) for m in request.messages for p in m.content):
        raise _refused(request, "image", "the model takes no images")


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
    request: ChatRequest,
    model_id: str,
    *,
    prompt_caching: bool = False,
    family_id: str = "",
    unresolved: str = "",
) -> dict[str, Any]:
    """Keyword arguments for `converse` / `converse_stream`. `family_id`, when given, is the model
    whose family decides what is sent (the one an application inference profile runs: profiles.py);
    `model_id` is what is called; `unresolved`, why that model is unknown (refusals that depend on
    the family say it)."""
    features = converse_features(family_id or model_id)
    refuse_unoffered(request, features)
    history = tool_history_as_text(request.messages) if emulated_fields(request) else request.messages
    system, messages = converse_messages(history, prompt_caching, replay_rules(family_id or model_id))
    if not messages:
        raise invalid_argument("messages: Bedrock needs at least one user or assistant message")
    kwargs: dict[str, Any] = {"modelId": model_id, "messages": messages}
    if system:
        kwargs["system"] = system
    extra = reasoning_fields(request, features, unresolved)
    inference: dict[str, Any] = {}
    if request.max_tokens is not None:
        inference["maxTokens"] = request.max_tokens
    elif "thinking" in extra:  # Claude needs room for the answer beyond the thinking budget
        inference["maxTokens"] = extra["thinking"]["budget_tokens"] + THINKING_ANSWER_TOKENS
    inference.update(sampling(request, extra))
    if request.stop:
        inference["stopSequences"] = list(request.stop)
    if inference:
        kwargs["inferenceConfig"] = inference
    choice = request.tool_choice or ToolChoice()
    if tools := tool_config(request.tools, choice.mode, choice.name):
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

# A `toolUse` of this type is a server tool's call (Nova's built-in code interpreter, web
# grounding), which Bedrock runs itself and answers with a `toolResult` block: neither is a call for
# the client, so both reach it as RawContent, as Anthropic's server tools do.
SERVER_TOOL_USE = "server_tool_use"


class ConverseStreamDecoder:
    """Turns ConverseStream events (botocore-parsed dicts) into domain events."""

    def __init__(self, model: str, emulated: tuple[str, ...] = ()) -> None:
        self.model = model
        self.emulated = emulated  # request fields the request emulated, for the finish
        self.stop_reason: str | None = None
        self._tools: dict[int, tuple[int, str, str, list[str]]] = {}  # block -> (index, id, name, args)
        self._tool_count = 0
        # A server tool's call and result (Nova's built-in tools), which Bedrock ran itself: block ->
        # (member, the fields its start gave, its streamed pieces), passed on whole at its stop.
        self._server: dict[int, tuple[str, dict[str, Any], list[Any]]] = {}

    def feed(self, event: Mapping[str, Any]) -> list[StreamEvent]:
        if not isinstance(event, Mapping):
            raise malformed("ConverseStream event")
        out: list[StreamEvent] = []
        if "contentBlockStart" in event:
            start = _obj(event["contentBlockStart"])
            begun = _obj(start.get("start"))
            tool = _obj(begun.get("toolUse"))
            if tool.get("type") == SERVER_TOOL_USE or "toolResult" in begun:
                member = "toolUse" if tool else "toolResult"
                self._server[_int(start.get("contentBlockIndex"))] = (member, dict(_obj(begun[member])), [])
            elif tool:
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
            if block in self._server:
                return [server_block(*self._server.pop(block))]
            tool_state = self._tools.pop(block, None)
            if tool_state is not None:
                index, call_id, name, args = tool_state
                out.append(ToolCallEnd(index, ToolCall(call_id, name, "".join(args) or "{}")))
        elif "messageStop" in event:
            stop = _obj(event["messageStop"])
            self.stop_reason = _str(stop.get("stopReason"))
            out.extend(model_response_fields(stop))
        elif "metadata" in event:
            metadata = _obj(event["metadata"])
            out.extend(trace(metadata))
            if "usage" in metadata:
                out.append(UsageEvent(converse_usage(metadata)))
        return out

    def _delta(self, block: int, delta: Mapping[str, Any]) -> list[StreamEvent]:
        if block in self._server:
            pieces = self._server[block][2]
            if "toolUse" in delta:
                pieces.append(_str(_obj(delta["toolUse"]).get("input")))
            pieces.extend(_list(delta.get("toolResult")))
            return []
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
            if redacted := _str(reasoning.get("redactedContent")):
                return [ReasoningDelta("", redacted, redacted=True)]
            text, signature = _str(reasoning.get("text")), _str(reasoning.get("signature"))
            return [ReasoningDelta(text, signature)] if text or signature else []
        return untyped(delta)

    def end(self) -> list[StreamEvent]:
        """Call when the stream ends: the finish, or an error if Bedrock never said it stopped."""
        if self.stop_reason is None:
            raise GatewayError(ErrorKind.UNAVAILABLE, "Bedrock stream ended before messageStop")
        # Blocks Bedrock never closed go out as they are, never dropped: a server tool's block,
        # and a call flagged incomplete (its arguments may be cut).
        out: list[StreamEvent] = [server_block(*self._server.pop(b)) for b in sorted(self._server)]
        for block in sorted(self._tools):
            index, call_id, name, args = self._tools.pop(block)
            out.append(ToolCallEnd(index, ToolCall(call_id, name, "".join(args), incomplete=True)))
        reason = finish_reason(self.stop_reason)
        return [*out, ProviderFinish(reason, self.stop_reason, model=self.model, emulated=self.emulated)]


def server_block(member: str, fields: dict[str, Any], pieces: list[Any]) -> RawContent:
    """A server tool's block as a whole Converse response gives it: a call with its streamed input
    parsed (text that does not parse as it came), a result with its streamed content pieces."""
    if member == "toolUse":
        text = "".join(pieces)
        try:
            fields["input"] = json.loads(text or "{}")
        except json.JSONDecodeError:
            fields["input"] = text
    else:
        fields["content"] = pieces
    return RawContent(member, fields)


def model_response_fields(holder: Mapping[str, Any]) -> list[StreamEvent]:
    """`additionalModelResponseFields` (the model's own fields that the request's
    `additionalModelResponseFieldPaths` asked for; a messageStop's or a whole response's): no
    typed event, so passed on whole as RawContent, never dropped."""
    if "additionalModelResponseFields" not in holder:
        return []
    return untyped({"additionalModelResponseFields": holder["additionalModelResponseFields"]})


def trace(holder: Mapping[str, Any]) -> list[StreamEvent]:
    """The `trace` a stream's metadata or a whole response carries (a guardrail's assessments, what
    `guardrailConfig.trace` asks for; the prompt router's choice): no typed event, so passed on whole
    as RawContent, never dropped."""
    return untyped({"trace": holder["trace"]}) if "trace" in holder else []


def untyped(member: Mapping[str, Any]) -> list[StreamEvent]:
    """A content block or delta of a kind without a typed event (a `citation` delta, an image...):
    passed on whole as RawContent named by its member, never dropped."""
    return [
        RawContent(kind, dict(value) if isinstance(value, Mapping) else {kind: value})
        for kind, value in member.items()
    ]


def converse_response_events(
    response: Mapping[str, Any], model: str, emulated: tuple[str, ...] = ()
) -> list[StreamEvent]:
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
            content = _obj(block["reasoningContent"])
            if redacted := _str(content.get("redactedContent")):
                events.append(ReasoningDelta("", redacted, redacted=True))
                continue
            reasoning = _obj(content.get("reasoningText"))
            events.append(ReasoningDelta(_str(reasoning.get("text")), _str(reasoning.get("signature"))))
        elif "toolUse" in block and _obj(block["toolUse"]).get("type") == SERVER_TOOL_USE:
            events += untyped(block)  # Bedrock ran it: not a call for the client
        elif "toolUse" in block:
            tool = _obj(block["toolUse"])
            call = ToolCall(
                _str(tool.get("toolUseId")), _str(tool.get("name")), json.dumps(tool.get("input", {}))
            )
            events += [ToolCallStart(tool_index, call.id, call.name), ToolCallEnd(tool_index, call)]
            tool_index += 1
        elif "citationsContent" in block:  # generated text with the sources it cites
            cited = _obj(block["citationsContent"])
            events += [
                TextDelta(text)
                for part in _list(cited.get("content"))
                if (text := _str(_obj(part).get("text")))
            ]
            events += [RawContent("citation", _obj(citation)) for citation in _list(cited.get("citations"))]
        else:
            events += untyped(block)
    events += model_response_fields(response)
    events += trace(response)
    if "usage" in response:
        events.append(UsageEvent(converse_usage(response)))
    stop = _str(response.get("stopReason"))
    events.append(ProviderFinish(finish_reason(stop), stop, model=model, emulated=emulated))
    return events


# --- InvokeModel stream events -------------------------------------------------------------


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


def titan_embed_body(text: str, model: str, dimensions: int) -> dict[str, Any]:
    """Titan's body for one text; `dimensions` only where Titan Text Embeddings V2 takes it."""
    body: dict[str, Any] = {"inputText": text}
    if dimensions:
        sizes = TITAN_V2_SIZES if "titan-embed-text-v2" in model else ()
        why = "of the Titan embedding models only amazon.titan-embed-text-v2 takes it"
        check_size(dimensions, sizes, "Bedrock", model, why)
        body["dimensions"] = dimensions
        body["normalize"] = True
    return body


def titan_embed_response(body: Mapping[str, Any]) -> tuple[list[float], int]:
    vector = _floats(body.get("embedding"))
    if not vector:
        raise malformed("Titan embedding response")
    return vector, _int(body.get("inputTextTokenCount"))


def cohere_embed_body(texts: list[str], model: str, dimensions: int) -> dict[str, Any]:
    """Cohere's body; `output_dimension` is Embed v4's (Embed v3 has one width, 1024)."""
    body: dict[str, Any] = {"texts": texts, "input_type": "search_document", "embedding_types": ["float"]}
    if dimensions:
        sizes = COHERE_V4_SIZES if "embed-v4" in model else ()
        why = "Cohere Embed v3 has one width (1024); cohere.embed-v4 takes a size"
        check_size(dimensions, sizes, "Bedrock", model, why)
        body["output_dimension"] = dimensions
    return body


def cohere_embed_response(body: Mapping[str, Any], expected: int) -> list[list[float]]:
    embeddings = body.get("embeddings")
    if isinstance(embeddings, Mapping):  # with embedding_types: {"float": [[...], ...]}
        embeddings = embeddings.get("float")
    vectors = [_floats(v) for v in _list(embeddings)]
    if len(vectors) != expected or not all(vectors):
        raise malformed("Cohere embedding response")
    return vectors
