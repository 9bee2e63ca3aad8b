"""Request checks at the edge: a bad request is rejected with INVALID_ARGUMENT naming the field.

Checks run on the protobuf message, before any provider sees the request, so that every client
gets the same clear message whichever vendor would have failed later (and less clearly). Every
size-like field is bounded (`bounds.py`: per-model caps and documented ones), and error messages
repeat at most a short prefix of a client's value. Conversation sizes come from the `[limits]` table:

    [limits]
    max_messages = 1000          # messages in one conversation
    max_message_bytes = 4194304  # encoded size of one message (images included)
    max_content_parts = 4096     # content parts of all the messages together
    max_tools = 128
    max_schema_bytes = 262144    # encoded size of all the tools' parameters and response schema
    max_embed_inputs = 2048
    max_provider_options_bytes = 65536  # encoded size of provider_options

Counts are bounded as well as bytes: each part or schema value costs a Python walk here and in the
codecs, and 8 MB of one-character parts (1.6 million) held a worker's loop for seconds.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from google.protobuf.struct_pb2 import Struct

from provider_gateway import domain as d
from provider_gateway.config import GatewayConfig
from provider_gateway.errors import invalid_argument, shown
from provider_gateway.server import checks
from provider_gateway.server.bounds import (
    MAX_FALLBACKS,
    MAX_METADATA_ENTRIES,
    MAX_METADATA_KEY_CHARS,
    MAX_METADATA_VALUE_CHARS,
    MAX_NAME_CHARS,
    MAX_STOP_CHARS,
    SizeBounds,
    bounds_for,
    embed_answer_bytes,
)
from provider_gateway.server.convert import ROLES as DOMAIN_ROLES
from provider_gateway.server.convert import set_fields, struct_json
from provider_gateway.v1 import provider_service_pb2 as pb

LIMIT_KEYS = (
    "max_messages",
    "max_message_bytes",
    "max_content_parts",
    "max_tools",
    "max_schema_bytes",
    "max_embed_inputs",
    "max_provider_options_bytes",
)
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MAX_STOP_SEQUENCES = 16
SAMPLING_FIELDS = frozenset({"temperature", "top_p", "max_tokens", "stop"})  # what `_sampling` checks
# The enums' valid numbers, once: `EnumTypeWrapper.values()` builds a new list on every call.
ROLES = frozenset(pb.Role.values()) - {pb.ROLE_UNSPECIFIED}
TOOL_CHOICE_MODES = frozenset(pb.ToolChoice.Mode.values())
RESPONSE_FORMAT_TYPES = frozenset(pb.ResponseFormat.Type.values())
EFFORTS = frozenset(pb.ReasoningOptions.Effort.values())
# The requests that name a route (`names`), and those of them that name fallbacks.
ROUTED = frozenset({pb.ChatRequest, pb.CompleteRequest, pb.EmbedRequest, pb.CountTokensRequest})
WITH_FALLBACKS = frozenset({pb.ChatRequest, pb.CompleteRequest})


@dataclass(frozen=True, slots=True)
class Limits:
    max_messages: int = 1000
    max_message_bytes: int = 4 * 1024 * 1024
    # A conversation of `max_messages` messages of four parts each; about 0.7 us a part to check.
    max_content_parts: int = 4096
    max_tools: int = 128
    # A schema's values cannot be counted without the walk that is to be bounded (conversion and
    # checks, about 7 us an empty property), so their bytes bound them: 256 KiB of the smallest properties is
    # about 0.2 s of loop time at worst, two 8 MB decodes; real tools take a few KB each.
    max_schema_bytes: int = 256 * 1024
    max_embed_inputs: int = 2048
    # provider_options is converted, merged and encoded into the upstream body, at up to 2 us a value
    # (a list of empty objects: 33 ms to convert 64 KiB; 8 MB, which a request could carry, held the
    # worker's loop 11 s); vendors' options take a few KB. Depth needs no bound of its own: decoding refuses a Struct
    # nested past protobuf's 100 message levels (33 objects, or 48 lists), which every walk here takes.
    max_provider_options_bytes: int = 64 * 1024
    # [server] max_message_bytes: the largest answer the server can send (an Embed's is known ahead).
    max_answer_bytes: int = 8 * 1024 * 1024

    @classmethod
    def from_config(cls, config: GatewayConfig) -> Limits:
        section = config.section("limits")
        section.reject_unknown(LIMIT_KEYS)
        default = cls()
        return cls(
            max_messages=section.integer("max_messages", default.max_messages, minimum=1),
            max_message_bytes=section.integer("max_message_bytes", default.max_message_bytes, minimum=64),
            max_content_parts=section.integer("max_content_parts", default.max_content_parts, minimum=1),
            max_tools=section.integer("max_tools", default.max_tools, minimum=0),
            max_schema_bytes=section.integer("max_schema_bytes", default.max_schema_bytes, minimum=64),
            max_embed_inputs=section.integer("max_embed_inputs", default.max_embed_inputs, minimum=1),
            max_provider_options_bytes=section.integer(
                "max_provider_options_bytes", default.max_provider_options_bytes, minimum=64
            ),
            max_answer_bytes=config.server.max_message_bytes,
        )


DEFAULT_LIMITS = Limits()


# --- sampling ------------------------------------------------------------------------------------


def _sampling(request: pb.ChatRequest | pb.CompleteRequest, bounds: SizeBounds) -> None:
    if request.HasField("temperature") and not 0.0 <= request.temperature <= 2.0:
        raise invalid_argument(f"temperature: must be between 0 and 2, got {request.temperature:g}")
    if request.HasField("top_p") and not 0.0 <= request.top_p <= 1.0:
        raise invalid_argument(f"top_p: must be between 0 and 1, got {request.top_p:g}")
    if request.HasField("max_tokens") and not 0 < request.max_tokens <= bounds.max_output_tokens:
        raise invalid_argument(
            f"max_tokens: must be between 1 and {bounds.max_output_tokens}, got {request.max_tokens}"
        )
    if len(request.stop) > MAX_STOP_SEQUENCES:
        raise invalid_argument(f"stop: at most {MAX_STOP_SEQUENCES} stop sequences, got {len(request.stop)}")
    for i, stop in enumerate(request.stop):
        if not stop:
            raise invalid_argument(f"stop[{i}]: a stop sequence must not be empty")
        if len(stop) > MAX_STOP_CHARS:
            raise invalid_argument(f"stop[{i}]: at most {MAX_STOP_CHARS} characters, got {len(stop)}")


# --- names and tags ------------------------------------------------------------------------------


def _name(value: str, where: str) -> None:
    if len(value) > MAX_NAME_CHARS:
        raise invalid_argument(f"{where}: at most {MAX_NAME_CHARS} characters, got {len(value)}")
    # No vendor names a model, provider or call with a line break or an escape sequence; logs and
    # errors repeat names, and one carrying "\n" would forge a line in a text log.
    if not value.isprintable():
        raise invalid_argument(f"{where}: control and invisible characters are not allowed")


def names(request: Any) -> None:
    """The names a request routes by (model, provider, fallbacks; those its kind has), checked as
    `_route` checks them: before the auth interceptor plans a budget's worst case with them, so
    that nothing is planned or kept for an unbounded name or list (server/auth.py)."""
    kind = type(request)
    if kind in ROUTED:
        _name(request.model, "model")
        _name(request.provider, "provider")
        if kind in WITH_FALLBACKS:
            _fallbacks(request.fallbacks)
    elif kind is pb.ListModelsRequest:
        _name(request.provider, "provider")


def _route(request: Any, *, fallbacks: bool = True) -> SizeBounds:
    """The model, provider and fallback names: bounded, since errors and logs repeat them.
    `fallbacks` False: the request has none (its kind has no such field, or it sets none)."""
    _name(request.model, "model")
    _name(request.provider, "provider")
    if fallbacks:
        _fallbacks(request.fallbacks)
    return bounds_for(request.provider, request.model)


def _fallbacks(fallbacks: Any) -> None:
    count = len(fallbacks)
    if not count:  # most requests: no walk (an iterator over a repeated field costs ~0.3 us)
        return
    if count > MAX_FALLBACKS:  # counted before the walk of the names, which this bounds
        raise invalid_argument(f"fallbacks: at most {MAX_FALLBACKS}, got {count}")
    for i, fallback in enumerate(fallbacks):
        if not fallback:
            raise invalid_argument(f"fallbacks[{i}]: must not be empty")
        if len(fallback) > MAX_NAME_CHARS or not fallback.isprintable():  # the field's name only then
            _name(fallback, f"fallbacks[{i}]")


def _metadata(metadata: Mapping[str, str]) -> None:
    if len(metadata) > MAX_METADATA_ENTRIES:
        raise invalid_argument(f"metadata: at most {MAX_METADATA_ENTRIES} entries, got {len(metadata)}")
    for key, value in metadata.items():
        if not key or len(key) > MAX_METADATA_KEY_CHARS:
            raise invalid_argument(
                f"metadata: each key needs 1 to {MAX_METADATA_KEY_CHARS} characters, got {shown(key)}"
            )
        if len(value) > MAX_METADATA_VALUE_CHARS:
            raise invalid_argument(
                f"metadata[{shown(key)}]: at most {MAX_METADATA_VALUE_CHARS} characters, got {len(value)}"
            )


# --- messages ------------------------------------------------------------------------------------


def _messages(messages: Any, limits: Limits, field: str = "messages") -> list[d.Message | None]:
    """Check the conversation, and convert it on the way: each message's domain form, or None where
    it has a part other than text (those are converted after every check, by `convert`, whose own
    errors must not come before a later check's). One walk: the checks and the conversion each
    walked every message and part, about 16k instructions a message (issue 15)."""
    if len(messages) > limits.max_messages:
        raise invalid_argument(
            f"{field}: at most {limits.max_messages} messages ([limits] max_messages), got {len(messages)}"
        )
    call_ids: set[str] = set()
    converted: list[d.Message | None] = []
    parts = 0
    for i, message in enumerate(messages):
        role = message.role
        if role not in ROLES:
            raise invalid_argument(
                f"{field}[{i}].role: unknown role {role}; use system, user, assistant or tool"
            )
        content = message.content
        if not content:
            raise invalid_argument(f"{field}[{i}].content: a message needs at least one content part")
        parts += len(content)  # before the walk of the parts, which this bounds
        if parts > limits.max_content_parts:
            raise invalid_argument(
                f"{field}[{i}].content: the messages hold more than {limits.max_content_parts} content parts "
                "in all ([limits] max_content_parts); join adjacent text parts, or raise the limit"
            )
        name = message.name
        if name:
            _name(name, f"{field}[{i}].name")
        size = message.ByteSize()
        if size > limits.max_message_bytes:
            raise invalid_argument(
                f"{field}[{i}]: {size} bytes exceeds the {limits.max_message_bytes}-byte limit ([limits] max_message_bytes)"
            )
        texts: list[d.ContentPart] | None = []
        for j, part in enumerate(content):
            if part.HasField("text"):  # nearly every part: nothing to check, no field name to build
                if texts is not None:
                    texts.append(d.TextPart(part.text, part.cache_breakpoint))
                continue
            texts = None
            _part(part, role, f"{field}[{i}].content[{j}]", call_ids)
        if role == pb.ROLE_TOOL and not any(p.HasField("tool_result") for p in content):
            raise invalid_argument(
                f"{field}[{i}]: a tool message carries the tool_result of an earlier assistant tool call; "
                "send other text as a user message"
            )
        converted.append(None if texts is None else d.Message(DOMAIN_ROLES[role], tuple(texts), name))
    return converted


def _part(part: pb.ContentPart, role: int, where: str, call_ids: set[str]) -> None:
    kind = part.WhichOneof("part")
    if kind is None:
        raise invalid_argument(
            f"{where}: empty content part; set text, image, tool_call, tool_result or reasoning"
        )
    if kind == "image":
        checks.image(part.image, f"{where}.image")
    elif kind == "tool_call":
        call = part.tool_call
        if role != pb.ROLE_ASSISTANT:
            raise invalid_argument(f"{where}.tool_call: only assistant messages carry tool calls")
        if not call.id:
            raise invalid_argument(f"{where}.tool_call.id: must not be empty")
        _name(call.id, f"{where}.tool_call.id")
        if call.id in call_ids:  # a result could not say which call it answers (Anthropic refuses)
            raise invalid_argument(f"{where}.tool_call.id: {shown(call.id)} is used by an earlier tool call")
        if not TOOL_NAME.match(call.name):
            raise invalid_argument(
                f"{where}.tool_call.name: must match {TOOL_NAME.pattern}, got {shown(call.name)}"
            )
        if call.arguments_json:
            _json(call.arguments_json, f"{where}.tool_call.arguments_json")
        call_ids.add(call.id)
    elif kind == "reasoning" and role != pb.ROLE_ASSISTANT:
        raise invalid_argument(f"{where}.reasoning: only assistant messages carry reasoning")
    elif kind == "tool_result":
        result = part.tool_result
        if role not in (pb.ROLE_TOOL, pb.ROLE_USER):
            raise invalid_argument(f"{where}.tool_result: only tool (or user) messages carry tool results")
        if result.tool_call_id not in call_ids:
            raise invalid_argument(
                f"{where}.tool_result.tool_call_id: no earlier assistant tool call has id {shown(result.tool_call_id)}"
            )


def _json(text: str, where: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise invalid_argument(f"{where}: not valid JSON ({exc})") from None


def _tools(request: pb.ChatRequest | pb.CountTokensRequest, limits: Limits) -> tuple[set[str], int]:
    """The tools' names, and the encoded bytes of their parameter schemas (`_schema_bytes`)."""
    if len(request.tools) > limits.max_tools:
        raise invalid_argument(
            f"tools: at most {limits.max_tools} tools ([limits] max_tools), got {len(request.tools)}"
        )
    names: set[str] = set()
    schema_bytes = 0
    for i, tool in enumerate(request.tools):
        if not TOOL_NAME.match(tool.name):
            raise invalid_argument(f"tools[{i}].name: must match {TOOL_NAME.pattern}, got {shown(tool.name)}")
        if tool.name in names:
            raise invalid_argument(f"tools[{i}].name: {tool.name!r} is defined twice")
        names.add(tool.name)
        size = tool.ByteSize()  # a description or schema is as much prompt as a message is
        if size > limits.max_message_bytes:
            raise invalid_argument(
                f"tools[{i}]: {size} bytes exceeds the {limits.max_message_bytes}-byte limit ([limits] max_message_bytes)"
            )
        if tool.HasField("parameters"):
            schema_bytes = _schema_bytes(tool.parameters, f"tools[{i}].parameters", schema_bytes, limits)
            schema = struct_json(tool.parameters, f"tools[{i}].parameters")
            if schema.get("type", "object") != "object":
                raise invalid_argument(
                    f"tools[{i}].parameters.type: tool parameters must be an object schema"
                )
            checks.schema(schema, f"tools[{i}].parameters")
    return names, schema_bytes


def _schema_bytes(schema: Struct, where: str, before: int, limits: Limits) -> int:
    """The request's schema bytes so far, `schema` included: checked before its conversion, which
    costs a Python call or more for every value it holds."""
    total = before + schema.ByteSize()
    if total > limits.max_schema_bytes:
        raise invalid_argument(
            f"{where}: the request's schemas take more than {limits.max_schema_bytes} bytes in all "
            "([limits] max_schema_bytes); send smaller schemas or fewer tools, or raise the limit"
        )
    return total


def _provider_options(options: Struct, limits: Limits) -> None:
    """Bounded by its encoded size, read without walking it: every later step (conversion, the
    owned-field check, the merge, the upstream body's encoding) walks each of its values."""
    size = options.ByteSize()
    if size > limits.max_provider_options_bytes:
        raise invalid_argument(
            f"provider_options: {size} bytes exceeds the {limits.max_provider_options_bytes}-byte limit "
            "([limits] max_provider_options_bytes); send only the vendor fields the request's own "
            "fields do not cover, or raise the limit"
        )


def _tool_choice(request: pb.ChatRequest, tools: set[str]) -> None:
    choice = request.tool_choice
    mode = choice.mode
    if mode not in TOOL_CHOICE_MODES:
        raise invalid_argument(f"tool_choice.mode: unknown mode {mode}")
    if mode in (pb.ToolChoice.MODE_REQUIRED, pb.ToolChoice.MODE_TOOL) and not tools:
        raise invalid_argument("tool_choice.mode: requires at least one tool in tools")
    if mode == pb.ToolChoice.MODE_TOOL and choice.name not in tools:
        raise invalid_argument(
            f"tool_choice.name: {shown(choice.name)} is not one of the request's tools ({', '.join(sorted(tools))})"
        )
    if mode != pb.ToolChoice.MODE_TOOL and choice.name:  # the model would choose: not what was meant
        raise invalid_argument(
            f"tool_choice.name: only read with mode MODE_TOOL, and mode is {pb.ToolChoice.Mode.Name(mode)}; "
            "set mode to MODE_TOOL to force that tool, or leave name empty"
        )


def _response_format(request: pb.ChatRequest, limits: Limits, schema_bytes: int) -> None:
    """`schema_bytes`: the encoded bytes of the tools' schemas, which count towards the same limit."""
    fmt = request.response_format
    if fmt.type not in RESPONSE_FORMAT_TYPES:
        raise invalid_argument(f"response_format.type: unknown type {fmt.type}")
    if fmt.type != pb.ResponseFormat.TYPE_JSON_SCHEMA:
        # A schema the type ignores would give plain text (or any JSON) without a word.
        ignored = "json_schema" if fmt.HasField("json_schema") else "schema_name" if fmt.schema_name else ""
        if ignored:
            raise invalid_argument(
                f"response_format.{ignored}: only read with type TYPE_JSON_SCHEMA, and type is "
                f"{pb.ResponseFormat.Type.Name(fmt.type)}; set type to TYPE_JSON_SCHEMA, or leave {ignored} unset"
            )
        return
    if not fmt.HasField("json_schema"):
        raise invalid_argument("response_format.json_schema: required when type is TYPE_JSON_SCHEMA")
    if fmt.schema_name and not TOOL_NAME.match(fmt.schema_name):
        raise invalid_argument(f"response_format.schema_name: must match {TOOL_NAME.pattern}")
    _schema_bytes(fmt.json_schema, "response_format.json_schema", schema_bytes, limits)
    checks.schema(struct_json(fmt.json_schema, "response_format.json_schema"), "response_format.json_schema")


def _reasoning(request: pb.ChatRequest, bounds: SizeBounds) -> None:
    budget = request.reasoning.budget_tokens
    if not 0 <= budget <= bounds.max_reasoning_budget:
        raise invalid_argument(
            f"reasoning.budget_tokens: must be between 0 and {bounds.max_reasoning_budget}, got {budget}"
        )
    if request.reasoning.effort not in EFFORTS:
        raise invalid_argument(f"reasoning.effort: unknown effort {request.reasoning.effort}")
    if budget and not request.reasoning.enabled:
        # A budget is a setting of reasoning that `enabled` turns on (proto ReasoningOptions): it
        # turns nothing on by itself, and reaching no provider it would be lost without a word.
        raise invalid_argument("reasoning.budget_tokens: set reasoning.enabled to use budget_tokens")


MAX_TOP_LOGPROBS = 20  # OpenAI's bound; Gemini's is the same


def _logprobs(request: pb.ChatRequest | pb.CompleteRequest) -> None:
    top = request.logprobs.top_logprobs
    if not 0 <= top <= MAX_TOP_LOGPROBS:
        raise invalid_argument(f"logprobs.top_logprobs: must be between 0 and {MAX_TOP_LOGPROBS}, got {top}")
    if top and not request.logprobs.enabled:
        # As a reasoning budget without `enabled`: a setting that turns nothing on by itself.
        raise invalid_argument("logprobs.top_logprobs: set logprobs.enabled to use top_logprobs")


# --- requests ------------------------------------------------------------------------------------
# Only the fields a request sets are checked (`set_fields`): an unset field reads as its default,
# which passes every check, and one ListFields names them all where asking for each of a request's
# fields in turn costs more than the checks of the two or three most requests set.


def chat(
    request: pb.ChatRequest, limits: Limits = DEFAULT_LIMITS, given: Collection[str] | None = None
) -> list[d.Message | None]:
    """Check what `request` sets (`given`: the names of its set fields, when the caller listed them).
    Returns its messages as checked on the way (`_messages`), for `convert.chat_request_from_proto`."""
    given = set_fields(request) if given is None else given
    bounds = _route(request, fallbacks="fallbacks" in given)
    if "provider_options" in given:
        _provider_options(request.provider_options, limits)
    if "messages" not in given:
        raise invalid_argument("messages: at least one message is required")
    messages = _messages(request.messages, limits)
    tools, schema_bytes = _tools(request, limits) if "tools" in given else (set(), 0)
    if "tool_choice" in given:
        _tool_choice(request, tools)
    if "response_format" in given:
        _response_format(request, limits, schema_bytes)
    if "reasoning" in given:
        _reasoning(request, bounds)
    if "logprobs" in given:
        _logprobs(request)
    if not SAMPLING_FIELDS.isdisjoint(given):
        _sampling(request, bounds)
    if "metadata" in given:
        _metadata(request.metadata)
    return messages


def complete(
    request: pb.CompleteRequest, limits: Limits = DEFAULT_LIMITS, given: Collection[str] | None = None
) -> pb.CompleteRequest:
    given = set_fields(request) if given is None else given
    bounds = _route(request, fallbacks="fallbacks" in given)
    if "provider_options" in given:
        _provider_options(request.provider_options, limits)
    if "prompt" not in given:
        raise invalid_argument("prompt: must not be empty")
    _text(request.prompt, "prompt", limits)
    if "logprobs" in given:
        _logprobs(request)
    if not SAMPLING_FIELDS.isdisjoint(given):
        _sampling(request, bounds)
    if "metadata" in given:
        _metadata(request.metadata)
    return request


def count(request: pb.CountTokensRequest, limits: Limits = DEFAULT_LIMITS) -> pb.CountTokensRequest:
    _route(request, fallbacks=False)
    if not request.text and not request.messages:
        raise invalid_argument("text or messages: give the text or the conversation to count")
    _text(request.text, "text", limits)
    _messages(request.messages, limits)
    _tools(request, limits)
    return request


def embed(request: pb.EmbedRequest, limits: Limits = DEFAULT_LIMITS) -> pb.EmbedRequest:
    bounds = _route(request, fallbacks=False)
    if not request.inputs:
        raise invalid_argument("inputs: at least one text to embed is required")
    if len(request.inputs) > limits.max_embed_inputs:
        raise invalid_argument(
            f"inputs: at most {limits.max_embed_inputs} texts ([limits] max_embed_inputs), got {len(request.inputs)}"
        )
    for i, text in enumerate(request.inputs):
        if not text:
            raise invalid_argument(f"inputs[{i}]: must not be empty")
        _text(text, f"inputs[{i}]", limits)
    dimensions = request.dimensions
    if not 0 <= dimensions <= bounds.max_embed_dimensions:
        raise invalid_argument(
            f"dimensions: must be between 0 (the model's default) and {bounds.max_embed_dimensions}, got {dimensions}"
        )
    answer = embed_answer_bytes(len(request.inputs), dimensions)
    if answer > limits.max_answer_bytes:  # the answer could not be sent: refused before any work
        raise invalid_argument(
            f"dimensions: {len(request.inputs)} inputs x {dimensions} dimensions make an answer of up "
            f"to {answer} bytes, over [server] max_message_bytes {limits.max_answer_bytes}; "
            "send fewer inputs per request (or fewer dimensions), or raise the limit"
        )
    return request


def list_models(request: pb.ListModelsRequest) -> pb.ListModelsRequest:
    _name(request.provider, "provider")
    return request


def _text(text: str, where: str, limits: Limits) -> None:
    # Characters first: a cheap bound before the encode that measures bytes.
    if len(text) > limits.max_message_bytes or len(text.encode()) > limits.max_message_bytes:
        raise invalid_argument(
            f"{where}: exceeds the {limits.max_message_bytes}-byte limit ([limits] max_message_bytes)"
        )
