"""Protobuf <-> domain conversion: the only place that knows both.

Inbound conversion also validates: a request that cannot be turned into a domain request is
rejected here with INVALID_ARGUMENT naming the field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

from google.protobuf import json_format
from google.protobuf.struct_pb2 import Struct

from provider_gateway import domain as d
from provider_gateway.errors import invalid_argument
from provider_gateway.server.well_formed import mended
from provider_gateway.v1 import provider_service_pb2 as pb

if TYPE_CHECKING:
    from provider_gateway.server.finish_templates import FinishTemplates

ROLES = {
    pb.ROLE_SYSTEM: d.Role.SYSTEM,
    pb.ROLE_USER: d.Role.USER,
    pb.ROLE_ASSISTANT: d.Role.ASSISTANT,
    pb.ROLE_TOOL: d.Role.TOOL,
}
TOOL_CHOICE = {
    pb.ToolChoice.MODE_UNSPECIFIED: d.ToolChoiceMode.AUTO,
    pb.ToolChoice.MODE_AUTO: d.ToolChoiceMode.AUTO,
    pb.ToolChoice.MODE_NONE: d.ToolChoiceMode.NONE,
    pb.ToolChoice.MODE_REQUIRED: d.ToolChoiceMode.REQUIRED,
    pb.ToolChoice.MODE_TOOL: d.ToolChoiceMode.TOOL,
}
EFFORT = {
    pb.ReasoningOptions.EFFORT_UNSPECIFIED: "",
    pb.ReasoningOptions.EFFORT_MINIMAL: "minimal",
    pb.ReasoningOptions.EFFORT_LOW: "low",
    pb.ReasoningOptions.EFFORT_MEDIUM: "medium",
    pb.ReasoningOptions.EFFORT_HIGH: "high",
}
FORMAT = {
    pb.ResponseFormat.TYPE_UNSPECIFIED: d.ResponseFormatType.TEXT,
    pb.ResponseFormat.TYPE_TEXT: d.ResponseFormatType.TEXT,
    pb.ResponseFormat.TYPE_JSON_OBJECT: d.ResponseFormatType.JSON_OBJECT,
    pb.ResponseFormat.TYPE_JSON_SCHEMA: d.ResponseFormatType.JSON_SCHEMA,
}
FINISH = {
    d.FinishReason.UNSPECIFIED: pb.FINISH_REASON_UNSPECIFIED,
    d.FinishReason.STOP: pb.FINISH_REASON_STOP,
    d.FinishReason.LENGTH: pb.FINISH_REASON_LENGTH,
    d.FinishReason.TOOL_CALLS: pb.FINISH_REASON_TOOL_CALLS,
    d.FinishReason.CONTENT_FILTER: pb.FINISH_REASON_CONTENT_FILTER,
    d.FinishReason.OTHER: pb.FINISH_REASON_OTHER,
}


def struct_to_dict(value: Struct, where: str = "a Struct field") -> dict[str, Any]:
    """A Struct as plain JSON data; whole numbers come back as ints (Struct stores doubles)."""
    if not value.fields:  # most requests carry no options: skip json_format's generic walk
        return {}
    return _ints(struct_json(value, where))  # type: ignore[no-any-return]


def struct_json(value: Struct, where: str) -> dict[str, Any]:
    """`json_format`'s dict of a Struct. NaN and Infinity, which a Struct holds and JSON cannot,
    are the caller's error, named by `where`."""
    try:
        return json_format.MessageToDict(value)
    except ValueError:
        raise invalid_argument(f"{where}: holds NaN or Infinity, which JSON cannot carry") from None


def _ints(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints(v) for v in value]
    return value


def dict_to_struct(value: Mapping[str, Any]) -> Struct:
    struct = Struct()
    fill_struct(struct, value)
    return struct


def fill_struct(struct: Struct, value: Mapping[str, Any]) -> None:
    """`struct.update(value)` (on an empty struct) at about half the CPU: a provider's raw usage goes
    into every answer, and protobuf's update makes several Python calls per key. Numbers, strings
    and non-empty objects are set here; anything else (bools, null, lists, empty objects) goes
    through protobuf's own update, which also decides what it refuses."""
    fields = struct.fields
    for key, item in value.items():
        kind = type(item)
        if kind is int or kind is float:
            fields[key].number_value = item
        elif kind is str:
            fields[key].string_value = item
        elif kind is dict and item:
            fill_struct(fields[key].struct_value, item)
        else:
            struct.update({key: item})


# --- inbound -----------------------------------------------------------------------------------


def _part(part: pb.ContentPart, i: int, j: int) -> d.ContentPart:
    kind = part.WhichOneof("part")
    cache = part.cache_breakpoint
    if kind == "text":
        return d.TextPart(part.text, cache)
    where = f"messages[{i}].content[{j}]"  # named only in errors: not built for every part
    if kind == "image":
        image = part.image
        if image.WhichOneof("source") is None:
            raise invalid_argument(f"{where}.image: give either data or url")
        if image.HasField("data") and not image.media_type:
            raise invalid_argument(f"{where}.image.media_type: required with data (e.g. image/png)")
        return d.ImagePart(image.data, image.url, image.media_type, cache)
    if kind == "tool_call":
        call = part.tool_call
        return d.ToolCallPart(d.ToolCall(call.id, call.name, call.arguments_json or "{}"), cache)
    if kind == "tool_result":
        result = part.tool_result
        return d.ToolResultPart(result.tool_call_id, result.content, result.is_error, result.name, cache)
    if kind == "reasoning":
        r = part.reasoning
        return d.ReasoningPart(r.text, r.signature, cache, redacted=r.redacted, id=r.id, issuer=r.issuer)
    raise invalid_argument(
        f"{where}: empty content part (set text, image, tool_call, tool_result or reasoning)"
    )


def messages_from_proto(messages: Any, checked: list[d.Message | None] | None = None) -> list[d.Message]:
    """The domain messages; `checked`: what `validate` converted as it checked them (None where a
    message is left to this conversion)."""
    if checked is not None and None not in checked:
        return cast(list[d.Message], checked)
    result = []
    for i, message in enumerate(messages):
        if checked is not None and (done := checked[i]) is not None:
            result.append(done)
            continue
        role = ROLES.get(message.role)
        if role is None:
            raise invalid_argument(f"messages[{i}].role: must be system, user, assistant or tool")
        parts = tuple([_part(p, i, j) for j, p in enumerate(message.content)])
        result.append(d.Message(role, parts, message.name))
    return result


def tools_from_proto(tools: Any) -> list[d.Tool]:
    return [
        d.Tool(t.name, t.description, struct_to_dict(t.parameters, f"tools[{i}].parameters"))
        for i, t in enumerate(tools)
    ]


def set_fields(request: Any) -> dict[str, Any]:
    """The fields a request sets, by name, from one ListFields: most requests set two or three of
    their fields, and asking for each of the others in turn costs more than this listing. An
    optional scalar set to zero is listed (it has presence), so `temperature=0` stays 0. The
    servicer lists them once for `validate` and the conversion (`given`)."""
    return {field.name: value for field, value in request.ListFields()}


def _options(given: dict[str, Any]) -> dict[str, Any]:
    return (
        struct_to_dict(given["provider_options"], "provider_options") if "provider_options" in given else {}
    )


def chat_request_from_proto(
    request: pb.ChatRequest,
    given: dict[str, Any] | None = None,
    checked: list[d.Message | None] | None = None,
) -> d.ChatRequest:
    """`given`: `set_fields(request)` when the caller has it; `checked`: what `validate.chat`
    returned (the messages it converted as it checked them)."""
    given = set_fields(request) if given is None else given
    reasoning = None
    if "reasoning" in given:
        r = given["reasoning"]
        reasoning = d.ReasoningOptions(r.enabled, EFFORT.get(r.effort, ""), r.budget_tokens)
    response_format = None
    if "response_format" in given:
        f = given["response_format"]
        schema = (
            struct_to_dict(f.json_schema, "response_format.json_schema")
            if f.HasField("json_schema")
            else None
        )
        response_format = d.ResponseFormat(
            FORMAT.get(f.type, d.ResponseFormatType.TEXT), f.schema_name, schema, f.strict
        )
    tool_choice = None
    if "tool_choice" in given:
        choice = given["tool_choice"]
        tool_choice = d.ToolChoice(TOOL_CHOICE.get(choice.mode, d.ToolChoiceMode.AUTO), choice.name)
    return d.ChatRequest(
        model=given.get("model", ""),
        provider=given.get("provider", ""),
        fallbacks=list(given.get("fallbacks", ())),
        messages=messages_from_proto(given.get("messages", ()), checked),
        tools=tools_from_proto(given["tools"]) if "tools" in given else [],
        tool_choice=tool_choice,
        temperature=given.get("temperature"),
        top_p=given.get("top_p"),
        max_tokens=given.get("max_tokens"),
        stop=list(given.get("stop", ())),
        reasoning=reasoning,
        response_format=response_format,
        provider_options=_options(given),
        metadata=dict(given.get("metadata", ())),
        logprobs=logprobs_options(given),
    )


def logprobs_options(given: dict[str, Any]) -> d.LogprobsOptions | None:
    """None unless asked (`validate` refused `top_logprobs` without `enabled`)."""
    options = given.get("logprobs")
    if options is None or not options.enabled:
        return None
    return d.LogprobsOptions(options.top_logprobs)


def completion_request_from_proto(
    request: pb.CompleteRequest, given: dict[str, Any] | None = None
) -> d.CompletionRequest:
    given = set_fields(request) if given is None else given
    return d.CompletionRequest(
        model=given.get("model", ""),
        prompt=given.get("prompt", ""),
        provider=given.get("provider", ""),
        fallbacks=list(given.get("fallbacks", ())),
        temperature=given.get("temperature"),
        top_p=given.get("top_p"),
        max_tokens=given.get("max_tokens"),
        stop=list(given.get("stop", ())),
        provider_options=_options(given),
        metadata=dict(given.get("metadata", ())),
    )


def count_request_from_proto(request: pb.CountTokensRequest) -> d.CountTokensRequest:
    return d.CountTokensRequest(
        model=request.model,
        provider=request.provider,
        text=request.text,
        messages=messages_from_proto(request.messages),
        tools=tools_from_proto(request.tools),
    )


def embed_request_from_proto(request: pb.EmbedRequest) -> d.EmbedRequest:
    return d.EmbedRequest(
        model=request.model,
        inputs=list(request.inputs),
        provider=request.provider,
        dimensions=request.dimensions,
    )


# --- outbound ----------------------------------------------------------------------------------


# Nested messages are given to one constructor as dicts: protobuf fills the parent's sub-messages
# in place, where a sub-message built on its own is built and then copied (about 2x the CPU for a
# Finish, a per-call cost of every RPC; benchmarks/RESULTS.md, issue 15).


def usage_to_proto(usage: d.Usage) -> pb.Usage:
    message = pb.Usage(**_usage_fields(usage))
    _fill_raw(message, usage)
    return message


def _usage_fields(usage: d.Usage) -> dict[str, Any]:
    """The Usage message's fields but `raw`, which `_fill_raw` sets in the built message. A field
    at its default is left out (see `_finish_fields`)."""
    fields: dict[str, Any] = {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
    }
    if usage.cache_read_tokens:
        fields["cache_read_tokens"] = usage.cache_read_tokens
    if usage.cache_write_tokens:
        fields["cache_write_tokens"] = usage.cache_write_tokens
    if usage.reasoning_tokens:
        fields["reasoning_tokens"] = usage.reasoning_tokens
    if usage.estimated:
        fields["estimated"] = True
    if usage.service_tier:
        fields["service_tier"] = usage.service_tier[:64]  # the vendor's word, bounded
    return fields


def _fill_raw(message: pb.Usage, usage: d.Usage) -> None:
    """The provider's own usage object, in place (a Struct given to a constructor is converted by
    protobuf's slower update); absent rather than empty: clients test HasField("raw")."""
    if usage.raw:
        fill_struct(message.raw, usage.raw)


def tool_call_to_proto(call: d.ToolCall) -> pb.ToolCall:
    return pb.ToolCall(
        id=call.id, name=call.name, arguments_json=call.arguments_json, incomplete=call.incomplete
    )


def finish_to_proto(finish: d.Finish) -> pb.Finish:
    return pb.Finish(**_finish_fields(finish))


def _finish_fields(finish: d.Finish) -> dict[str, Any]:
    """The Finish message's fields. A scalar at its default (0, "", False) or an empty repeated
    field is left out rather than given: proto3 sends neither, so the message and its bytes are
    the same, and each field given costs the constructor about 1k instructions where the test
    costs a few dozen (an answer's usage, finish and cost hold about ten such fields; issue 15).
    Sub-messages are always given: `timing` and `cost` are present even when all zero."""
    t = finish.timing
    timing = {
        "gateway_overhead_us": t.gateway_overhead_us,
        "total_us": t.total_us,
        "upstream_us": t.upstream_us,
    }
    if t.time_to_first_token_us:  # 0 in every unary answer
        timing["time_to_first_token_us"] = t.time_to_first_token_us
    fields: dict[str, Any] = {
        "reason": FINISH[finish.reason],
        "raw_finish_reason": finish.raw_reason,
        "provider": finish.provider,
        "model": finish.model,
        "timing": timing,
        "attempts": [_attempt_fields(a) for a in finish.attempts],
        "response_id": finish.response_id,
        "cost": _cost_fields(finish.cost),
    }
    if finish.emulated:
        fields["emulated"] = finish.emulated
    return fields


def _attempt_fields(attempt: d.Attempt) -> dict[str, Any]:
    fields = {
        "provider": attempt.provider,
        "model": attempt.model,
        "outcome": attempt.outcome,
        "latency_us": attempt.latency_us,
        "cost": _cost_fields(attempt.cost),
    }
    if attempt.error:
        fields["error"] = attempt.error
    return fields


def cost_to_proto(cost: d.Cost) -> pb.Cost:
    return pb.Cost(**_cost_fields(cost))


def _cost_fields(cost: d.Cost) -> dict[str, Any]:
    fields: dict[str, Any] = {"currency": "USD", "usage_source": cost.usage_source}
    if cost.amount_micros:
        fields["amount_micros"] = cost.amount_micros
    if cost.known:
        fields["known"] = True
    return fields


def logprob_fields(entry: d.TokenLogprob) -> dict[str, Any]:
    """A TokenLogprob message's fields (given as a dict: see the note above `usage_to_proto`)."""
    fields: dict[str, Any] = {"token": entry.token, "logprob": entry.logprob}
    if entry.utf8 is not None:
        fields["bytes"] = entry.utf8
    if entry.top_logprobs:
        fields["top_logprobs"] = [logprob_fields(top) for top in entry.top_logprobs]
    return fields


def event_to_proto(event: d.GatewayEvent) -> pb.StreamEvent:
    # Ordered by frequency: text deltas are nearly every event of a stream.
    if type(event) is d.TextDeltaWithLogprobs:
        entries = [logprob_fields(entry) for entry in event.logprobs]
        return pb.StreamEvent(text_delta={"text": event.text, "logprobs": entries})
    if isinstance(event, d.TextDelta):
        return pb.StreamEvent(text_delta=pb.TextDelta(text=event.text))
    if isinstance(event, d.ReasoningDelta):
        return reasoning_event(event, "")
    if isinstance(event, d.ToolCallDelta):
        return pb.StreamEvent(
            tool_call_delta=pb.ToolCallDelta(index=event.index, arguments_delta=event.arguments_delta)
        )
    if isinstance(event, d.ToolCallStart):
        return pb.StreamEvent(
            tool_call_start=pb.ToolCallStart(index=event.index, id=event.id, name=event.name)
        )
    if isinstance(event, d.ToolCallEnd):
        return pb.StreamEvent(
            tool_call_end=pb.ToolCallEnd(index=event.index, call=tool_call_to_proto(event.call))
        )
    if isinstance(event, d.UsageEvent):
        message = pb.StreamEvent(usage=_usage_fields(event.usage))
        _fill_raw(message.usage, event.usage)
        return message
    if isinstance(event, d.RawContent):
        return pb.StreamEvent(raw_content=raw_content_to_proto(event))
    if isinstance(event, d.Finish):
        return finish_event(event, None)
    raise TypeError(f"no protobuf form for {type(event).__name__}")  # ProviderFinish never leaves the router


def reasoning_event(event: d.ReasoningDelta, issuer: str) -> pb.StreamEvent:
    """`issuer`: who issued the delta's state (proto `Reasoning.issuer`), for a block-closing one."""
    delta = pb.ReasoningDelta(
        text=event.text, signature=event.signature, redacted=event.redacted, id=event.id
    )
    if issuer and event.closes_block:
        delta.issuer = issuer
    return pb.StreamEvent(reasoning_delta=delta)


def finish_event(finish: d.Finish, usage: d.Usage | None) -> pb.StreamEvent:
    """A stream's finish event, with the stream's usage when it reported one."""
    fields = _finish_fields(finish)
    if usage is None:
        return pb.StreamEvent(finish=fields)
    fields["usage"] = _usage_fields(usage)
    message = pb.StreamEvent(finish=fields)
    _fill_raw(message.finish.usage, usage)
    return message


class StreamMessages:
    """One stream's outbound messages, its text deltas written into one reused StreamEvent.

    A new StreamEvent and TextDelta per token cost 13 heap allocations and about 3x the CPU of
    setting one field of a kept message (benchmarks/RESULTS.md, issue 15). Reuse is safe because
    grpc.aio serializes each message as it writes it, before it resumes the servicer for the next:
    a caller must not keep a returned message past its next call.

    The last usage seen goes into the finish (`Finish.usage`); with `usage_in_finish`
    (`StreamOptions`) usage events give no message at all (None): one gRPC write fewer a stream.
    A reasoning delta that closes a block names its issuer, asked of `issuer` when one comes.
    """

    __slots__ = ("_finish_event", "_issuer", "_text", "_text_delta", "_usage", "_usage_in_finish")

    def __init__(
        self,
        options: pb.StreamOptions,
        finishes: FinishTemplates | None = None,
        issuer: Callable[[], str] | None = None,
    ) -> None:
        """`finishes`: the server's kept finish templates (none: each finish is built). `issuer`:
        who issued the answer's reasoning state (none: not named)."""
        self._finish_event = finish_event if finishes is None else finishes.event
        self._issuer = issuer
        self._text = pb.StreamEvent()
        self._text.text_delta.SetInParent()
        self._text_delta = self._text.text_delta
        self._usage: d.Usage | None = None
        self._usage_in_finish = options.usage_in_finish

    def to_proto(self, event: d.GatewayEvent) -> pb.StreamEvent | None:
        try:
            if type(event) is d.TextDelta:  # nearly every event of a stream
                self._text_delta.text = event.text
                return self._text
            if type(event) is d.UsageEvent:
                self._usage = event.usage
                if self._usage_in_finish:
                    return None
            elif type(event) is d.Finish:
                return self._finish_event(event, self._usage)
            elif type(event) is d.ReasoningDelta and event.closes_block and self._issuer is not None:
                return reasoning_event(event, self._issuer())
            return event_to_proto(event)
        except UnicodeEncodeError:  # half of a surrogate pair (server/well_formed.py)
            self._usage = mended(self._usage)  # a finish carries it
            return self.to_proto(mended(event))


def raw_content_to_proto(content: d.RawContent) -> pb.RawContent:
    return pb.RawContent(type=content.type, raw=dict_to_struct(content.raw))


def reasoning_to_proto(part: d.ReasoningPart, issuer: str = "") -> pb.Reasoning:
    """`issuer`: who issued the answer's reasoning state, named on a part that holds some."""
    message = pb.Reasoning(text=part.text, signature=part.signature, redacted=part.redacted, id=part.id)
    if issuer and (part.signature or part.redacted or part.id):
        message.issuer = issuer
    return message


def chat_response_to_proto(
    response: d.ChatResponse,
    finish: d.Finish,
    finishes: FinishTemplates | None = None,
    issuer: str = "",
) -> pb.ChatResponse:
    """`finishes`: the server's kept finish templates (none: the finish is built). `issuer`: who
    issued the reasoning state of `response.reasoning_parts` (proto `Reasoning.issuer`)."""
    try:
        return _chat_response(response, finish, finishes, issuer)
    except UnicodeEncodeError:  # half of a surrogate pair (server/well_formed.py)
        return _chat_response(mended(response), mended(finish), finishes, issuer)


def _chat_response(
    response: d.ChatResponse, finish: d.Finish, finishes: FinishTemplates | None, issuer: str
) -> pb.ChatResponse:
    fields: dict[str, Any] = {"text": response.text, "usage": _usage_fields(response.usage)}
    if finishes is None:
        fields["finish"] = _finish_fields(finish)
    # Fields only when they are set (see `_finish_fields`): an empty list given to the
    # constructor costs as much as a small message.
    if response.reasoning:
        fields["reasoning"] = response.reasoning
    if response.reasoning_signature:
        fields["reasoning_signature"] = response.reasoning_signature
    if response.reasoning_parts:
        fields["reasoning_parts"] = [reasoning_to_proto(p, issuer) for p in response.reasoning_parts]
    if response.tool_calls:
        fields["tool_calls"] = [tool_call_to_proto(c) for c in response.tool_calls]
    if response.raw_content:
        fields["raw_content"] = [raw_content_to_proto(c) for c in response.raw_content]
    if response.logprobs:
        fields["logprobs"] = [logprob_fields(entry) for entry in response.logprobs]
    message = pb.ChatResponse(**fields)
    _fill_raw(message.usage, response.usage)
    if finishes is not None:
        finishes.fill(message.finish, finish)
    return message


def completion_response_to_proto(
    response: d.CompletionResponse, finish: d.Finish, finishes: FinishTemplates | None = None
) -> pb.CompleteResponse:
    """`finishes`: as for `chat_response_to_proto`."""
    try:
        return _completion_response(response, finish, finishes)
    except UnicodeEncodeError:  # half of a surrogate pair (server/well_formed.py)
        return _completion_response(mended(response), mended(finish), finishes)


def _completion_response(
    response: d.CompletionResponse, finish: d.Finish, finishes: FinishTemplates | None
) -> pb.CompleteResponse:
    if finishes is None:
        message = pb.CompleteResponse(
            text=response.text, usage=_usage_fields(response.usage), finish=_finish_fields(finish)
        )
    else:
        message = pb.CompleteResponse(text=response.text, usage=_usage_fields(response.usage))
        finishes.fill(message.finish, finish)
    _fill_raw(message.usage, response.usage)
    return message


def model_to_proto(provider: str, model: d.ModelInfo, aliases: list[str]) -> pb.ModelInfo:
    try:
        return _model(provider, model, aliases)
    except UnicodeEncodeError:  # half of a surrogate pair (server/well_formed.py)
        return _model(provider, mended(model), mended(aliases))


def _model(provider: str, model: d.ModelInfo, aliases: list[str]) -> pb.ModelInfo:
    return pb.ModelInfo(
        id=model.id,
        provider=provider,
        display_name=model.display_name,
        context_window=model.context_window,
        max_output_tokens=model.max_output_tokens,
        vision=model.vision,
        tools=model.tools,
        reasoning=model.reasoning,
        embeddings=model.embeddings,
        aliases=aliases,
    )


def capabilities_to_proto(caps: d.Capabilities) -> pb.Capabilities:
    limits = caps.rate_limits
    return pb.Capabilities(
        max_tokens=caps.max_tokens,
        streaming=caps.streaming,
        tools=caps.tools,
        vision=caps.vision,
        embeddings=caps.embeddings,
        reasoning=caps.reasoning,
        json_output=caps.json_output,
        exact_token_count=caps.exact_token_count,
        completion=caps.completion,
        rate_limits=pb.RateLimits(
            requests_per_minute=limits.requests_per_minute,
            tokens_per_minute=limits.tokens_per_minute,
            max_concurrent=limits.max_concurrent,
        ),
    )
