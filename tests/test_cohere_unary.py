"""Unary Chat and Complete on Cohere are one v2 `/v2/chat` call with `stream: false` (issue 15.2),
read by the stream's decoder. The fake serves the documented unary answer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from conftest import ADAPTER_ROUTING, run_gateway
from vendor_cases import (
    assert_unary_matches_stream,
    chat,
    chat_request,
    retry_after_ms,
    unary_error,
    weather_tool,
)

from provider_gateway.fakes.cohere import FakeCohere
from provider_gateway.v1 import provider_service_pb2 as pb

KEY_ENV = "PG_TEST_COHERE_UNARY_KEY"


@pytest.fixture
async def setup(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[FakeCohere, Any]]:
    async with FakeCohere() as fake:
        monkeypatch.setenv(KEY_ENV, fake.api_key)
        config = (
            f'[providers.cohere]\nkind = "cohere"\nbase_url = "{fake.base_url}"\napi_key_env = "{KEY_ENV}"\n'
            + ADAPTER_ROUTING
        )
        async with run_gateway(config) as gateway:
            yield fake, gateway.stub
        assert fake.problems == []


def scenario_request(scenario: str) -> pb.ChatRequest:
    if scenario == "reasoning":
        return chat_request("cohere/reasoning", reasoning=pb.ReasoningOptions(enabled=True))
    return chat_request(f"cohere/{scenario}", tools=[weather_tool()] if scenario == "tools" else [])


@pytest.mark.parametrize("scenario", ["text", "tools", "reasoning"])
async def test_chat_is_one_unary_call_that_answers_what_the_stream_does(setup: Any, scenario: str) -> None:
    fake, stub = setup
    summary = await chat(stub, scenario_request(scenario))
    answer = await stub.Chat(scenario_request(scenario), timeout=20)
    assert_unary_matches_stream(answer, summary)
    assert answer.finish.model == scenario  # Cohere names no model: the one asked for
    streamed, unary = fake.calls
    assert (streamed.path, unary.path) == ("/v2/chat", "/v2/chat")
    assert (streamed.body.pop("stream"), unary.body.pop("stream")) == (True, False)
    assert unary.body == streamed.body


async def test_complete_is_one_unary_call(setup: Any) -> None:
    fake, stub = setup
    request = pb.CompleteRequest(model="cohere/text", prompt="Say hi")
    events = [e async for e in stub.CompleteStream(request, timeout=20)]
    answer = await stub.Complete(request, timeout=20)
    assert answer.text == "".join(e.text_delta.text for e in events if e.HasField("text_delta"))
    assert answer.usage == [e for e in events if e.HasField("usage")][-1].usage
    assert fake.calls[-1].body["stream"] is False
    assert fake.calls[-1].body["messages"] == [{"role": "user", "content": "Say hi"}]


@pytest.mark.parametrize(
    ("model", "code"),
    [
        ("error-401", grpc.StatusCode.UNAUTHENTICATED),
        ("error-498", grpc.StatusCode.UNAUTHENTICATED),
        ("error-429", grpc.StatusCode.RESOURCE_EXHAUSTED),
        ("error-500", grpc.StatusCode.UNAVAILABLE),
        ("midstream-error", grpc.StatusCode.UNAVAILABLE),  # a 200 answer with finish_reason ERROR
        ("malformed", grpc.StatusCode.UNAVAILABLE),
        ("cut", grpc.StatusCode.UNAVAILABLE),
    ],
)
async def test_unary_errors_map_as_the_stream_maps_them(
    setup: Any, model: str, code: grpc.StatusCode
) -> None:
    _, stub = setup
    error = await unary_error(stub, chat_request(f"cohere/{model}"))
    assert error.code() == code
    if model == "error-429":
        assert retry_after_ms(error) == 2000
    if model == "midstream-error":
        assert "cohere generation error: ERROR" in (error.details() or "")
