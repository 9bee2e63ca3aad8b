"""Property-based fuzzing of the edge checks: whatever request arrives, validation either passes it
or raises GatewayError(INVALID_ARGUMENT); nothing else escapes (which would become INTERNAL)."""

from __future__ import annotations

from typing import Any

from google.protobuf import message as proto_message
from google.protobuf import struct_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.server import convert, validate
from provider_gateway.v1 import provider_service_pb2 as pb

FUZZ = settings(
    max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
LIMITS = validate.Limits(max_messages=8, max_message_bytes=4096, max_tools=4, max_embed_inputs=4)

json_scalars = st.one_of(st.none(), st.booleans(), st.floats(), st.text(max_size=10))
schema_keys = st.sampled_from(
    ["type", "properties", "required", "items", "anyOf", "oneOf", "allOf", "enum", "description", "x"]
)
schemas = st.recursive(
    st.one_of(json_scalars, st.sampled_from(["object", "string", "array", "integer", "strnig"])),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.one_of(schema_keys, st.text(max_size=5)), children, max_size=5),
    ),
    max_leaves=20,
)
names = st.one_of(st.sampled_from(["lookup", "f", "", "a b", "x" * 65]), st.text(max_size=10))
image_bytes = st.one_of(
    st.binary(max_size=24),
    st.sampled_from(
        [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"RIFF\0\0\0\0WEBP", b"RIFF\0\0\0\0WAVE"]
    ),
)
urls = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        ["https://a.b/c.png", "http://", "data:image/png;base64,iVBORw0KGgo=", "data:,", "file:///x"]
    ),
)


# Every strategy is built once, here: a strategy built inside a composite is built and validated
# again on every draw, which cost more than half of these tests' time (what is drawn is unchanged).
part_kinds = st.sampled_from(
    ["text", "image_data", "image_url", "tool_call", "tool_result", "reasoning", "none"]
)
media_types = st.sampled_from(
    ["", "image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "text/plain"]
)
call_ids = st.sampled_from(["c1", "c2", ""])
tool_schemas = st.one_of(
    st.none(), st.dictionaries(st.one_of(schema_keys, st.text(max_size=5)), schemas, max_size=4)
)
int32s = st.integers(-(2**31), 2**31 - 1)


@st.composite
def parts(draw: Any) -> pb.ContentPart:
    kind = draw(part_kinds)
    media = draw(media_types)
    if kind == "text":
        return pb.ContentPart(text=draw(st.text(max_size=20)))
    if kind == "image_data":
        return pb.ContentPart(image=pb.Image(data=draw(image_bytes), media_type=media))
    if kind == "image_url":
        return pb.ContentPart(image=pb.Image(url=draw(urls), media_type=media))
    if kind == "tool_call":
        call = pb.ToolCall(id=draw(call_ids), name=draw(names), arguments_json=draw(st.text(max_size=12)))
        return pb.ContentPart(tool_call=call)
    if kind == "tool_result":
        return pb.ContentPart(tool_result=pb.ToolResult(tool_call_id=draw(call_ids)))
    if kind == "reasoning":
        return pb.ContentPart(reasoning=pb.Reasoning(text=draw(st.text(max_size=5))))
    return pb.ContentPart()


message_contents = st.lists(parts(), max_size=3)
response_schemas = st.dictionaries(schema_keys, schemas, max_size=4)
stop_lists = st.lists(st.text(max_size=3), max_size=18)


@st.composite
def chat_requests(draw: Any) -> pb.ChatRequest:
    request = pb.ChatRequest(model="mock/echo")
    for _ in range(draw(st.integers(0, 6))):
        message = request.messages.add(role=draw(st.integers(-1, 7)))  # type: ignore[arg-type]
        message.content.extend(draw(message_contents))
    for _ in range(draw(st.integers(0, 5))):
        tool = request.tools.add(name=draw(names))
        schema = draw(tool_schemas)
        if schema is not None:
            tool.parameters.CopyFrom(_struct(schema))
    request.tool_choice.mode = draw(st.integers(-1, 6))  # type: ignore[assignment]
    request.tool_choice.name = draw(names)
    request.response_format.type = draw(st.integers(-1, 5))  # type: ignore[assignment]
    if draw(st.booleans()):
        request.response_format.json_schema.CopyFrom(_struct(draw(response_schemas)))
    request.response_format.schema_name = draw(names)
    request.reasoning.budget_tokens = draw(int32s)
    request.reasoning.effort = draw(st.integers(-1, 6))  # type: ignore[assignment]
    if draw(st.booleans()):
        request.temperature = draw(st.floats())
    if draw(st.booleans()):
        request.top_p = draw(st.floats())
    if draw(st.booleans()):
        request.max_tokens = draw(int32s)
    request.stop.extend(draw(stop_lists))
    return request


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


def only_invalid_argument(check: Any, request: Any) -> None:
    error: GatewayError | None = None
    try:
        check(request, LIMITS)
    except GatewayError as exc:
        error = exc
    if error is not None:
        assert error.kind is ErrorKind.INVALID_ARGUMENT
        assert ":" in error.message  # every message starts with the field it names


@FUZZ
@given(chat_requests())
def test_chat_validation_raises_only_invalid_argument(request: pb.ChatRequest) -> None:
    only_invalid_argument(validate.chat, request)
    count = pb.CountTokensRequest(model="m", messages=request.messages, tools=request.tools)
    only_invalid_argument(validate.count, count)


@FUZZ
@given(
    st.binary(max_size=300),
    st.sampled_from([pb.ChatRequest, pb.CompleteRequest, pb.EmbedRequest, pb.CountTokensRequest]),
)
def test_validation_of_arbitrary_wire_bytes(data: bytes, kind: Any) -> None:
    try:
        request = kind.FromString(data)
    except proto_message.DecodeError:
        return
    check = {
        pb.ChatRequest: validate.chat,
        pb.CompleteRequest: validate.complete,
        pb.EmbedRequest: validate.embed,
        pb.CountTokensRequest: validate.count,
    }[kind]
    only_invalid_argument(check, request)


def every_check(request: pb.ChatRequest, limits: validate.Limits) -> pb.ChatRequest:
    """`validate.chat` without its skipping of unset fields: every check runs on every request."""
    bounds = validate._route(request)
    if not request.messages:
        raise GatewayError(ErrorKind.INVALID_ARGUMENT, "messages: at least one message is required")
    validate._messages(request.messages, limits)
    tools, schema_bytes = validate._tools(request, limits)
    validate._tool_choice(request, tools)
    validate._response_format(request, limits, schema_bytes)
    validate._reasoning(request, bounds)
    validate._sampling(request, bounds)
    validate._metadata(request.metadata)
    return request


def verdict(check: Any, request: Any) -> str:
    try:
        check(request, LIMITS)
    except GatewayError as exc:
        return f"{exc.kind.name}: {exc.message}"
    return "ok"


full_chat_requests = chat_requests()
metadata_maps = st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=3)
fallback_lists = st.lists(names, max_size=3)


@st.composite
def sparse_chat_requests(draw: Any) -> pb.ChatRequest:
    """Requests that leave some fields unset and set others, to their defaults (zero, empty) too."""
    full = draw(full_chat_requests)
    request = pb.ChatRequest()
    for field, value in full.ListFields():
        if draw(st.booleans()):
            if field.is_repeated:
                getattr(request, field.name).MergeFrom(value)
            elif field.message_type is not None:
                getattr(request, field.name).CopyFrom(value)
            else:
                setattr(request, field.name, value)
    if draw(st.booleans()):  # a valid conversation, so that the checks after it are reached
        del request.messages[:]
        request.messages.add(role=pb.ROLE_USER).content.add(text="hi")
    if draw(st.booleans()):
        request.temperature = 0.0  # set to its default: still present, still checked
    if draw(st.booleans()):
        request.tool_choice.SetInParent()
    if draw(st.booleans()):
        request.metadata.update(draw(metadata_maps))
    if draw(st.booleans()):
        request.fallbacks.extend(draw(fallback_lists))
    return request


@FUZZ
@given(sparse_chat_requests())
def test_skipping_unset_fields_never_changes_the_verdict(request: pb.ChatRequest) -> None:
    """`validate.chat` checks only the fields a request sets (an unset one passes every check):
    whatever the request, it says what running every check says, in the same words."""
    assert verdict(validate.chat, request) == verdict(every_check, request)


@st.composite
def complete_requests(draw: Any) -> pb.CompleteRequest:
    """Prompt requests that set some fields (to their defaults too) and leave the others unset."""
    request = pb.CompleteRequest(model=draw(st.sampled_from(["mock/echo", "", "a\nb"])))
    request.prompt = draw(st.sampled_from(["", "hi", "x" * 5000]))
    request.fallbacks.extend(draw(st.lists(names, max_size=3)))
    for name in ("temperature", "top_p"):
        if draw(st.booleans()):
            setattr(request, name, draw(st.sampled_from([0.0, 0.5, 3.0, -1.0])))
    if draw(st.booleans()):
        request.max_tokens = draw(st.sampled_from([0, 1, -5, 2**31 - 1]))
    request.stop.extend(draw(st.lists(st.sampled_from(["", "END", "x" * 1001]), max_size=17)))
    request.metadata.update(draw(st.dictionaries(st.sampled_from(["", "k", "x" * 129]), st.text(max_size=3))))
    return request


def every_complete_check(request: pb.CompleteRequest, limits: validate.Limits) -> pb.CompleteRequest:
    """`validate.complete` without its skipping of unset fields."""
    bounds = validate._route(request)
    if not request.prompt:
        raise GatewayError(ErrorKind.INVALID_ARGUMENT, "prompt: must not be empty")
    validate._text(request.prompt, "prompt", limits)
    validate._sampling(request, bounds)
    validate._metadata(request.metadata)
    return request


@FUZZ
@given(complete_requests())
def test_skipping_unset_fields_never_changes_a_prompt_requests_verdict(request: pb.CompleteRequest) -> None:
    assert verdict(validate.complete, request) == verdict(every_complete_check, request)


def checked_then_converted(request: pb.ChatRequest) -> Any:
    """The servicer's path: the checks convert the messages as they walk them (`validate._messages`),
    the conversion takes those and converts the rest."""
    given = convert.set_fields(request)
    return convert.chat_request_from_proto(request, given, validate.chat(request, LIMITS, given))


def checked_apart(request: pb.ChatRequest) -> Any:
    """Every check first, then the whole conversion on its own (as before the one walk)."""
    validate.chat(request, LIMITS)
    return convert.chat_request_from_proto(request)


def outcome(path: Any, request: pb.ChatRequest) -> Any:
    try:
        return path(request)
    except GatewayError as exc:
        return f"{exc.kind.name}: {exc.message}"


@FUZZ
@given(chat_requests())
def test_one_walk_converts_as_the_conversion_alone_and_refuses_alike(request: pb.ChatRequest) -> None:
    """Messages converted while they are checked give the same domain request, and a bad request
    the same first error, as checking all and then converting all."""
    assert outcome(checked_then_converted, request) == outcome(checked_apart, request)


# Mostly valid conversations (the strategy above rarely passes every check): text parts, now and
# then an image, a reasoning part, a tool call and its result, or a part that fails a check.
other_parts = st.sampled_from(
    [
        pb.ContentPart(image=pb.Image(url="https://a.b/c.png")),
        pb.ContentPart(image=pb.Image(data=b"\x89PNG\r\n\x1a\n")),  # no media type: convert refuses
        pb.ContentPart(reasoning=pb.Reasoning(text="hm", signature="s")),
        pb.ContentPart(tool_call=pb.ToolCall(id="c1", name="f", arguments_json="{}")),
        pb.ContentPart(tool_result=pb.ToolResult(tool_call_id="c1", content="r")),
        pb.ContentPart(),
    ]
)
text_parts = st.builds(pb.ContentPart, text=st.text(max_size=5), cache_breakpoint=st.booleans())
plain_messages = st.builds(
    lambda role, parts, name: pb.Message(role=role, content=parts, name=name),
    st.sampled_from([pb.ROLE_USER] * 4 + [pb.ROLE_SYSTEM] + [pb.ROLE_ASSISTANT] * 3 + [pb.ROLE_TOOL, 0]),
    st.lists(st.one_of(*[text_parts] * 8, other_parts), min_size=1, max_size=3),
    st.sampled_from([""] * 6 + ["bob", "a\nb"]),
)


@FUZZ
@given(st.lists(plain_messages, min_size=1, max_size=4))
def test_one_walk_on_conversations_that_mostly_pass(messages: list[pb.Message]) -> None:
    request = pb.ChatRequest(model="m", messages=messages)
    assert outcome(checked_then_converted, request) == outcome(checked_apart, request)
