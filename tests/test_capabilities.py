"""No silent drops (issue 17.3, part): what a deployment's provider declares it cannot do (vision,
tools, JSON output, reasoning) is refused FAILED_PRECONDITION naming the field, the provider and
the model, before anything is sent; a fallback that can honour it serves instead."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import grpc
import orjson
import pytest
from conftest import run_gateway

from provider_gateway.domain import (
    Capabilities,
    ChatRequest,
    ImagePart,
    Message,
    ReasoningOptions,
    ResponseFormat,
    ResponseFormatType,
    Role,
    TextPart,
    Tool,
)
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.fakes import FakeUpstream, Reply
from provider_gateway.routing.capabilities import honouring, unhonoured
from provider_gateway.v1 import provider_service_pb2 as pb

JPEG = b"\xff\xd8\xff\xe0 image bytes"


def deployment(provider: str = "p", model: str = "m", **caps: Any) -> Any:
    capabilities = Capabilities(**caps)
    return SimpleNamespace(
        spec=SimpleNamespace(provider=provider, model=model),
        provider=SimpleNamespace(capabilities=lambda: capabilities),
    )


def request(**fields: Any) -> ChatRequest:
    fields.setdefault("messages", [Message(Role.USER, (TextPart("hi"),))])
    return ChatRequest("m", **fields)


@pytest.mark.parametrize(
    ("fields", "caps", "field"),
    [
        (
            {"messages": [Message(Role.USER, (TextPart("a"), ImagePart(data=JPEG)))]},
            {"tools": True},
            "messages[0].content[1].image",
        ),
        ({"tools": [Tool("f", "d", {})]}, {"vision": True}, "tools"),
        (
            {"response_format": ResponseFormat(ResponseFormatType.JSON_OBJECT)},
            {"tools": True},
            "response_format",
        ),
        ({"reasoning": ReasoningOptions(enabled=True)}, {"tools": True}, "reasoning"),
    ],
)
def test_each_declared_lack_names_the_field(
    fields: dict[str, Any], caps: dict[str, bool], field: str
) -> None:
    assert unhonoured(request(**fields), deployment(**caps)).startswith(f"{field}: ")
    full = {"vision": True, "tools": True, "json_output": True, "reasoning": True}
    assert unhonoured(request(**fields), deployment(**full)) == ""
    with pytest.raises(GatewayError) as refused:
        honouring(request(**fields), [deployment("deepseek", "deepseek-chat", **caps)])
    assert refused.value.kind is ErrorKind.FAILED_PRECONDITION
    assert f"{field}: provider 'deepseek' model 'deepseek-chat' cannot honour it" in refused.value.message


def test_a_deployment_that_cannot_is_skipped_for_one_that_can() -> None:
    lacking, able = deployment("a", vision=False), deployment("b", vision=True)
    image = request(messages=[Message(Role.USER, (ImagePart(data=JPEG),))])
    assert honouring(image, [lacking, able]) == [able]


def image_request(model: str, **fields: Any) -> pb.ChatRequest:
    image = pb.ContentPart(image=pb.Image(data=JPEG, media_type="image/jpeg"))
    return pb.ChatRequest(
        model=model,
        messages=[pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text="Look"), image])],
        **fields,
    )


async def test_an_image_to_a_text_only_provider_is_refused_and_a_fallback_serves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PG_X_KEY", "k")
    chunk = {
        "id": "c",
        "model": "gpt-4o",
        "choices": [{"index": 0, "delta": {"content": "A cat."}, "finish_reason": "stop"}],
    }
    answer = b"data: " + orjson.dumps(chunk) + b"\n\ndata: [DONE]\n\n"
    async with FakeUpstream() as fake:
        fake.script("/v1/chat/completions", Reply(chunks=[answer], content_type="text/event-stream"))
        config = (
            f'[providers.ds]\nkind = "deepseek"\nbase_url = "{fake.url}/ds"\napi_key_env = "PG_X_KEY"\n'
            f'[providers.oa]\nkind = "openai"\nbase_url = "{fake.url}/v1"\napi_key_env = "PG_X_KEY"\n'
        )
        async with run_gateway(config) as gateway:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await gateway.stub.Chat(image_request("ds/deepseek-chat"), timeout=20)
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            details = refused.value.details() or ""
            assert (
                "messages[0].content[1].image: provider 'ds' model 'deepseek-chat' cannot honour it"
                in details
            )
            assert not [r for r in fake.requests if r.path == "/ds/chat/completions"]  # nothing went out
            call = gateway.stub.ChatStream(
                image_request("ds/deepseek-chat", fallbacks=["oa/gpt-4o"]), timeout=20
            )
            events = [e async for e in call]
    assert "".join(e.text_delta.text for e in events) == "A cat."
    assert [a.provider for a in events[-1].finish.attempts] == ["oa"]  # DeepSeek skipped, not failed
