"""Bad requests through the real gRPC API: each gets INVALID_ARGUMENT and a message naming the field."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from conftest import RunningGateway, run_gateway
from google.protobuf import struct_pb2

from provider_gateway.v1 import provider_service_pb2 as pb

LIMITS = """
[limits]
max_messages = 5
max_message_bytes = 2048
max_tools = 4
max_embed_inputs = 3
max_content_parts = 8
max_schema_bytes = 256
max_provider_options_bytes = 256
"""
PARTS_LIMIT = "content parts in all ([limits] max_content_parts)"
SCHEMA_LIMIT = "the request's schemas take more than 256 bytes in all ([limits] max_schema_bytes)"
OPTIONS_LIMIT = "bytes exceeds the 256-byte limit ([limits] max_provider_options_bytes)"

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 24
USER, ASSISTANT, TOOL = pb.ROLE_USER, pb.ROLE_ASSISTANT, pb.ROLE_TOOL


def text(value: str = "hi") -> pb.ContentPart:
    return pb.ContentPart(text=value)


def msg(role: int, *parts: pb.ContentPart) -> pb.Message:
    return pb.Message(role=role, content=list(parts))  # type: ignore[arg-type]


def call(id_: str = "c1", name: str = "lookup", args: str = "{}") -> pb.ContentPart:
    return pb.ContentPart(tool_call=pb.ToolCall(id=id_, name=name, arguments_json=args))


def result(id_: str = "c1") -> pb.ContentPart:
    return pb.ContentPart(tool_result=pb.ToolResult(tool_call_id=id_, content="42"))


def image(**fields: Any) -> pb.ContentPart:
    return pb.ContentPart(image=pb.Image(**fields))


def struct(value: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(value)
    return s


def logit_bias(tokens: int) -> struct_pb2.Struct:
    """Options of 21 + 20 x `tokens` bytes encoded (each entry: a 5-digit token id and -100)."""
    return struct({"logit_bias": {str(10000 + i): -100 for i in range(tokens)}})


def tool(name: str = "lookup", params: dict[str, Any] | None = None) -> pb.Tool:
    t = pb.Tool(name=name, description="d")
    if params is not None:
        t.parameters.CopyFrom(struct(params))
    return t


def chat(*messages: pb.Message, **fields: Any) -> pb.ChatRequest:
    return pb.ChatRequest(model="mock/echo", messages=list(messages) or [msg(USER, text())], **fields)


def complete(**fields: Any) -> pb.CompleteRequest:
    fields.setdefault("prompt", "a")
    return pb.CompleteRequest(model="mock/echo", **fields)


def count(**fields: Any) -> pb.CountTokensRequest:
    return pb.CountTokensRequest(model="mock/echo", **fields)


def data_url(media: str, payload: bytes) -> str:
    return f"data:{media};base64,{base64.b64encode(payload).decode()}"


CHAT_CASES: list[tuple[str, pb.ChatRequest, str]] = [
    ("no-messages", pb.ChatRequest(model="mock/echo"), "messages: at least one message"),
    ("no-model", pb.ChatRequest(messages=[msg(USER, text())]), "model is required"),
    ("empty-content", chat(msg(USER)), "messages[0].content: a message needs"),
    ("role-unspecified", chat(msg(pb.ROLE_UNSPECIFIED, text())), "messages[0].role: unknown role"),
    ("role-unknown-number", chat(msg(42, text())), "messages[0].role: unknown role 42"),
    ("empty-part", chat(msg(USER, pb.ContentPart())), "messages[0].content[0]: empty content part"),
    ("tool-result-no-call", chat(msg(TOOL, result())), "messages[0].content[0].tool_result.tool_call_id"),
    (
        "tool-result-other-id",
        chat(msg(USER, text()), msg(ASSISTANT, call("c1")), msg(TOOL, result("c2"))),
        "messages[2].content[0].tool_result.tool_call_id: no earlier assistant tool call has id 'c2'",
    ),
    ("tool-call-from-user", chat(msg(USER, call())), "messages[0].content[0].tool_call: only assistant"),
    (
        "tool-result-from-assistant",
        chat(msg(ASSISTANT, call(), result())),
        "messages[0].content[1].tool_result: only tool",
    ),
    (
        "tool-call-bad-json",
        chat(msg(USER, text()), msg(ASSISTANT, call(args="{oops"))),
        "messages[1].content[0].tool_call.arguments_json: not valid JSON",
    ),
    (
        "tool-call-no-id",
        chat(msg(USER, text()), msg(ASSISTANT, call(id_=""))),
        "tool_call.id: must not be empty",
    ),
    (
        "tool-call-bad-name",
        chat(msg(USER, text()), msg(ASSISTANT, call(name="a b"))),
        "tool_call.name: must match",
    ),
    ("tool-name-space", chat(tools=[tool("get weather")]), "tools[0].name: must match"),
    ("tool-name-too-long", chat(tools=[tool("x" * 65)]), "tools[0].name: must match"),
    ("tool-name-empty", chat(tools=[tool("")]), "tools[0].name: must match"),
    ("tool-duplicate", chat(tools=[tool("f"), tool("f")]), "tools[1].name: 'f' is defined twice"),
    ("tool-params-not-object", chat(tools=[tool(params={"type": "string"})]), "tools[0].parameters.type"),
    (
        "tool-params-bad-type",
        chat(tools=[tool(params={"type": "object", "properties": {"x": {"type": "strnig"}}})]),
        "tools[0].parameters.properties.x.type: 'strnig' is not a JSON schema type",
    ),
    (
        "tool-params-properties-list",
        chat(tools=[tool(params={"type": "object", "properties": ["x"]})]),
        "tools[0].parameters.properties: must be an object",
    ),
    (
        "tool-params-required-string",
        chat(tools=[tool(params={"type": "object", "required": "x"})]),
        "tools[0].parameters.required: must be a list",
    ),
    (
        "tool-params-property-not-schema",
        chat(tools=[tool(params={"type": "object", "properties": {"x": 3}})]),
        "tools[0].parameters.properties.x: a schema must be an object",
    ),
    ("too-many-tools", chat(tools=[tool(f"t{i}") for i in range(5)]), "tools: at most 4 tools"),
    (
        "tool-choice-unknown-tool",
        chat(tools=[tool("a")], tool_choice=pb.ToolChoice(mode=pb.ToolChoice.MODE_TOOL, name="b")),
        "tool_choice.name: 'b' is not one of the request's tools",
    ),
    (
        "tool-choice-required-no-tools",
        chat(tool_choice=pb.ToolChoice(mode=pb.ToolChoice.MODE_REQUIRED)),
        "tool_choice.mode: requires at least one tool",
    ),
    (
        "response-format-no-schema",
        chat(response_format=pb.ResponseFormat(type=pb.ResponseFormat.TYPE_JSON_SCHEMA)),
        "response_format.json_schema: required",
    ),
    (
        "response-format-bad-schema",
        chat(
            response_format=pb.ResponseFormat(
                type=pb.ResponseFormat.TYPE_JSON_SCHEMA, json_schema=struct({"anyOf": []})
            )
        ),
        "response_format.json_schema.anyOf: must be a non-empty list",
    ),
    (
        "response-format-bad-name",
        chat(
            response_format=pb.ResponseFormat(
                type=pb.ResponseFormat.TYPE_JSON_SCHEMA, schema_name="my schema", json_schema=struct({})
            )
        ),
        "response_format.schema_name",
    ),
    (
        "provider-options-bytes",
        chat(provider_options=logit_bias(15)),
        f"provider_options: 321 {OPTIONS_LIMIT}; send only the vendor fields",
    ),
    ("temperature-negative", chat(temperature=-0.1), "temperature: must be between 0 and 2"),
    ("temperature-high", chat(temperature=2.5), "temperature: must be between 0 and 2"),
    ("temperature-nan", chat(temperature=float("nan")), "temperature: must be between 0 and 2, got nan"),
    ("top-p-high", chat(top_p=1.5), "top_p: must be between 0 and 1"),
    ("max-tokens-zero", chat(max_tokens=0), "max_tokens: must be between 1"),
    ("max-tokens-huge", chat(max_tokens=2_000_000), "max_tokens: must be between 1 and 1000000"),
    ("too-many-stops", chat(stop=[str(i) for i in range(17)]), "stop: at most 16"),
    ("empty-stop", chat(stop=[""]), "stop[0]: a stop sequence must not be empty"),
    ("too-many-messages", chat(*[msg(USER, text())] * 6), "messages: at most 5 messages"),
    ("message-too-large", chat(msg(USER, text("x" * 4000))), "messages[0]: "),
    (
        "image-bad-media-type",
        chat(msg(USER, image(data=PNG, media_type="image/bmp"))),
        "messages[0].content[0].image.media_type: 'image/bmp' is not supported",
    ),
    (
        "image-type-mismatch",
        chat(msg(USER, image(data=JPEG, media_type="image/png"))),
        "image.data: declared image/png but the data is image/jpeg",
    ),
    (
        "image-garbage",
        chat(msg(USER, image(data=b"not an image"))),
        "image.data: not a PNG, JPEG, GIF or WebP",
    ),
    ("image-no-source", chat(msg(USER, image(media_type="image/png"))), "image: set data or url"),
    (
        "image-ftp-url",
        chat(msg(USER, image(url="ftp://example.com/a.png"))),
        "must be an http(s) or data: URL",
    ),
    ("image-file-url", chat(msg(USER, image(url="file:///etc/passwd"))), "must be an http(s) or data: URL"),
    (
        "image-data-url-not-base64",
        chat(msg(USER, image(url="data:image/png;base64,@@@"))),
        "not valid base64",
    ),
    (
        "image-data-url-mismatch",
        chat(msg(USER, image(url=data_url("image/gif", PNG)))),
        "image.url: declared image/gif but the data is image/png",
    ),
    (
        "reasoning-budget-negative",
        chat(reasoning=pb.ReasoningOptions(budget_tokens=-1)),
        "reasoning.budget_tokens",
    ),
    ("model-too-long", pb.ChatRequest(model="m" * 5000, messages=[msg(USER, text())]), "model: at most 256"),
    ("fallbacks-many", chat(fallbacks=[f"mock/echo{i}" for i in range(40)]), "fallbacks: at most 16"),
    ("fallback-empty", chat(fallbacks=[""]), "fallbacks[0]: must not be empty"),
    ("fallback-too-long", chat(fallbacks=["f" * 5000]), "fallbacks[0]: at most 256"),
    (
        "model-line-break",
        pb.ChatRequest(model="mock/echo\n2026-12-06 INFO forged", messages=[msg(USER, text())]),
        "model: control and invisible characters are not allowed",
    ),
    ("provider-escape", chat(provider="mock\x1b[2J"), "provider: control and invisible characters"),
    ("fallback-zero-width", chat(fallbacks=["mock/ec\u200bho"]), "fallbacks[0]: control and invisible"),
    ("metadata-many", chat(metadata={f"k{i}": "v" for i in range(200)}), "metadata: at most 64 entries"),
    ("metadata-key-long", chat(metadata={"k" * 1000: "v"}), "(1000 characters)"),
    ("metadata-key-empty", chat(metadata={"": "v"}), "metadata: each key needs 1 to 128"),
    ("metadata-value-long", chat(metadata={"k": "v" * 10000}), "metadata['k']: at most 1024"),
    ("stop-too-long", chat(stop=["s" * 2000]), "stop[0]: at most 1000 characters"),
    ("top-p-negative", chat(top_p=-0.5), "top_p: must be between 0 and 1, got -0.5"),
    ("top-p-nan", chat(top_p=float("nan")), "top_p: must be between 0 and 1, got nan"),
    ("temperature-inf", chat(temperature=float("inf")), "temperature: must be between 0 and 2, got inf"),
    ("max-tokens-negative", chat(max_tokens=-5), "max_tokens: must be between 1 and 1000000, got -5"),
    ("reasoning-effort-unknown", chat(reasoning=pb.ReasoningOptions(effort=9)), "reasoning.effort: unknown"),  # type: ignore[arg-type]
    (
        "reasoning-budget-without-enabled",
        chat(reasoning=pb.ReasoningOptions(budget_tokens=4096)),
        "reasoning.budget_tokens: set reasoning.enabled to use budget_tokens",
    ),
    (
        "reasoning-budget-huge",
        chat(reasoning=pb.ReasoningOptions(enabled=True, budget_tokens=2_000_000_000)),
        "reasoning.budget_tokens: must be between 0 and 1000000",
    ),
    (
        "tool-choice-mode-unknown",
        chat(tools=[tool()], tool_choice=pb.ToolChoice(mode=17)),  # type: ignore[arg-type]
        "tool_choice.mode: unknown mode 17",
    ),
    (
        "tool-choice-tool-without-name",
        chat(tools=[tool()], tool_choice=pb.ToolChoice(mode=pb.ToolChoice.MODE_TOOL)),
        "tool_choice.name: '' is not one of the request's tools",
    ),
    (
        "response-format-type-unknown",
        chat(response_format=pb.ResponseFormat(type=11)),  # type: ignore[arg-type]
        "response_format.type: unknown type 11",
    ),
    (
        "schema-name-too-long",
        chat(
            response_format=pb.ResponseFormat(
                type=pb.ResponseFormat.TYPE_JSON_SCHEMA, schema_name="n" * 200, json_schema=struct({})
            )
        ),
        "response_format.schema_name: must match",
    ),
    ("tool-too-large", chat(tools=[pb.Tool(name="f", description="d" * 100_000)]), "tools[0]: 100007 bytes"),
    (
        "tool-message-text-only",
        chat(msg(USER, text()), msg(ASSISTANT, call()), msg(TOOL, text("42"))),
        "messages[2]: a tool message carries the tool_result",
    ),
    (
        "tool-result-empty-id",
        chat(
            msg(USER, text()), msg(ASSISTANT, call()), msg(TOOL, pb.ContentPart(tool_result=pb.ToolResult()))
        ),
        "tool_result.tool_call_id: no earlier assistant tool call has id ''",
    ),
    (
        "tool-call-id-twice",
        chat(msg(USER, text()), msg(ASSISTANT, call("c1"), call("c1"))),
        "messages[1].content[1].tool_call.id: 'c1' is used by an earlier tool call",
    ),
    (
        "tool-call-id-too-long",
        chat(msg(USER, text()), msg(ASSISTANT, call("i" * 300))),
        "tool_call.id: at most 256 characters",
    ),
    ("image-url-huge", chat(msg(USER, image(url="https://e.com/" + "a" * 100_000))), "max_message_bytes"),
    (
        "image-media-type-not-image",
        chat(msg(USER, image(url="https://e.com/a.png", media_type="text/plain"))),
        "image.media_type: 'text/plain' is not supported",
    ),
    (
        "message-name-too-long",
        chat(pb.Message(role=USER, content=[text()], name="n" * 500)),
        "messages[0].name",
    ),
    (
        "reasoning-from-user",
        chat(msg(USER, pb.ContentPart(reasoning=pb.Reasoning(text="t")))),
        "messages[0].content[0].reasoning: only assistant messages",
    ),
    ("cache-breakpoint-alone", chat(msg(USER, pb.ContentPart(cache_breakpoint=True))), "empty content part"),
    # Counts, not only bytes: 8 MB of one-character parts held a worker's loop for seconds.
    (
        "content-parts-one-message",
        chat(msg(USER, *[text()] * 9)),
        f"messages[0].content: the messages hold more than 8 {PARTS_LIMIT}",
    ),
    (
        "content-parts-in-all",
        chat(msg(USER, *[text()] * 5), msg(ASSISTANT, text()), msg(USER, *[text()] * 3)),
        f"messages[2].content: the messages hold more than 8 {PARTS_LIMIT}",
    ),
    (
        "schema-bytes-one-tool",
        chat(tools=[tool(params={"type": "object", "enum": list(range(30))})]),
        f"tools[0].parameters: {SCHEMA_LIMIT}",
    ),
    (
        "schema-bytes-in-all",
        chat(tools=[tool(f"t{i}", {"type": "object", "description": "d" * 60}) for i in range(3)]),
        f"tools[2].parameters: {SCHEMA_LIMIT}",
    ),
    (
        "schema-bytes-with-response-format",
        chat(
            tools=[tool(params={"type": "object", "description": "d" * 120})],
            response_format=pb.ResponseFormat(
                type=pb.ResponseFormat.TYPE_JSON_SCHEMA, json_schema=struct({"description": "d" * 120})
            ),
        ),
        f"response_format.json_schema: {SCHEMA_LIMIT}",
    ),
    # A field the chosen mode ignores would be dropped without a word.
    (
        "tool-choice-name-without-mode",
        chat(tools=[tool()], tool_choice=pb.ToolChoice(name="lookup")),
        "tool_choice.name: only read with mode MODE_TOOL, and mode is MODE_UNSPECIFIED",
    ),
    (
        "tool-choice-name-with-auto",
        chat(tools=[tool()], tool_choice=pb.ToolChoice(mode=pb.ToolChoice.MODE_AUTO, name="lookup")),
        "tool_choice.name: only read with mode MODE_TOOL, and mode is MODE_AUTO",
    ),
    (
        "json-schema-without-type",
        chat(response_format=pb.ResponseFormat(json_schema=struct({"type": "object"}))),
        "response_format.json_schema: only read with type TYPE_JSON_SCHEMA, and type is TYPE_UNSPECIFIED",
    ),
    (
        "json-schema-with-json-object",
        chat(
            response_format=pb.ResponseFormat(
                type=pb.ResponseFormat.TYPE_JSON_OBJECT, json_schema=struct({"type": "object"})
            )
        ),
        "response_format.json_schema: only read with type TYPE_JSON_SCHEMA, and type is TYPE_JSON_OBJECT",
    ),
    (
        "schema-name-with-text",
        chat(response_format=pb.ResponseFormat(type=pb.ResponseFormat.TYPE_TEXT, schema_name="answer")),
        "response_format.schema_name: only read with type TYPE_JSON_SCHEMA, and type is TYPE_TEXT",
    ),
]

OTHER_CASES: list[tuple[str, str, Any, str]] = [
    ("complete-empty-prompt", "Complete", pb.CompleteRequest(model="mock/echo"), "prompt: must not be empty"),
    ("complete-top-p", "Complete", pb.CompleteRequest(model="mock/echo", prompt="a", top_p=-1), "top_p"),
    (
        "complete-too-large",
        "Complete",
        pb.CompleteRequest(model="mock/echo", prompt="x" * 4000),
        "prompt: exceeds",
    ),
    ("embed-no-inputs", "Embed", pb.EmbedRequest(model="mock/embed"), "inputs: at least one"),
    (
        "embed-empty-input",
        "Embed",
        pb.EmbedRequest(model="mock/embed", inputs=["a", ""]),
        "inputs[1]: must not",
    ),
    ("embed-too-many", "Embed", pb.EmbedRequest(model="mock/embed", inputs=["a"] * 4), "inputs: at most 3"),
    (
        "embed-dimensions",
        "Embed",
        pb.EmbedRequest(model="mock/embed", inputs=["a"], dimensions=-1),
        "dimensions",
    ),
    ("count-nothing", "CountTokens", pb.CountTokensRequest(model="mock/echo"), "text or messages"),
    (
        "count-bad-role",
        "CountTokens",
        pb.CountTokensRequest(model="mock/echo", messages=[msg(9, text())]),
        "messages[0].role",
    ),
    ("complete-no-model", "Complete", pb.CompleteRequest(prompt="a"), "model is required"),
    ("complete-temperature", "Complete", complete(temperature=3), "temperature: must be between 0 and 2"),
    ("complete-max-tokens-zero", "Complete", complete(max_tokens=0), "max_tokens: must be between 1"),
    ("complete-stops-many", "Complete", complete(stop=["s"] * 17), "stop: at most 16"),
    ("complete-stop-empty", "Complete", complete(stop=[""]), "stop[0]: a stop sequence must not be empty"),
    ("complete-fallbacks-many", "Complete", complete(fallbacks=["mock/echo"] * 40), "fallbacks: at most 16"),
    ("complete-metadata-many", "Complete", complete(metadata={f"k{i}": "v" for i in range(200)}), "metadata"),
    (
        "complete-model-too-long",
        "Complete",
        pb.CompleteRequest(model="m" * 5000, prompt="a"),
        "model: at most",
    ),
    ("complete-provider-too-long", "Complete", complete(provider="p" * 5000), "provider: at most 256"),
    (
        "complete-stream-empty-prompt",
        "CompleteStream",
        pb.CompleteRequest(model="mock/echo"),
        "prompt: must not",
    ),
    ("complete-stream-top-p", "CompleteStream", complete(top_p=2), "top_p: must be between 0 and 1"),
    ("complete-stream-too-large", "CompleteStream", complete(prompt="x" * 4000), "prompt: exceeds"),
    ("chat-stream-model-too-long", "ChatStream", pb.ChatRequest(model="m" * 5000), "model: at most 256"),
    (
        "list-models-provider-too-long",
        "ListModels",
        pb.ListModelsRequest(provider="p" * 5000),
        "provider: at most",
    ),
    ("count-no-model", "CountTokens", pb.CountTokensRequest(text="a"), "model is required"),
    ("count-text-too-large", "CountTokens", count(text="x" * 10_000), "text: exceeds the 2048-byte limit"),
    ("count-bad-tool", "CountTokens", count(text="a", tools=[tool("a b")]), "tools[0].name: must match"),
    (
        "count-empty-message",
        "CountTokens",
        count(messages=[msg(USER)]),
        "messages[0].content: a message needs",
    ),
    (
        "count-model-too-long",
        "CountTokens",
        pb.CountTokensRequest(model="m" * 5000, text="a"),
        "model: at most",
    ),
    (
        "count-too-many-tools",
        "CountTokens",
        count(text="a", tools=[tool(f"t{i}") for i in range(5)]),
        "tools",
    ),
    ("embed-no-model", "Embed", pb.EmbedRequest(inputs=["a"]), "model is required"),
    (
        "embed-dimensions-huge",
        "Embed",
        pb.EmbedRequest(model="mock/embed", inputs=["a"], dimensions=2147483647),
        "dimensions: must be between 0 (the model's default) and 8192",
    ),
    (
        "embed-input-too-large",
        "Embed",
        pb.EmbedRequest(model="mock/embed", inputs=["x" * 10_000]),
        "inputs[0]",
    ),
    (
        "embed-model-without-embeddings",
        "Embed",
        pb.EmbedRequest(model="mock/echo", inputs=["a"]),
        "model 'echo' does not offer embeddings",
    ),
    ("embed-model-too-long", "Embed", pb.EmbedRequest(model="m" * 5000, inputs=["a"]), "model: at most 256"),
    (
        "complete-provider-options-bytes",
        "Complete",
        complete(provider_options=logit_bias(15)),
        f"provider_options: 321 {OPTIONS_LIMIT}",
    ),
    (
        "complete-stream-provider-options-bytes",
        "CompleteStream",
        complete(provider_options=logit_bias(15)),
        f"provider_options: 321 {OPTIONS_LIMIT}",
    ),
    (
        "count-content-parts",
        "CountTokens",
        count(messages=[msg(USER, *[text()] * 9)]),
        f"messages[0].content: the messages hold more than 8 {PARTS_LIMIT}",
    ),
    (
        "count-schema-bytes",
        "CountTokens",
        count(text="a", tools=[tool(params={"type": "object", "enum": list(range(30))})]),
        f"tools[0].parameters: {SCHEMA_LIMIT}",
    ),
]


@pytest.fixture(scope="module")
async def limited() -> AsyncIterator[RunningGateway]:
    async with run_gateway(LIMITS) as running:
        yield running


def assert_invalid(error: grpc.aio.AioRpcError, needle: str) -> None:
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert needle in (error.details() or ""), error.details()


@pytest.mark.parametrize(("request_", "needle"), [c[1:] for c in CHAT_CASES], ids=[c[0] for c in CHAT_CASES])
async def test_bad_chat_request(limited: RunningGateway, request_: pb.ChatRequest, needle: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as unary:
        await limited.stub.Chat(request_, timeout=10)
    assert_invalid(unary.value, needle)
    with pytest.raises(grpc.aio.AioRpcError) as stream:
        async for _ in limited.stub.ChatStream(request_, timeout=10):
            pass
    assert_invalid(stream.value, needle)


@pytest.mark.parametrize(
    ("method", "request_", "needle"), [c[1:] for c in OTHER_CASES], ids=[c[0] for c in OTHER_CASES]
)
async def test_bad_other_request(limited: RunningGateway, method: str, request_: Any, needle: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await drain(getattr(limited.stub, method)(request_, timeout=10), method)
    assert_invalid(info.value, needle)


async def drain(answer: Any, method: str) -> None:
    if method.endswith("Stream"):
        async for _ in answer:
            pass
    else:
        await answer


def test_the_table_is_large_enough() -> None:
    """At least 100 kinds of bad request, over every RPC that takes fields (ListProviders takes
    none; chat cases run as Chat and ChatStream both)."""
    assert len(CHAT_CASES) + len(OTHER_CASES) >= 100
    methods = {"Chat", "ChatStream"} | {c[1] for c in OTHER_CASES}
    assert methods == {
        "Chat",
        "ChatStream",
        "Complete",
        "CompleteStream",
        "ListModels",
        "CountTokens",
        "Embed",
    }
    assert len({c[0] for c in CHAT_CASES} | {c[0] for c in OTHER_CASES}) == len(CHAT_CASES) + len(OTHER_CASES)


async def test_a_rich_valid_request_passes(limited: RunningGateway) -> None:
    """The checks must not reject what is fine: images, tools, a tool round trip, a schema."""
    request = chat(
        msg(
            USER,
            text("look"),
            image(data=PNG, media_type="image/png"),
            image(url="https://example.com/a.jpg"),
        ),
        msg(ASSISTANT, call("c1", "lookup", '{"q": 1}')),
        msg(TOOL, result("c1")),
        tools=[tool("lookup", {"type": "object", "properties": {"q": {"type": ["integer", "null"]}}})],
        tool_choice=pb.ToolChoice(mode=pb.ToolChoice.MODE_TOOL, name="lookup"),
        response_format=pb.ResponseFormat(
            type=pb.ResponseFormat.TYPE_JSON_SCHEMA,
            schema_name="answer",
            json_schema=struct({"type": "object"}),
        ),
        temperature=0.0,
        top_p=1.0,
        max_tokens=5,
    )
    response = await limited.stub.Chat(request, timeout=10)
    assert response.finish.provider == "mock"


async def test_requests_at_the_count_and_schema_limits_pass(limited: RunningGateway) -> None:
    """Exactly `max_content_parts` parts, and schemas of nearly `max_schema_bytes`, are served."""
    schema = {"type": "object", "description": "d" * 90}
    request = chat(
        msg(USER, *[text()] * 5),
        msg(ASSISTANT, text()),
        msg(USER, *[text()] * 2),
        tools=[tool(params=schema)],
        response_format=pb.ResponseFormat(
            type=pb.ResponseFormat.TYPE_JSON_SCHEMA, json_schema=struct(schema)
        ),
    )
    assert request.tools[0].parameters.ByteSize() * 2 == 254  # the two schemas: 2 bytes under the limit
    response = await limited.stub.Chat(request, timeout=10)
    assert response.finish.provider == "mock"


async def test_provider_options_at_the_byte_limit_pass(limited: RunningGateway) -> None:
    """Options of exactly `max_provider_options_bytes` are served, by Chat and Complete."""
    options = struct({"logit_bias": {str(10000 + i): -100 for i in range(10)}, "user": "u" * 23})
    assert options.ByteSize() == 256
    assert (await limited.stub.Chat(chat(provider_options=options), timeout=10)).finish.provider == "mock"
    answer = await limited.stub.Complete(complete(provider_options=options), timeout=10)
    assert answer.finish.provider == "mock"
