"""A JSON-schema request sends each provider kind's own schema field, through the real gRPC API, and
what a provider cannot honour is refused (FAILED_PRECONDITION), never silently dropped (issue 17.2)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import grpc
import orjson
import pytest
from conftest import RunningGateway, run_gateway, use_fake_aws_credentials
from google.protobuf import struct_pb2
from vendor_cases import chat_error, chat_request

from provider_gateway.fakes import FakeUpstream, Reply
from provider_gateway.fakes.anthropic import FakeAnthropic
from provider_gateway.fakes.bedrock import FakeBedrock
from provider_gateway.fakes.cohere import FakeCohere
from provider_gateway.fakes.gemini import FakeGemini
from provider_gateway.v1 import provider_service_pb2 as pb

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
CLOSED = {**SCHEMA, "additionalProperties": False}
ANSWER = '{"city": "Paris"}'


def schema_format(kind: int = pb.ResponseFormat.TYPE_JSON_SCHEMA) -> pb.ResponseFormat:
    struct = struct_pb2.Struct()
    struct.update(SCHEMA)
    if kind != pb.ResponseFormat.TYPE_JSON_SCHEMA:
        return pb.ResponseFormat(type=kind)  # type: ignore[arg-type]
    return pb.ResponseFormat(type=kind, schema_name="weather", json_schema=struct, strict=True)  # type: ignore[arg-type]


def openai_sse(text: str) -> bytes:
    chunks = [
        {"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"content": piece}}]}
        for piece in (text[:5], text[5:])
    ]
    chunks.append({"id": "c", "model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


class Upstreams:
    def __init__(self, stack: AsyncExitStack) -> None:
        self.stack = stack

    async def open(self) -> None:
        enter = self.stack.enter_async_context
        self.openai, self.mistral, self.ollama = [await enter(FakeUpstream()) for _ in range(3)]
        for fake, path in ((self.openai, "/v1/chat/completions"), (self.mistral, "/v1/chat/completions")):
            for _ in range(4):
                fake.script(path, Reply(chunks=[openai_sse(ANSWER)], content_type="text/event-stream"))
        line = {
            "model": "m",
            "message": {"role": "assistant", "content": ANSWER},
            "done": True,
            "done_reason": "stop",
        }
        self.ollama.script(
            "/api/chat", Reply(chunks=[orjson.dumps(line) + b"\n"], content_type="application/x-ndjson")
        )
        self.anthropic = await enter(FakeAnthropic())
        self.gemini = await enter(FakeGemini())
        self.cohere = await enter(FakeCohere())
        self.bedrock = await enter(FakeBedrock())

    def config(self) -> str:
        return f"""
[providers.openai]
base_url = "{self.openai.url}/v1"
api_key_env = "PG_X_KEY"
[providers.mistral]
kind = "mistral"
base_url = "{self.mistral.url}/v1"
api_key_env = "PG_X_KEY"
[providers.ollama]
kind = "ollama"
base_url = "{self.ollama.url}"
[providers.anthropic]
base_url = "{self.anthropic.base_url}"
api_key_env = "PG_X_ANTHROPIC"
[providers.gemini]
base_url = "{self.gemini.base_url}"
api_key_env = "PG_X_GEMINI"
[providers.cohere]
base_url = "{self.cohere.base_url}"
api_key_env = "PG_X_COHERE"
[providers.bedrock]
kind = "bedrock"
region = "us-west-2"
endpoint_url = "{self.bedrock.url}"
"""


@pytest.fixture(scope="module")
async def setup() -> AsyncIterator[tuple[RunningGateway, Upstreams]]:
    async with AsyncExitStack() as stack:
        upstreams = Upstreams(stack)
        await upstreams.open()
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("PG_X_KEY", "k")
            patch.setenv("PG_X_ANTHROPIC", upstreams.anthropic.api_key)
            patch.setenv("PG_X_GEMINI", upstreams.gemini.api_key)
            patch.setenv("PG_X_COHERE", upstreams.cohere.api_key)
            use_fake_aws_credentials(patch)
            gateway = await stack.enter_async_context(run_gateway(upstreams.config()))
            yield gateway, upstreams


async def text_of(gateway: RunningGateway, model: str) -> str:
    request = chat_request(model, response_format=schema_format())
    events = [e async for e in gateway.stub.ChatStream(request, timeout=20)]
    return "".join(e.text_delta.text for e in events)


async def test_openai_family_sends_response_format_and_streams_the_json(setup: Any) -> None:
    gateway, up = setup
    for provider, fake in (("openai", up.openai), ("mistral", up.mistral)):
        text = await text_of(gateway, f"{provider}/m")
        assert json.loads(text) == {"city": "Paris"}  # the schema's JSON, as the client reads it
        sent = fake.last("/v1/chat/completions").json()
        assert sent["response_format"] == {
            "type": "json_schema",
            "json_schema": {"name": "weather", "schema": SCHEMA, "strict": True},
        }, provider


async def test_ollama_sets_format_to_the_schema(setup: Any) -> None:
    gateway, up = setup
    assert json.loads(await text_of(gateway, "ollama/llama3.2")) == {"city": "Paris"}
    assert up.ollama.last("/api/chat").json()["format"] == SCHEMA


async def test_anthropic_sends_output_config_with_closed_objects(setup: Any) -> None:
    gateway, up = setup
    await text_of(gateway, "anthropic/claude-sonnet-4-5")
    body = up.anthropic.calls[-1].body
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": CLOSED}}
    assert up.anthropic.problems == []


async def test_gemini_sends_response_json_schema(setup: Any) -> None:
    gateway, up = setup
    await text_of(gateway, "gemini/gemini-2.5-flash")
    config = up.gemini.calls[-1].body["generationConfig"]
    assert (config["responseMimeType"], config["responseJsonSchema"]) == ("application/json", SCHEMA)
    assert "responseSchema" not in config  # that one takes an OpenAPI subset, not JSON Schema


async def test_cohere_sends_json_object_with_the_schema(setup: Any) -> None:
    gateway, up = setup
    await text_of(gateway, "cohere/command-a-03-2025")
    assert up.cohere.calls[-1].body["response_format"] == {"type": "json_object", "json_schema": SCHEMA}


async def test_bedrock_sends_converse_output_config(setup: Any) -> None:
    gateway, up = setup
    await text_of(gateway, "bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0")
    sent = up.bedrock.last("converse-stream").body
    structure = sent["outputConfig"]["textFormat"]["structure"]["jsonSchema"]
    assert sent["outputConfig"]["textFormat"]["type"] == "json_schema"
    assert (json.loads(structure["schema"]), structure["name"]) == (CLOSED, "weather")


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
