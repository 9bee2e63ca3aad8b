"""Request checks at the edge: a bad request is rejected with INVALID_ARGUMENT naming the field.

Checks run on the protobuf message, before any provider sees the request, so that every client
gets the same clear message whichever vendor would have failed later (and less clearly). Sizes
are bounded by the `[limits]` table:

    [limits]
    max_messages = 1000          # messages in one conversation
    max_message_bytes = 4194304  # encoded size of one message (images included)
    max_tools = 128
    max_embed_inputs = 2048
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
from google.protobuf import json_format

from provider_gateway.config import GatewayConfig
from provider_gateway.errors import invalid_argument
from provider_gateway.v1 import provider_service_pb2 as pb

LIMIT_KEYS = ("max_messages", "max_message_bytes", "max_tools", "max_embed_inputs")
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MAX_OUTPUT_TOKENS = 1_000_000
MAX_STOP_SEQUENCES = 16
MAX_SCHEMA_DEPTH = 32
JSON_TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})
# What each accepted image type starts with; a declared type must match the bytes.
IMAGE_MAGIC: dict[str, tuple[bytes, ...]] = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),  # and b"WEBP" at offset 8, checked below
}


@dataclass(frozen=True, slots=True)
class Limits:
    max_messages: int = 1000
    max_message_bytes: int = 4 * 1024 * 1024
    max_tools: int = 128
    max_embed_inputs: int = 2048

    @classmethod
    def from_config(cls, config: GatewayConfig) -> Limits:
        section = config.section("limits")
        section.reject_unknown(LIMIT_KEYS)
        default = cls()
        return cls(
            max_messages=section.integer("max_messages", default.max_messages, minimum=1),
            max_message_bytes=section.integer("max_message_bytes", default.max_message_bytes, minimum=64),
            max_tools=section.integer("max_tools", default.max_tools, minimum=0),
            max_embed_inputs=section.integer("max_embed_inputs", default.max_embed_inputs, minimum=1),
        )


DEFAULT_LIMITS = Limits()


# --- sampling ------------------------------------------------------------------------------------


def _sampling(request: pb.ChatRequest | pb.CompleteRequest) -> None:
    if request.HasField("temperature") and not 0.0 <= request.temperature <= 2.0:
        raise invalid_argument(f"temperature: must be between 0 and 2, got {request.temperature:g}")
    if request.HasField("top_p") and not 0.0 <= request.top_p <= 1.0:
        raise invalid_argument(f"top_p: must be between 0 and 1, got {request.top_p:g}")
    if request.HasField("max_tokens") and not 0 < request.max_tokens <= MAX_OUTPUT_TOKENS:
        raise invalid_argument(
            f"max_tokens: must be between 1 and {MAX_OUTPUT_TOKENS}, got {request.max_tokens}"
        )
    if len(request.stop) > MAX_STOP_SEQUENCES:
        raise invalid_argument(f"stop: at most {MAX_STOP_SEQUENCES} stop sequences, got {len(request.stop)}")
    for i, stop in enumerate(request.stop):
        if not stop:
            raise invalid_argument(f"stop[{i}]: a stop sequence must not be empty")


# --- messages ------------------------------------------------------------------------------------


def _messages(messages: Any, limits: Limits, field: str = "messages") -> None:
    if len(messages) > limits.max_messages:
        raise invalid_argument(
            f"{field}: at most {limits.max_messages} messages ([limits] max_messages), got {len(messages)}"
        )
    call_ids: set[str] = set()
    for i, message in enumerate(messages):
        where = f"{field}[{i}]"
        if message.role not in pb.Role.values() or message.role == pb.ROLE_UNSPECIFIED:
            raise invalid_argument(
                f"{where}.role: unknown role {message.role}; use system, user, assistant or tool"
            )
        if not message.content:
            raise invalid_argument(f"{where}.content: a message needs at least one content part")
        size = message.ByteSize()
        if size > limits.max_message_bytes:
            raise invalid_argument(
                f"{where}: {size} bytes exceeds the {limits.max_message_bytes}-byte limit ([limits] max_message_bytes)"
            )
        for j, part in enumerate(message.content):
            _part(part, message.role, f"{where}.content[{j}]", call_ids)


def _part(part: pb.ContentPart, role: int, where: str, call_ids: set[str]) -> None:
    kind = part.WhichOneof("part")
    if kind is None:
        raise invalid_argument(
            f"{where}: empty content part; set text, image, tool_call, tool_result or reasoning"
        )
    if kind == "image":
        _image(part.image, f"{where}.image")
    elif kind == "tool_call":
        call = part.tool_call
        if role != pb.ROLE_ASSISTANT:
            raise invalid_argument(f"{where}.tool_call: only assistant messages carry tool calls")
        if not call.id:
            raise invalid_argument(f"{where}.tool_call.id: must not be empty")
        if not TOOL_NAME.match(call.name):
            raise invalid_argument(
                f"{where}.tool_call.name: must match {TOOL_NAME.pattern}, got {call.name!r}"
            )
        if call.arguments_json:
            _json(call.arguments_json, f"{where}.tool_call.arguments_json")
        call_ids.add(call.id)
    elif kind == "tool_result":
        result = part.tool_result
        if role not in (pb.ROLE_TOOL, pb.ROLE_USER):
            raise invalid_argument(f"{where}.tool_result: only tool (or user) messages carry tool results")
        if result.tool_call_id not in call_ids:
            raise invalid_argument(
                f"{where}.tool_result.tool_call_id: no earlier assistant tool call has id {result.tool_call_id!r}"
            )


def _json(text: str, where: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise invalid_argument(f"{where}: not valid JSON ({exc})") from None


# --- images --------------------------------------------------------------------------------------


def _image(image: pb.Image, where: str) -> None:
    source = image.WhichOneof("source")
    media_type = image.media_type.lower()
    if media_type and media_type not in IMAGE_MAGIC:
        raise invalid_argument(
            f"{where}.media_type: {image.media_type!r} is not supported (use {', '.join(IMAGE_MAGIC)})"
        )
    if source is None:
        raise invalid_argument(f"{where}: set data or url")
    if source == "data":
        _image_bytes(image.data, media_type, f"{where}.data")
        return
    url = urlsplit(image.url)
    if url.scheme == "data":
        declared, data = _data_url(image.url, f"{where}.url")
        _image_bytes(data, declared, f"{where}.url")
    elif url.scheme not in ("http", "https") or not url.netloc:
        raise invalid_argument(f"{where}.url: must be an http(s) or data: URL, got scheme {url.scheme!r}")


def _data_url(url: str, where: str) -> tuple[str, bytes]:
    header, comma, payload = url[len("data:") :].partition(",")
    media_type, _, encoding = header.partition(";")
    if not comma or encoding != "base64":
        raise invalid_argument(f"{where}: a data URL must look like data:image/png;base64,<data>")
    if media_type.lower() not in IMAGE_MAGIC:
        raise invalid_argument(
            f"{where}: media type {media_type!r} is not supported (use {', '.join(IMAGE_MAGIC)})"
        )
    try:
        return media_type.lower(), base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise invalid_argument(f"{where}: the data is not valid base64") from None


def _image_bytes(data: bytes, media_type: str, where: str) -> None:
    if not data:
        raise invalid_argument(f"{where}: image data is empty")
    sniffed = next(
        (kind for kind, magics in IMAGE_MAGIC.items() if data.startswith(magics) and _webp_ok(kind, data)),
        None,
    )
    if sniffed is None:
        raise invalid_argument(f"{where}: not a PNG, JPEG, GIF or WebP image")
    if media_type and sniffed != media_type:
        raise invalid_argument(f"{where}: declared {media_type} but the data is {sniffed}")


def _webp_ok(kind: str, data: bytes) -> bool:
    return kind != "image/webp" or data[8:12] == b"WEBP"


# --- tools and schemas ---------------------------------------------------------------------------


def _schema(node: Any, where: str, depth: int = 0) -> None:
    """A structural check of a JSON schema: enough to catch what every vendor would reject."""
    if isinstance(node, bool):
        return
    if not isinstance(node, dict):
        raise invalid_argument(f"{where}: a schema must be an object, got {type(node).__name__}")
    if depth > MAX_SCHEMA_DEPTH:
        raise invalid_argument(f"{where}: schema nested deeper than {MAX_SCHEMA_DEPTH} levels")
    kind = node.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if kind is not None else []
    for k in kinds:
        if k not in JSON_TYPES:
            raise invalid_argument(
                f"{where}.type: {k!r} is not a JSON schema type ({', '.join(sorted(JSON_TYPES))})"
            )
    properties = node.get("properties", {})
    if not isinstance(properties, dict):
        raise invalid_argument(f"{where}.properties: must be an object mapping names to schemas")
    for name, sub in properties.items():
        _schema(sub, f"{where}.properties.{name}", depth + 1)
    required = node.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise invalid_argument(f"{where}.required: must be a list of property names")
    if "items" in node:
        _schema(node["items"], f"{where}.items", depth + 1)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in node:
            options = node[key]
            if not isinstance(options, list) or not options:
                raise invalid_argument(f"{where}.{key}: must be a non-empty list of schemas")
            for i, sub in enumerate(options):
                _schema(sub, f"{where}.{key}[{i}]", depth + 1)
    if "enum" in node and (not isinstance(node["enum"], list) or not node["enum"]):
        raise invalid_argument(f"{where}.enum: must be a non-empty list")


def _struct(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message)


def _tools(request: pb.ChatRequest | pb.CountTokensRequest, limits: Limits) -> set[str]:
    if len(request.tools) > limits.max_tools:
        raise invalid_argument(
            f"tools: at most {limits.max_tools} tools ([limits] max_tools), got {len(request.tools)}"
        )
    names: set[str] = set()
    for i, tool in enumerate(request.tools):
        if not TOOL_NAME.match(tool.name):
            raise invalid_argument(f"tools[{i}].name: must match {TOOL_NAME.pattern}, got {tool.name!r}")
        if tool.name in names:
            raise invalid_argument(f"tools[{i}].name: {tool.name!r} is defined twice")
        names.add(tool.name)
        if tool.HasField("parameters"):
            schema = _struct(tool.parameters)
            if schema.get("type", "object") != "object":
                raise invalid_argument(
                    f"tools[{i}].parameters.type: tool parameters must be an object schema"
                )
            _schema(schema, f"tools[{i}].parameters")
    return names


def _tool_choice(request: pb.ChatRequest, tools: set[str]) -> None:
    choice = request.tool_choice
    mode = choice.mode
    if mode not in pb.ToolChoice.Mode.values():
        raise invalid_argument(f"tool_choice.mode: unknown mode {mode}")
    if mode in (pb.ToolChoice.MODE_REQUIRED, pb.ToolChoice.MODE_TOOL) and not tools:
        raise invalid_argument("tool_choice.mode: requires at least one tool in tools")
    if mode == pb.ToolChoice.MODE_TOOL and choice.name not in tools:
        raise invalid_argument(
            f"tool_choice.name: {choice.name!r} is not one of the request's tools ({', '.join(sorted(tools))})"
        )


def _response_format(request: pb.ChatRequest) -> None:
    fmt = request.response_format
    if fmt.type not in pb.ResponseFormat.Type.values():
        raise invalid_argument(f"response_format.type: unknown type {fmt.type}")
    if fmt.type != pb.ResponseFormat.TYPE_JSON_SCHEMA:
        return
    if not fmt.HasField("json_schema"):
        raise invalid_argument("response_format.json_schema: required when type is TYPE_JSON_SCHEMA")
    if fmt.schema_name and not TOOL_NAME.match(fmt.schema_name):
        raise invalid_argument(f"response_format.schema_name: must match {TOOL_NAME.pattern}")
    _schema(_struct(fmt.json_schema), "response_format.json_schema")


def _reasoning(request: pb.ChatRequest) -> None:
    if request.reasoning.budget_tokens < 0:
        raise invalid_argument(
            f"reasoning.budget_tokens: must not be negative, got {request.reasoning.budget_tokens}"
        )
    if request.reasoning.effort not in pb.ReasoningOptions.Effort.values():
        raise invalid_argument(f"reasoning.effort: unknown effort {request.reasoning.effort}")


# --- requests ------------------------------------------------------------------------------------


def chat(request: pb.ChatRequest, limits: Limits = DEFAULT_LIMITS) -> pb.ChatRequest:
    if not request.messages:
        raise invalid_argument("messages: at least one message is required")
    _messages(request.messages, limits)
    tools = _tools(request, limits)
    _tool_choice(request, tools)
    _response_format(request)
    _reasoning(request)
    _sampling(request)
    return request


def complete(request: pb.CompleteRequest, limits: Limits = DEFAULT_LIMITS) -> pb.CompleteRequest:
    if not request.prompt:
        raise invalid_argument("prompt: must not be empty")
    if len(request.prompt.encode()) > limits.max_message_bytes:
        raise invalid_argument(
            f"prompt: exceeds the {limits.max_message_bytes}-byte limit ([limits] max_message_bytes)"
        )
    _sampling(request)
    return request


def count(request: pb.CountTokensRequest, limits: Limits = DEFAULT_LIMITS) -> pb.CountTokensRequest:
    if not request.text and not request.messages:
        raise invalid_argument("text or messages: give the text or the conversation to count")
    _messages(request.messages, limits)
    _tools(request, limits)
    return request


def embed(request: pb.EmbedRequest, limits: Limits = DEFAULT_LIMITS) -> pb.EmbedRequest:
    if not request.inputs:
        raise invalid_argument("inputs: at least one text to embed is required")
    if len(request.inputs) > limits.max_embed_inputs:
        raise invalid_argument(
            f"inputs: at most {limits.max_embed_inputs} texts ([limits] max_embed_inputs), got {len(request.inputs)}"
        )
    for i, text in enumerate(request.inputs):
        if not text:
            raise invalid_argument(f"inputs[{i}]: must not be empty")
    if request.dimensions < 0:
        raise invalid_argument(f"dimensions: must not be negative, got {request.dimensions}")
    return request
