"""A JSON-schema request sends each provider kind's own schema field, and its stream comes back as
the schema's JSON text, through the real gRPC API on every kind's fake (issue 17.2); what a
provider cannot honour is refused (FAILED_PRECONDITION), never silently dropped.

The vendor fakes (Anthropic, Gemini, Vertex, Cohere) answer a structured request with an instance
of the schema they were sent; the OpenAI family, Mistral and Ollama fakes here do the same in their
wire formats; Bedrock is scripted with the answer. The mock kind answers its script and is left out.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from conftest import RunningGateway, run_gateway
from every_kind import OPENAI_HOSTS, EveryKind
from google.protobuf import struct_pb2
from vendor_cases import chat_error, chat_request

from provider_gateway.fakes import FakeUpstream, Reply
from provider_gateway.fakes import chat_completions as cc
from provider_gateway.fakes.bedrock import Reply as BedrockReply
from provider_gateway.fakes.bedrock import converse_text_frames
from provider_gateway.fakes.openai_responses import Script
from provider_gateway.fakes.server import RecordedRequest
from provider_gateway.fakes.structured import instance_of
from provider_gateway.v1 import provider_service_pb2 as pb

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
CLOSED = {**SCHEMA, "additionalProperties": False}  # what Claude's structured outputs require
ANSWER = {"city": "Paris"}  # the fakes' instance of SCHEMA
CHAT_COMPLETIONS_FIELD = {
    "type": "json_schema",
    "json_schema": {"name": "weather", "schema": SCHEMA, "strict": True},
}


def schema_format(kind: int = pb.ResponseFormat.TYPE_JSON_SCHEMA, strict: bool = True) -> pb.ResponseFormat:
    struct = struct_pb2.Struct()
    struct.update(SCHEMA)
    if kind != pb.ResponseFormat.TYPE_JSON_SCHEMA:
        return pb.ResponseFormat(type=kind)  # type: ignore[arg-type]
    return pb.ResponseFormat(type=kind, schema_name="weather", json_schema=struct, strict=strict)  # type: ignore[arg-type]


def structured_reply(request: RecordedRequest) -> Reply:
    """Chat Completions (every OpenAI-family host and Mistral), the Responses API and Ollama's chat,
    answering with an instance of the schema each request carries in its own field."""
    body = request.json()
    if request.path.endswith("/responses"):
        text = json.dumps(instance_of(body["text"]["format"]["schema"]))
        return Script(model=body["model"], text=(text[:5], text[5:])).stream_reply()
    if request.path == "/api/chat":
        text = json.dumps(instance_of(body["format"]))
        lines = [
            {"model": body["model"], "message": {"role": "assistant", "content": p}, "done": False}
            for p in (text[:5], text[5:])
        ]
        end = {
            "model": body["model"],
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "stop",
        }
        return Reply.ndjson([*lines, end])
    text = json.dumps(instance_of(body["response_format"]["json_schema"]["schema"]))
    chunks = [cc.chunk(body["model"], {"content": piece}) for piece in (text[:5], text[5:])]
    return Reply.sse([*chunks, cc.chunk(body["model"], {}, "stop")])


@dataclass(frozen=True)
class Case:
    model: str
    sent: Callable[[EveryKind], Any]  # the upstream body's schema field
    expected: Any  # ...as the vendor documents it
    emulated: tuple[str, ...] = ()


def last_post(up: EveryKind) -> Any:
    return up.last_body("openai")


CASES = {
    **{
        host: Case(f"{host}/m", lambda up: last_post(up)["response_format"], CHAT_COMPLETIONS_FIELD)
        for host in OPENAI_HOSTS
    },
    "openai-responses": Case(
        "openai-responses/gpt-4.1",
        lambda up: last_post(up)["text"]["format"],
        {"type": "json_schema", "name": "weather", "schema": SCHEMA, "strict": True},
    ),
    "mistral": Case(
        "mistral/mistral-large-latest", lambda up: last_post(up)["response_format"], CHAT_COMPLETIONS_FIELD
    ),
    "ollama": Case("ollama/llama3.2", lambda up: last_post(up)["format"], SCHEMA),
    "anthropic": Case(
        "anthropic/claude-sonnet-4-5",
        lambda up: up.anthropic.calls[-1].body["output_config"],
        {"format": {"type": "json_schema", "schema": CLOSED}},
    ),
    "anthropic-forced-tool": Case(
        "anthropic/claude-3-5-haiku-20241022",
        lambda up: (
            up.anthropic.calls[-1].body["tool_choice"],
            up.anthropic.calls[-1].body["tools"][0]["input_schema"],
        ),
        ({"type": "tool", "name": "weather", "disable_parallel_tool_use": True}, SCHEMA),
        emulated=("response_format",),
    ),
    "gemini": Case(
        "gemini/gemini-2.5-flash",
        lambda up: {
            k: up.gemini.calls[-1].body["generationConfig"].get(k)
            for k in ("responseMimeType", "responseJsonSchema", "responseSchema")
        },
        {"responseMimeType": "application/json", "responseJsonSchema": SCHEMA, "responseSchema": None},
    ),
    "vertex-gemini": Case(
        "vertex/gemini-2.5-flash",
        lambda up: up.vertex.calls[-1].body["generationConfig"]["responseJsonSchema"],
        SCHEMA,
    ),
    "vertex-claude": Case(
        "vertex/claude-sonnet-4-5@20250929",
        lambda up: up.vertex.calls[-1].body["output_config"],
        {"format": {"type": "json_schema", "schema": CLOSED}},
    ),
    "vertex-claude-forced-tool": Case(
        "vertex/claude-3-5-haiku@20241022",
        lambda up: up.vertex.calls[-1].body["tool_choice"],
        {"type": "tool", "name": "weather", "disable_parallel_tool_use": True},
        emulated=("response_format",),
    ),
    "cohere": Case(
        "cohere/command-a-03-2025",
        lambda up: up.cohere.calls[-1].body["response_format"],
        {"type": "json_object", "json_schema": SCHEMA},
    ),
    "bedrock": Case(
        "bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0",
        lambda up: bedrock_format(up.bedrock.last("converse-stream").body),
        ("json_schema", CLOSED, "weather"),
    ),
}


def bedrock_format(body: dict[str, Any]) -> tuple[str, Any, str]:
    text_format = body["outputConfig"]["textFormat"]
    structure = text_format["structure"]["jsonSchema"]
    return text_format["type"], json.loads(structure["schema"]), structure["name"]


@pytest.fixture(scope="module")
async def setup() -> AsyncIterator[tuple[RunningGateway, EveryKind]]:
    async with AsyncExitStack() as stack:
        openai = FakeUpstream()
        openai.on("POST", "*", structured_reply)
        upstreams = EveryKind(openai, openai, openai)
        with pytest.MonkeyPatch.context() as patch:
            await upstreams.open(stack, patch)
            gateway = await stack.enter_async_context(run_gateway(upstreams.config()))
            yield gateway, upstreams
        assert upstreams.problems() == []


@pytest.mark.parametrize("name", list(CASES))
async def test_each_kind_sends_its_own_schema_field_and_streams_the_json(setup: Any, name: str) -> None:
    gateway, up = setup
    case = CASES[name]
    if name == "bedrock":  # the Converse answer, scripted: the fake's default is plain text
        text = json.dumps(ANSWER)
        up.bedrock.push(BedrockReply(frames=converse_text_frames([text[:5], text[5:]])))
    # An emulation cannot be strict (refused: tests/test_forced_output.py), so it is asked without.
    request = chat_request(case.model, response_format=schema_format(strict=not case.emulated))
    events = [e async for e in gateway.stub.ChatStream(request, timeout=20)]
    assert json.loads("".join(e.text_delta.text for e in events)) == ANSWER  # the client's text is the JSON
    assert not any(e.HasField("tool_call_start") for e in events)
    finish = events[-1].finish
    assert (finish.reason, tuple(finish.emulated)) == (pb.FINISH_REASON_STOP, case.emulated)
    assert case.sent(up) == case.expected


@pytest.mark.parametrize(
    ("model", "kind", "needle"),
    [
        ("anthropic/claude-sonnet-4-5", pb.ResponseFormat.TYPE_JSON_OBJECT, "no JSON mode without a schema"),
        (
            "bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0",
            pb.ResponseFormat.TYPE_JSON_OBJECT,
            "no JSON mode",
        ),
    ],
)
async def test_what_a_provider_cannot_honour_is_refused(
    setup: Any, model: str, kind: int, needle: str
) -> None:
    gateway, up = setup
    before = (len(up.anthropic.calls), len(up.bedrock.seen))
    error, _ = await chat_error(gateway.stub, chat_request(model, response_format=schema_format(kind)))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    details = error.details() or ""
    assert "response_format" in details
    assert needle in details
    assert model.split("/", 1)[1] in details  # names the model
    assert (len(up.anthropic.calls), len(up.bedrock.seen)) == before  # nothing was sent
