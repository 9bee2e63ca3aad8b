"""The Gemini (AI Studio) adapter through the real gRPC API against the fake Gemini API."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from conftest import run_gateway
from made_up_ids_support import untagged
from vendor_cases import (
    PNG,
    assert_canonical,
    cancel_mid_stream,
    chat,
    chat_error,
    chat_request,
    image_request,
    retry_after_ms,
    user,
    weather_tool,
)

from provider_gateway.fakes import conversation as conv
from provider_gateway.fakes.gemini import FakeGemini
from provider_gateway.v1 import provider_service_pb2 as pb

KEY_ENV = "PG_TEST_GEMINI_KEY"


def config(base_url: str) -> str:
    return f'[providers.gemini]\nkind = "gemini"\nbase_url = "{base_url}"\napi_key_env = "{KEY_ENV}"\n'


@pytest.fixture
async def setup(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[FakeGemini, Any]]:
    async with FakeGemini() as fake:
        monkeypatch.setenv(KEY_ENV, fake.api_key)
        async with run_gateway(config(fake.base_url)) as gateway:
            yield fake, gateway.stub
        assert fake.problems == []


async def test_text_stream_request_shape(setup: Any) -> None:
    fake, stub = setup
    summary = await chat(stub, chat_request("gemini/text", max_tokens=256, temperature=0.5))
    assert_canonical(summary, tools=False)
    assert summary.finish.raw_finish_reason == "STOP"
    (request,) = fake.calls
    assert request.path == "/v1beta/models/text:streamGenerateContent"
    assert request.query == {"alt": "sse"}
    assert request.headers["x-goog-api-key"] == fake.api_key
    assert request.body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert request.body["contents"] == [{"role": "user", "parts": [{"text": "Weather in Paris?"}]}]
    assert request.body["generationConfig"] == {"maxOutputTokens": 256, "temperature": 0.5}


async def test_tool_call_gets_a_synthesised_id_and_results_carry_the_name(setup: Any) -> None:
    fake, stub = setup
    summary = await chat(stub, chat_request("gemini/tools", tools=[weather_tool()]))
    assert_canonical(summary, tools=True)
    assert [untagged(i) for i in summary.tool_ids] == [f"{conv.TOOL_NAME}-0"]  # `name-<tag>_0`
    # Second turn: the result refers to the synthesised id only; the adapter finds the name.
    call = pb.ToolCall(id=summary.tool_ids[0], name=conv.TOOL_NAME, arguments_json=conv.TOOL_ARGS_JSON)
    messages = [
        user("Weather in Paris?"),
        pb.Message(role=pb.ROLE_ASSISTANT, content=[pb.ContentPart(tool_call=call)]),
        pb.Message(
            role=pb.ROLE_TOOL,
            content=[pb.ContentPart(tool_result=pb.ToolResult(tool_call_id=call.id, content='{"temp": 18}'))],
        ),
    ]
    request = chat_request(
        "gemini/text",
        messages=messages,
        tools=[weather_tool()],
        tool_choice=pb.ToolChoice(mode=pb.ToolChoice.MODE_TOOL, name=conv.TOOL_NAME),
    )
    await chat(stub, request)
    body = fake.calls[-1].body
    assert body["contents"][1] == {
        "role": "model",
        "parts": [{"functionCall": {"name": conv.TOOL_NAME, "args": conv.TOOL_ARGS}}],
    }
    assert body["contents"][2]["parts"] == [
        {"functionResponse": {"name": conv.TOOL_NAME, "response": {"temp": 18}}}
    ]
    assert body["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [conv.TOOL_NAME]}
    }


async def test_thought_parts_are_reasoning_and_thoughts_count_as_output(setup: Any) -> None:
    fake, stub = setup
    summary = await chat(
        stub,
        chat_request("gemini/reasoning", reasoning=pb.ReasoningOptions(enabled=True, budget_tokens=1024)),
    )
    assert summary.reasoning == "".join(conv.REASONING_CHUNKS)
    assert summary.text == "".join(conv.TEXT_CHUNKS)
    assert summary.usage.reasoning_tokens == 7
    assert summary.usage.output_tokens == conv.OUTPUT_TOKENS
    assert fake.calls[0].body["generationConfig"]["thinkingConfig"] == {
        "includeThoughts": True,
        "thinkingBudget": 1024,
    }


async def test_vision_is_sent_as_inline_data(setup: Any) -> None:
    fake, stub = setup
    await chat(stub, image_request("gemini/vision"))
    part = fake.calls[0].body["contents"][0]["parts"][1]
    assert part["inlineData"]["mimeType"] == "image/png"
    assert base64.b64decode(part["inlineData"]["data"]) == PNG


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (401, grpc.StatusCode.UNAUTHENTICATED),
        (403, grpc.StatusCode.PERMISSION_DENIED),
        (404, grpc.StatusCode.NOT_FOUND),
        (400, grpc.StatusCode.INVALID_ARGUMENT),
        (429, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (500, grpc.StatusCode.UNAVAILABLE),
        (503, grpc.StatusCode.UNAVAILABLE),
    ],
)
async def test_errors_before_first_byte(setup: Any, status: int, code: grpc.StatusCode) -> None:
    _, stub = setup
    error, seen = await chat_error(stub, chat_request(f"gemini/error-{status}"))
    assert (error.code(), seen) == (code, [])
    if status == 429:
        assert retry_after_ms(error) == 7000  # from google.rpc.RetryInfo "7s"


async def test_invalid_key_400_is_reported_as_unauthenticated(
    setup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, _ = setup
    monkeypatch.setenv(KEY_ENV, "wrong-key")
    async with run_gateway(config(fake.base_url)) as gateway:
        error, _ = await chat_error(gateway.stub, chat_request("gemini/text"))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    details = error.details() or ""
    assert "check the provider key for gemini" in details
    assert "API key not valid. Please pass a valid API key." in details  # Google's own words, kept
    assert "API_KEY_INVALID" in details


@pytest.mark.parametrize("scenario", ["cut", "malformed", "midstream-error"])
async def test_stream_failures_after_output(setup: Any, scenario: str) -> None:
    _, stub = setup
    error, seen = await chat_error(stub, chat_request(f"gemini/{scenario}"))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert [e.text_delta.text for e in seen] == [conv.TEXT_CHUNKS[0]]


async def test_client_cancel_closes_the_upstream_connection(setup: Any) -> None:
    fake, stub = setup
    await cancel_mid_stream(stub, chat_request("gemini/hang"), fake)


async def test_count_tokens_embed_and_models(setup: Any) -> None:
    fake, stub = setup
    system = pb.Message(role=pb.ROLE_SYSTEM, content=[pb.ContentPart(text="s")])
    counted = await stub.CountTokens(
        pb.CountTokensRequest(model="gemini/gemini-2.5-flash", messages=[system, user("hi")]), timeout=20
    )
    assert (counted.input_tokens, counted.estimated) == (42, False)
    assert fake.calls[-1].body["generateContentRequest"]["model"] == "models/gemini-2.5-flash"
    embedded = await stub.Embed(
        pb.EmbedRequest(model="gemini/text-embedding-004", inputs=["a", "b"], dimensions=3), timeout=20
    )
    assert [list(e.values) for e in embedded.embeddings] == [[0.25] * 3, [0.5] * 3]
    assert fake.calls[-1].path == "/v1beta/models/text-embedding-004:batchEmbedContents"
    models = await stub.ListModels(pb.ListModelsRequest(provider="gemini"), timeout=20)
    flash = next(m for m in models.models if m.id == "gemini-2.5-flash")
    assert (flash.context_window, flash.reasoning) == (1048576, True)


async def test_complete_is_a_one_message_chat(setup: Any) -> None:
    fake, stub = setup
    response = await stub.Complete(
        pb.CompleteRequest(model="gemini/text", prompt="Say hi", max_tokens=9), timeout=20
    )
    assert response.text == "".join(conv.TEXT_CHUNKS)
    body = fake.calls[-1].body
    assert body["contents"] == [{"role": "user", "parts": [{"text": "Say hi"}]}]
    assert body["generationConfig"] == {"maxOutputTokens": 9}
