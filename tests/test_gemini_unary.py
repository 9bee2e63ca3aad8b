"""Unary Chat and Complete on Gemini (AI Studio) are one `generateContent` call (issue 15.2), read by
the stream's decoder. The fake serves the documented unary GenerateContentResponse."""

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

from provider_gateway.fakes.gemini import FakeGemini
from provider_gateway.v1 import provider_service_pb2 as pb

KEY_ENV = "PG_TEST_GEMINI_UNARY_KEY"


@pytest.fixture
async def setup(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[FakeGemini, Any]]:
    async with FakeGemini() as fake:
        monkeypatch.setenv(KEY_ENV, fake.api_key)
        config = (
            f'[providers.gemini]\nkind = "gemini"\nbase_url = "{fake.base_url}"\napi_key_env = "{KEY_ENV}"\n'
            + ADAPTER_ROUTING
        )
        async with run_gateway(config) as gateway:
            yield fake, gateway.stub
        assert fake.problems == []


def scenario_request(provider: str, scenario: str) -> pb.ChatRequest:
    if scenario == "reasoning":
        return chat_request(f"{provider}/reasoning", reasoning=pb.ReasoningOptions(enabled=True))
    return chat_request(f"{provider}/{scenario}", tools=[weather_tool()] if scenario == "tools" else [])


@pytest.mark.parametrize("scenario", ["text", "tools", "reasoning"])
async def test_chat_is_one_generate_content_call_that_answers_what_the_stream_does(
    setup: Any, scenario: str
) -> None:
    fake, stub = setup
    summary = await chat(stub, scenario_request("gemini", scenario))
    answer = await stub.Chat(scenario_request("gemini", scenario), timeout=20)
    assert_unary_matches_stream(answer, summary)
    streamed, unary = fake.calls
    assert streamed.path == f"/v1beta/models/{scenario}:streamGenerateContent"
    assert (unary.path, unary.query) == (f"/v1beta/models/{scenario}:generateContent", {})
    assert unary.body == streamed.body


async def test_complete_is_one_generate_content_call(setup: Any) -> None:
    fake, stub = setup
    request = pb.CompleteRequest(model="gemini/text", prompt="Say hi", max_tokens=9)
    events = [e async for e in stub.CompleteStream(request, timeout=20)]
    answer = await stub.Complete(request, timeout=20)
    assert answer.text == "".join(e.text_delta.text for e in events if e.HasField("text_delta"))
    assert answer.usage == [e for e in events if e.HasField("usage")][-1].usage
    assert fake.calls[-1].path == "/v1beta/models/text:generateContent"
    assert fake.calls[-1].body["generationConfig"] == {"maxOutputTokens": 9}


@pytest.mark.parametrize(
    ("model", "code"),
    [
        ("error-400", grpc.StatusCode.INVALID_ARGUMENT),
        ("error-403", grpc.StatusCode.PERMISSION_DENIED),
        ("error-429", grpc.StatusCode.RESOURCE_EXHAUSTED),
        ("error-503", grpc.StatusCode.UNAVAILABLE),
        ("midstream-error", grpc.StatusCode.UNAVAILABLE),  # 503 "The model is overloaded."
        ("malformed", grpc.StatusCode.UNAVAILABLE),
        ("cut", grpc.StatusCode.UNAVAILABLE),
    ],
)
async def test_unary_errors_map_as_the_stream_maps_them(
    setup: Any, model: str, code: grpc.StatusCode
) -> None:
    _, stub = setup
    error = await unary_error(stub, chat_request(f"gemini/{model}"))
    assert error.code() == code
    if model == "error-429":
        assert retry_after_ms(error) == 7000  # RetryInfo, as in streams


async def test_a_bad_key_is_unauthenticated_in_unary_calls_too(monkeypatch: pytest.MonkeyPatch) -> None:
    async with FakeGemini() as fake:
        monkeypatch.setenv(KEY_ENV, "wrong")
        config = (
            f'[providers.gemini]\nkind = "gemini"\nbase_url = "{fake.base_url}"\napi_key_env = "{KEY_ENV}"\n'
        )
        async with run_gateway(config) as gateway:
            error = await unary_error(gateway.stub, chat_request("gemini/text"))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "API_KEY_INVALID" in (error.details() or "")
