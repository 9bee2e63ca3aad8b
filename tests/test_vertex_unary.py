"""Unary Chat on Vertex is one call (issue 15.2): `generateContent` for Gemini, `rawPredict` for
Claude, each read by its stream's decoder."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic
import grpc
import pytest
from conftest import ADAPTER_ROUTING, run_gateway
from vendor_cases import assert_unary_matches_stream, chat, chat_request, unary_error, weather_tool

from provider_gateway.fakes.anthropic import message_body
from provider_gateway.fakes.vertex import FakeVertex
from provider_gateway.v1 import provider_service_pb2 as pb

TOKEN_ENV = "PG_TEST_VERTEX_UNARY_TOKEN"
PROJECT_PATH = "/v1/projects/demo-project/locations/europe-west4/publishers"


@pytest.fixture
async def setup(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[FakeVertex, Any]]:
    async with FakeVertex() as fake:
        monkeypatch.setenv(TOKEN_ENV, fake.vertex_token)
        config = f"""
[providers.vertex]
kind = "vertex"
project = "demo-project"
location = "europe-west4"
base_url = "{fake.base_url}"
access_token_env = "{TOKEN_ENV}"
{ADAPTER_ROUTING}"""
        async with run_gateway(config) as gateway:
            yield fake, gateway.stub
        assert fake.problems == []


def scenario_request(model: str) -> pb.ChatRequest:
    if model.endswith("reasoning"):
        return chat_request(
            f"vertex/{model}", reasoning=pb.ReasoningOptions(enabled=True, budget_tokens=2048)
        )
    return chat_request(f"vertex/{model}", tools=[weather_tool()] if model.endswith("tools") else [])


@pytest.mark.parametrize(
    ("model", "publisher", "stream_action", "unary_action"),
    [
        ("text", "google", "streamGenerateContent", "generateContent"),
        ("tools", "google", "streamGenerateContent", "generateContent"),
        ("reasoning", "google", "streamGenerateContent", "generateContent"),
        ("claude-text", "anthropic", "streamRawPredict", "rawPredict"),
        ("claude-tools", "anthropic", "streamRawPredict", "rawPredict"),
        ("claude-reasoning", "anthropic", "streamRawPredict", "rawPredict"),
    ],
)
async def test_chat_is_one_unary_call_that_answers_what_the_stream_does(
    setup: Any, model: str, publisher: str, stream_action: str, unary_action: str
) -> None:
    fake, stub = setup
    summary = await chat(stub, scenario_request(model))
    answer = await stub.Chat(scenario_request(model), timeout=20)
    assert_unary_matches_stream(answer, summary)
    streamed, unary = fake.calls
    assert streamed.path == f"{PROJECT_PATH}/{publisher}/models/{model}:{stream_action}"
    assert (unary.path, unary.query) == (f"{PROJECT_PATH}/{publisher}/models/{model}:{unary_action}", {})
    assert unary.headers["authorization"] == f"Bearer {fake.vertex_token}"
    if publisher == "anthropic":
        assert streamed.body.pop("stream") is True
        assert unary.body["anthropic_version"] == "vertex-2023-10-16"
    assert unary.body == streamed.body


async def test_claude_on_vertex_unary_reads_as_the_sdk_reads_the_message(setup: Any) -> None:
    _, stub = setup
    answer = await stub.Chat(scenario_request("claude-tools"), timeout=20)
    message = anthropic.types.Message.model_validate(message_body("tools", "claude-tools"))
    assert answer.text == "".join(b.text for b in message.content if b.type == "text")
    (block,) = [b for b in message.content if b.type == "tool_use"]
    assert [(c.id, c.name) for c in answer.tool_calls] == [(block.id, block.name)]
    assert (answer.finish.raw_finish_reason, answer.finish.response_id) == (message.stop_reason, message.id)


@pytest.mark.parametrize("model", ["error-429", "claude-error-429", "malformed", "claude-malformed"])
async def test_unary_errors_map_as_the_stream_maps_them(setup: Any, model: str) -> None:
    _, stub = setup
    error = await unary_error(stub, chat_request(f"vertex/{model}"))
    expected = grpc.StatusCode.RESOURCE_EXHAUSTED if "error-429" in model else grpc.StatusCode.UNAVAILABLE
    assert error.code() == expected
