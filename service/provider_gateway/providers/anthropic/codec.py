"""Anthropic Messages wire format: request bodies from domain types, stream events to domain events.

Pure functions and a small stateful decoder; no I/O. A whole (`stream: false`) Message is read by the
same decoder, block by block as its stream would carry it, and folded (`response`), so unary and
streamed answers share one normalisation. Vertex's Claude endpoint reuses all of it with a different
envelope (see `providers/vertex`).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from provider_gateway.domain import (
    ChatRequest,
    ChatResponse,
    CompletionRequest,
    ContentPart,
    CountTokensRequest,
    FinishReason,
    ImagePart,
    Message,
    ModelInfo,
    ProviderFinish,
    RawContent,
    ReasoningDelta,
    ResponseFormat,
    ResponseFormatType,
    Role,
    StreamEvent,
    TextDelta,
    TextPart,
    Tool,
    ToolCallPart,
    ToolChoiceMode,
    ToolResultPart,
    Usage,
    UsageEvent,
)
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.providers.anthropic import forced_output, replay_rules
from provider_gateway.providers.base import estimate_tokens, fold
from provider_gateway.providers.owned_options import owned
from provider_gateway.providers.shapes import shape_checked
from provider_gateway.providers.structured_output import CLAUDE_STRUCTURED, closed_objects, unhonoured
from provider_gateway.providers.vendor_wire import (
    ToolCallAssembler,
    malformed,
    merge_provider_options,
    served_tier,
)

API_VERSION = "2023-06-01"
VERTEX_VERSION = "vertex-2023-10-16"
PROMPT_CACHING_BETA = "prompt-caching-2024-07-31"
TOOL_STREAMING_BETA = "fine-grained-tool-streaming-2025-05-14"
CONTEXT_1M_BETA = "context-1m-2025-08-07"
DEFAULT_MAX_TOKENS = 8192
EPHEMERAL = {"type": "ephemeral"}
MAX_BREAKPOINTS = 4
MIN_THINKING_BUDGET = 1024

STOP_REASONS = {
    "end_turn": FinishReason.STOP,
    "stop_sequence": FinishReason.STOP,
    "pause_turn": FinishReason.STOP,
    "compaction": FinishReason.STOP,  # paused after compacting (the compaction beta): as pause_turn
    "max_tokens": FinishReason.LENGTH,
    "model_context_window_exceeded": FinishReason.LENGTH,
    "tool_use": FinishReason.TOOL_CALLS,
    "refusal": FinishReason.CONTENT_FILTER,
}

# A Message's fields that are neither content nor usage and have no typed event, passed on as
# RawContent of their name: the code execution tool's `container` ({id, expires_at}: the next
# turn names it to reuse its files), a refusal's `stop_details` ({type, category, explanation}),
# the context editing beta's `context_management` ({applied_edits: [...]}: what was cleared from the
# prompt), and the `stop_sequence` that ended it (as {"stop_sequence": "..."}; Finish has no field
# for it).
MESSAGE_FIELDS = ("container", "stop_details", "context_management", "stop_sequence")

# Anthropic's documented error types (also sent mid-stream in an `error` event).
ERROR_KINDS = {
    "invalid_request_error": ErrorKind.INVALID_ARGUMENT,
    "request_too_large": ErrorKind.INVALID_ARGUMENT,
    "authentication_error": ErrorKind.UNAUTHENTICATED,
    "permission_error": ErrorKind.PERMISSION_DENIED,
    "not_found_error": ErrorKind.NOT_FOUND,
    "rate_limit_error": ErrorKind.RESOURCE_EXHAUSTED,
    "api_error": ErrorKind.UNAVAILABLE,
    "overloaded_error": ErrorKind.UNAVAILABLE,
    "timeout_error": ErrorKind.UNAVAILABLE,
}


@dataclass(slots=True, frozen=True)
class AnthropicOptions:
    """Per-provider settings that shape every request."""

    prompt_caching: bool = True
    max_tokens: int = DEFAULT_MAX_TOKENS
    fine_grained_tool_streaming: bool = True
    context_1m_models: tuple[str, ...] = ()
    extra_betas: tuple[str, ...] = ()


def beta_header(options: AnthropicOptions, model: str) -> str:
    """The comma-joined `anthropic-beta` value ("" when no beta applies)."""
    betas: list[str] = []
    if options.prompt_caching:
        betas.append(PROMPT_CACHING_BETA)
    if options.fine_grained_tool_streaming:
        betas.append(TOOL_STREAMING_BETA)
    if model in options.context_1m_models:
        betas.append(CONTEXT_1M_BETA)
    betas.extend(b for b in options.extra_betas if b not in betas)
    return ",".join(betas)


# --- request --------------------------------------------------------------------------------------


def _image_block(part: ImagePart) -> dict[str, Any]:
    if part.url:
        return {"type": "image", "source": {"type": "url", "url": part.url}}
    data = base64.b64encode(part.data).decode("ascii")
    return {"type": "image", "source": {"type": "base64", "media_type": part.media_type, "data": data}}


def _block(part: ContentPart) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if isinstance(part, ImagePart):
        return _image_block(part)
    if isinstance(part, ToolCallPart):
        return replay_rules.tool_use_block(part.call)
    if isinstance(part, ToolResultPart):
        return replay_rules.tool_result_block(part)
    if part.redacted:  # the encrypted block goes back as it came
        return {"type": "redacted_thinking", "data": part.signature}
    return {"type": "thinking", "thinking": part.text, "signature": part.signature}


def _blocks(message: Message) -> list[dict[str, Any]]:
    blocks = []
    for part in message.content:
        if isinstance(part, TextPart) and not part.text:
            continue  # the API rejects empty text blocks
        if not replay_rules.sendable(part):
            continue
        block = _block(part)
        if part.cache_breakpoint:
            block["cache_control"] = dict(EPHEMERAL)
        blocks.append(block)
    return blocks


def convert_messages(messages: list[Message], caching: bool) -> tuple[list[dict[str, Any]], list[str]]:
    """Domain messages -> (Anthropic messages, system texts).

    Tool results travel in user turns; consecutive turns of one role are merged because the API
    wants them to alternate. With caching on, the last block of each of the last two user turns gets
    a breakpoint (the lineage's rule: the newest turn is written, the previous one is read).
    """
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for message in messages:
        if message.role is Role.SYSTEM:
            system.append(message.text)
            continue
        role = "assistant" if message.role is Role.ASSISTANT else "user"
        blocks = _blocks(message)
        if not blocks:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    for turn in out:
        if turn["role"] == "assistant":
            replay_rules.thinking_first(turn["content"])
    if caching:
        # The API allows four breakpoints; the system block and explicit ones come first.
        budget = MAX_BREAKPOINTS - bool(system) - sum("cache_control" in b for m in out for b in m["content"])
        user_turns = [m for m in out if m["role"] == "user"]
        for turn in reversed(user_turns[-2:]):
            last = turn["content"][-1]
            if budget > 0 and "cache_control" not in last and last.get("type") != "thinking":
                last["cache_control"] = dict(EPHEMERAL)
                budget -= 1
    return out, system


def _tools(tools: list[Tool]) -> list[dict[str, Any]]:
    return [{"name": t.name, "description": t.description, "input_schema": dict(t.parameters)} for t in tools]


def _thinking_budget(request: ChatRequest, body: Mapping[str, Any]) -> int:
    return thinking_budget(request, int(body["max_tokens"]), forced_tool="tools" in body)


def thinking_budget(request: ChatRequest, max_tokens: int, *, forced_tool: bool) -> int:
    """Claude thinking's documented limits (the same on Anthropic, Vertex and Bedrock): at least
    1024 tokens, below max_tokens (default half of it), and no forced tool use."""
    choice = request.tool_choice
    if forced_tool and choice and choice.mode in (ToolChoiceMode.REQUIRED, ToolChoiceMode.TOOL):
        raise GatewayError(
            ErrorKind.INVALID_ARGUMENT,
            "tool_choice: Anthropic rejects a forced tool choice (required or a named tool) with reasoning on; "
            "use auto or turn reasoning off",
        )
    requested = request.reasoning.budget_tokens if request.reasoning else 0
    budget = max(MIN_THINKING_BUDGET, requested or max_tokens // 2)
    if budget >= max_tokens:
        raise GatewayError(
            ErrorKind.INVALID_ARGUMENT,
            f"max_tokens: must exceed the thinking budget ({budget}; Anthropic's minimum is {MIN_THINKING_BUDGET})",
        )
    return budget


MIN_TOP_P_WITH_THINKING = 0.95


def _refuse_sampling_with_thinking(request: ChatRequest) -> None:
    """Claude thinking takes only temperature 1 and top_p from 0.95 to 1 (Anthropic's extended
    thinking docs): other values are refused, not replaced."""
    if request.temperature is not None and request.temperature != 1:
        raise unhonoured("temperature", "Anthropic", request.model, "with thinking on only 1 is allowed")
    if request.top_p is not None and request.top_p < MIN_TOP_P_WITH_THINKING:
        why = f"with thinking on it must be {MIN_TOP_P_WITH_THINKING} to 1"
        raise unhonoured("top_p", "Anthropic", request.model, why)


# Body fields the gateway owns in Messages and legacy Complete bodies (owned_options.py).
OWNED_FIELDS = owned(
    "model", "messages", "system", "prompt", "stream", "max_tokens", "max_tokens_to_sample",
    "temperature", "top_p", "stop_sequences", "thinking", "tools", "tool_choice", "metadata",
)  # fmt: skip


def output_config(fmt: ResponseFormat | None, model: str) -> dict[str, Any] | None:
    """Structured outputs as Claude takes them (`output_config.format`, GA; always strict), or a
    refusal where Claude cannot honour the format: it has no schema-less JSON mode. Models before
    the 4.5 generation have no structured outputs: `build_messages_body` forces a tool instead
    (forced_output.py), so this refuses them only when called on its own."""
    if fmt is None or fmt.type is ResponseFormatType.TEXT:
        return None
    if fmt.type is ResponseFormatType.JSON_OBJECT:
        raise unhonoured(
            "response_format",
            "Anthropic",
            model,
            "Claude has no JSON mode without a schema; send TYPE_JSON_SCHEMA",
        )
    if not CLAUDE_STRUCTURED.search(model):
        raise unhonoured(
            "response_format",
            "Anthropic",
            model,
            "structured outputs need Claude Opus/Sonnet 4.5, Haiku 4.5 or later",
        )
    return {"format": {"type": "json_schema", "schema": closed_objects(fmt.json_schema or {})}}


def build_messages_body(
    request: ChatRequest, options: AnthropicOptions, *, stream: bool = True
) -> dict[str, Any]:
    messages, system = convert_messages(request.messages, options.prompt_caching)
    body: dict[str, Any] = {
        "model": request.model,
        "max_tokens": request.max_tokens or options.max_tokens,
        "messages": messages,
    }
    if system:
        block: dict[str, Any] = {"type": "text", "text": "\n\n".join(system)}
        if options.prompt_caching:
            block["cache_control"] = dict(EPHEMERAL)
        body["system"] = [block]
    choice = request.tool_choice
    if output_tool := forced_output.output_tool_name(request):
        body.update(forced_output.forced_tool_fields(request, output_tool))
    elif request.tools and not (choice and choice.mode is ToolChoiceMode.NONE):
        body["tools"] = _tools(request.tools)
        if choice and choice.mode is ToolChoiceMode.REQUIRED:
            body["tool_choice"] = {"type": "any"}
        elif choice and choice.mode is ToolChoiceMode.TOOL:
            body["tool_choice"] = {"type": "tool", "name": choice.name}
        else:
            body["tool_choice"] = {"type": "auto"}
    if not output_tool and (output := output_config(request.response_format, request.model)):
        body["output_config"] = output
    reasoning = request.reasoning
    if reasoning and reasoning.enabled:
        body["thinking"] = {"type": "enabled", "budget_tokens": _thinking_budget(request, body)}
        _refuse_sampling_with_thinking(request)
        body["temperature"] = 1.0  # the API rejects any other temperature with thinking on
    elif request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop_sequences"] = list(request.stop)
    if stream:
        body["stream"] = True
    return merge_provider_options(body, request.provider_options, OWNED_FIELDS)


def build_count_body(request: CountTokensRequest) -> dict[str, Any]:
    messages = request.messages or [Message(Role.USER, (TextPart(request.text),))]
    converted, system = convert_messages(messages, caching=False)
    body: dict[str, Any] = {"model": request.model, "messages": converted}
    if system:
        body["system"] = [{"type": "text", "text": "\n\n".join(system)}]
    if request.tools:
        body["tools"] = _tools(request.tools)
    return body


def legacy_prompt(prompt: str) -> str:
    """The Text Completions format the seed calls out for `complete`."""
    return f"\n\nHuman: {prompt}\n\nAssistant:"


def build_complete_body(
    request: CompletionRequest, options: AnthropicOptions, *, stream: bool = True
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": request.model,
        "prompt": legacy_prompt(request.prompt),
        "max_tokens_to_sample": request.max_tokens or options.max_tokens,
    }
    if stream:
        body["stream"] = True
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop_sequences"] = list(request.stop)
    return merge_provider_options(body, request.provider_options, OWNED_FIELDS)


# --- responses ------------------------------------------------------------------------------------


def normalise_usage(raw: Mapping[str, Any]) -> Usage:
    """Anthropic's `input_tokens` excludes cache reads and writes; ours includes them. The usage
    object is kept whole in `raw`, its nested figures included (`cache_creation`'s writes per TTL,
    which pricing reads, `server_tool_use`, `output_tokens_details`). A compaction's own sampling
    (the compaction beta's `iterations` entries of type `compaction`) is billed but left out of the
    top-level figures, so it is added to ours."""
    counted = [raw, *_compactions(raw.get("iterations"))]
    fresh = sum(int(usage.get("input_tokens") or 0) for usage in counted)
    write = sum(int(usage.get("cache_creation_input_tokens") or 0) for usage in counted)
    read = sum(int(usage.get("cache_read_input_tokens") or 0) for usage in counted)
    details = raw.get("output_tokens_details")
    thinking = details.get("thinking_tokens") if isinstance(details, Mapping) else None
    return Usage(
        input_tokens=fresh + write + read,
        output_tokens=sum(int(usage.get("output_tokens") or 0) for usage in counted),
        cache_read_tokens=read,
        cache_write_tokens=write,
        reasoning_tokens=int(thinking or 0),
        raw=dict(raw),
        # `standard`, `priority` or `batch` ([ANT-SDK] usage.py): already Usage.service_tier's words
        service_tier=served_tier(raw.get("service_tier"), {}),
    )


def _compactions(iterations: Any) -> list[Mapping[str, Any]]:
    if not isinstance(iterations, list):
        return []
    return [i for i in iterations if isinstance(i, Mapping) and i.get("type") == "compaction"]


def merge_usage(into: dict[str, Any], reported: Any) -> None:
    """Usage figures are cumulative: a later event's replace earlier ones, except those it leaves
    out or sends as null (message_delta names only what applies; the SDK keeps the earlier value)."""
    if isinstance(reported, Mapping):
        into.update((k, v) for k, v in reported.items() if v is not None)


@shape_checked
def error_from_body(body: Any, *, provider: str = "", status: int | None = None) -> GatewayError:
    """An Anthropic error object ({"type": "error", "error": {"type", "message"}}) as a GatewayError."""
    error = body.get("error") if isinstance(body, Mapping) else None
    error = error if isinstance(error, Mapping) else {}
    error_type = str(error.get("type") or "api_error")
    message = str(error.get("message") or error_type)
    kind = ERROR_KINDS.get(error_type, ErrorKind.UNAVAILABLE)
    if kind is ErrorKind.UNAUTHENTICATED:
        message = f"{message} (check the provider key)"
    return GatewayError(
        kind, f"anthropic {error_type}: {message}", provider=provider, upstream_status=status or error_type
    )


@dataclass(slots=True)
class MessagesStreamDecoder:
    """Turns the Messages SSE events into domain events, one event at a time. With `output_tool`
    (forced_output.output_tool_name of the request), that tool's input is the answer: its JSON
    comes out as text deltas, exactly as generated (cut where max_tokens cut it), and the tool_use
    stop as a plain stop flagged emulated."""

    provider: str = ""
    output_tool: str = ""
    _output_block: int | None = None
    _extra_output_blocks: set[int] = field(default_factory=set)
    usage_raw: dict[str, Any] = field(default_factory=dict)
    model: str = ""
    response_id: str = ""
    stop_reason: str = ""
    finished: bool = False
    tools: ToolCallAssembler = field(default_factory=ToolCallAssembler)
    # Blocks without a typed event (server tools' calls and results), by index: the block as
    # started and its streamed input, passed on whole as RawContent when the block stops.
    _untyped: dict[int, tuple[dict[str, Any], list[str]]] = field(default_factory=dict)
    # A tool_use block's non-empty `input` given whole at its start (Anthropic-compatible hosts),
    # by index, as JSON text: its arguments at the block's stop, unless input_json_delta replaced it.
    _given_inputs: dict[int, str] = field(default_factory=dict)
    # The message's own fields without a typed event (MESSAGE_FIELDS), as the SDK's MessageStream
    # keeps them: passed on as RawContent when the message stops, after its content.
    _message_fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tools.provider = self.provider

    @shape_checked
    def feed(self, data: Any) -> list[StreamEvent]:
        if not isinstance(data, Mapping):
            raise malformed(self.provider, "event data is not a JSON object")
        kind = data.get("type")
        if kind == "message_start":
            message = data.get("message") or {}
            self.model = str(message.get("model") or "")
            self.response_id = str(message.get("id") or "")
            merge_usage(self.usage_raw, message.get("usage"))
            self._message_fields.update((name, message.get(name)) for name in MESSAGE_FIELDS)
            return []
        if kind == "content_block_start":
            return self._start(int(data.get("index", 0)), data.get("content_block") or {})
        if kind == "content_block_delta":
            return self._delta(int(data.get("index", 0)), data.get("delta") or {})
        if kind == "content_block_stop":
            index = int(data.get("index", 0))
            if index in self._untyped:
                return [self._untyped_content(*self._untyped.pop(index))]
            given = self._given_input(index) if self._given_inputs else []
            return given + ([] if self._is_output(index) else self.tools.end(index))
        if kind == "message_delta":
            merge_usage(self.usage_raw, data.get("usage"))
            delta = data.get("delta") or {}
            if "stop_reason" in delta:  # null included, as the SDK's MessageStream keeps it
                self.stop_reason = str(delta["stop_reason"] or "")
            for name in ("stop_details", "stop_sequence"):  # likewise: they describe this stop_reason
                if name in delta:
                    self._message_fields[name] = delta[name]
            if delta.get("container") is not None:  # a null leaves the one known
                self._message_fields["container"] = delta["container"]
            if data.get("context_management") is not None:  # beside the delta, as the SDK reads it
                self._message_fields["context_management"] = data["context_management"]
            return []
        if kind == "message_stop":
            self.finished = True
            fields = [
                RawContent(name, dict(value) if isinstance(value, Mapping) else {name: value})
                for name, value in self._message_fields.items()
                if isinstance(value, Mapping) or (isinstance(value, str) and value)
            ]
            return [*fields, UsageEvent(normalise_usage(self.usage_raw)), self.finish()]
        if kind == "error":
            raise error_from_body(data, provider=self.provider)
        return []  # ping, and event types added later (the API's versioning policy allows them)

    def _start(self, index: int, block: Mapping[str, Any]) -> list[StreamEvent]:
        block_type = str(block.get("type") or "")
        if block_type == "tool_use" and block.get("input"):
            self._keep_given_input(index, block["input"])
        if block_type == "tool_use" and self.output_tool and block.get("name") == self.output_tool:
            if self._output_block is None:
                self._output_block = index
            else:  # a second call, though the request disables parallel calls: one document only
                self._extra_output_blocks.add(index)
            return []
        if block_type == "tool_use":
            return self.tools.start(index, str(block.get("id") or ""), str(block.get("name") or ""))
        if block_type == "text" and block.get("text"):
            return [TextDelta(str(block["text"]))]
        if block_type == "thinking" and block.get("thinking"):
            return [ReasoningDelta(str(block["thinking"]))]
        if block_type == "redacted_thinking":  # opaque: kept for the next turn, which needs it
            return [ReasoningDelta("", signature=str(block.get("data") or ""), redacted=True)]
        if block_type not in ("text", "thinking"):
            self._untyped[index] = (dict(block), [])
        return []

    def _keep_given_input(self, index: int, given: Any) -> None:
        """The SDK's MessageStream keeps a start's `input` unless input_json_delta text follows."""
        if isinstance(given, Mapping):
            self._given_inputs[index] = json.dumps(given, separators=(",", ":"), ensure_ascii=False)

    def _given_input(self, index: int) -> list[StreamEvent]:
        """At a block's stop: its input given whole at the start, as the one delta it never got."""
        given = self._given_inputs.pop(index, "")
        return self._delta(index, {"type": "input_json_delta", "partial_json": given}) if given else []

    def _untyped_content(self, block: dict[str, Any], partial_json: list[str]) -> RawContent:
        """A block without a typed event, whole: its input as the SDK parses the streamed JSON
        (text that does not parse is passed on as it came, never dropped)."""
        text = "".join(partial_json)
        if text:  # nothing streamed (only the empty first piece): the input as the block started
            try:
                block["input"] = json.loads(text)
            except json.JSONDecodeError:
                block["input"] = text
        return RawContent(str(block.get("type") or "content"), block)

    def _delta(self, index: int, delta: Mapping[str, Any]) -> list[StreamEvent]:
        delta_type = delta.get("type")
        if delta_type == "text_delta":
            return [TextDelta(str(delta.get("text", "")))]
        if delta_type == "thinking_delta":
            return [ReasoningDelta(str(delta.get("thinking", "")))]
        if delta_type == "signature_delta":
            return [ReasoningDelta("", signature=str(delta.get("signature", "")))]
        if delta_type == "citations_delta":  # no typed event: the citation as Anthropic sent it
            citation = delta.get("citation")
            return (
                [RawContent(str(citation.get("type") or "citation"), dict(citation))]
                if isinstance(citation, Mapping)
                else []
            )
        if delta_type == "input_json_delta":
            return self._input_json(index, str(delta.get("partial_json", "")))
        if delta_type == "compaction_delta" and index in self._untyped:
            # The compaction beta's summary (and its opaque metadata), which the next request must
            # send back: each delta replaces the block's, as the SDK's MessageStream does.
            block = self._untyped[index][0]
            block["content"] = delta.get("content")
            block["encrypted_content"] = delta.get("encrypted_content")
        return []

    def _input_json(self, index: int, piece: str) -> list[StreamEvent]:
        if self._given_inputs and piece:
            self._given_inputs.pop(index, None)  # streamed input replaces the one given at the start
        if index in self._untyped:
            self._untyped[index][1].append(piece)
            return []
        if self._output_block is not None and self._is_output(index):
            return [TextDelta(piece)] if piece and index == self._output_block else []
        return self.tools.delta(index, piece)

    def _is_output(self, index: int) -> bool:
        return index == self._output_block or index in self._extra_output_blocks

    @shape_checked
    def finish(self) -> ProviderFinish:
        # No stop_reason (null, or no message_delta at all) says nothing of why the message
        # stopped: UNSPECIFIED, never a STOP the vendor did not claim.
        reason = STOP_REASONS.get(
            self.stop_reason, FinishReason.OTHER if self.stop_reason else FinishReason.UNSPECIFIED
        )
        if not self.output_tool:
            return ProviderFinish(reason, self.stop_reason, self.model, self.response_id)
        if reason is FinishReason.TOOL_CALLS and self._output_block is not None:
            reason = FinishReason.STOP  # the forced tool's input was the answer, not a call to run
        emulated = (forced_output.EMULATED_FIELD,)
        return ProviderFinish(reason, self.stop_reason, self.model, self.response_id, emulated)

    @shape_checked
    def response(self, body: Any) -> ChatResponse:
        """A whole Message (`stream: false`): its blocks as the events their stream would carry.
        Not for a forced-tool output (`output_tool`): the adapters read those from the stream,
        whose raw JSON text a whole Message cannot give back once max_tokens cut it."""
        assert not self.output_tool, "forced-tool output is read from the stream"
        if isinstance(body, Mapping) and body.get("type") == "error":
            raise error_from_body(body, provider=self.provider)
        if not isinstance(body, Mapping) or not isinstance(body.get("content"), list):
            raise malformed(self.provider, f"a message without content: {str(body)[:80]!r}")
        self.feed({"type": "message_start", "message": body})
        self.stop_reason = str(body.get("stop_reason") or "")
        blocks = body["content"]
        events: list[StreamEvent] = []
        for index, block in enumerate(blocks):
            # max_tokens cut the last block: a tool call there is left open (incomplete), as in a stream
            cut = self.stop_reason == "max_tokens" and index == len(blocks) - 1
            events.extend(self._whole_block(index, block, cut=cut))
        events.extend(self.feed({"type": "message_stop"}))
        return fold(events)

    def _whole_block(self, index: int, block: Mapping[str, Any], *, cut: bool) -> list[StreamEvent]:
        if block.get("type") == "tool_use":
            arguments = json.dumps(block.get("input") or {}, separators=(",", ":"), ensure_ascii=False)
            started = self.tools.start(index, str(block.get("id") or ""), str(block.get("name") or ""))
            return [*started, *self.tools.delta(index, arguments), *([] if cut else self.tools.end(index))]
        events = self._start(index, block)
        if block.get("type") == "thinking" and block.get("signature"):
            events.extend(self._delta(index, {"type": "signature_delta", "signature": block["signature"]}))
        if block.get("type") == "text":
            for citation in block.get("citations") or []:
                events.extend(self._delta(index, {"type": "citations_delta", "citation": citation}))
        if index in self._untyped:
            events.append(self._untyped_content(*self._untyped.pop(index)))
        return events


@dataclass(slots=True)
class CompletionStreamDecoder:
    """The legacy Text Completions stream: `completion` events carrying text and a stop reason."""

    provider: str = ""
    model: str = ""
    stop_reason: str = ""
    response_id: str = ""
    finished: bool = False

    @shape_checked
    def feed(self, data: Any) -> list[StreamEvent]:
        if not isinstance(data, Mapping):
            raise malformed(self.provider, "event data is not a JSON object")
        kind = data.get("type")
        if kind == "error":
            raise error_from_body(data, provider=self.provider)
        if kind != "completion":
            return []
        self.model = str(data.get("model") or self.model)
        self.response_id = str(data.get("id") or self.response_id)
        if data.get("stop_reason"):
            self.stop_reason = str(data["stop_reason"])
            self.finished = True
        text = str(data.get("completion") or "")
        return [TextDelta(text)] if text else []

    @shape_checked
    def finish(self) -> ProviderFinish:
        reason = STOP_REASONS.get(self.stop_reason, FinishReason.STOP)
        return ProviderFinish(reason, self.stop_reason, self.model, self.response_id)

    @shape_checked
    def response(self, body: Any, prompt: str) -> ChatResponse:
        """A whole completion (`stream: false`): one `completion` object, as the stream's last event."""
        events = self.feed(body)
        if not self.finished:
            raise malformed(self.provider, f"a completion without a stop_reason: {str(body)[:80]!r}")
        output = "".join(e.text for e in events if isinstance(e, TextDelta))
        return fold([*events, UsageEvent(completion_usage(prompt, output)), self.finish()])


def completion_usage(prompt: str, output: str) -> Usage:
    """Text Completions report no usage: a documented local estimate of the whole texts."""
    return Usage(input_tokens=estimate_tokens(prompt), output_tokens=estimate_tokens(output), estimated=True)


@shape_checked
def parse_models(body: Any, *, provider: str = "") -> list[ModelInfo]:
    data = body.get("data") if isinstance(body, Mapping) else None
    models = []
    for item in data or []:
        if isinstance(item, Mapping) and item.get("id"):
            models.append(
                ModelInfo(
                    id=str(item["id"]),
                    display_name=str(item.get("display_name") or item["id"]),
                    vision=True,
                    tools=True,
                    reasoning=True,
                )
            )
    return models
