"""The mock implements the whole Provider protocol; what BaseProvider gives adapters by default."""

from __future__ import annotations

import pytest
from rpc_util import chat

from provider_gateway import domain as d
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.providers.base import BaseProvider, Provider
from provider_gateway.providers.mock import RECENT_REQUESTS, MockProvider, MockScript
from provider_gateway.v1 import provider_service_pb2 as pb


def test_mock_is_a_provider() -> None:
    mock = MockProvider("m")
    assert isinstance(mock, Provider)
    assert (mock.name, mock.kind) == ("m", "mock")


async def test_mock_health_and_close() -> None:
    assert (await MockProvider("m").health_check()).healthy
    sick = MockProvider("m", healthy=False)
    assert await sick.health_check() == d.HealthStatus(healthy=False, message="mock set unhealthy")
    await sick.aclose()


async def test_base_provider_defaults() -> None:
    base = BaseProvider("plain")
    request = d.ChatRequest(model="x", messages=[d.Message(d.Role.USER, (d.TextPart("hi"),))])
    for call in (
        lambda: base.chat_stream(request),
        lambda: base.complete_stream(d.CompletionRequest(model="x", prompt="p")),
    ):
        with pytest.raises(GatewayError) as info:
            call()
        assert info.value.kind is ErrorKind.UNIMPLEMENTED
    with pytest.raises(GatewayError, match="does not support embeddings"):
        await base.embed(d.EmbedRequest(model="x", inputs=["a"]))
    assert await base.list_models() == []
    assert base.capabilities() == d.Capabilities()
    assert (await base.health_check()).healthy
    count = await base.count_tokens(d.CountTokensRequest(model="x", text="12345"))
    assert (count.input_tokens, count.estimated) == (2, True)
    await base.aclose()


async def test_count_tokens_estimates_every_content_part(gateway) -> None:
    parts = [
        pb.ContentPart(tool_call=pb.ToolCall(id="c", name="abcd", arguments_json="{}")),  # 6 chars: 2
        pb.ContentPart(tool_result=pb.ToolResult(tool_call_id="c", content="12345678")),  # 2
        pb.ContentPart(image=pb.Image(url="https://example.com/a.png")),  # a low-detail tile: 85
        pb.ContentPart(reasoning=pb.Reasoning(text="1234")),  # 1
    ]
    messages = [
        pb.Message(role=pb.ROLE_USER, content=[parts[2]]),
        pb.Message(role=pb.ROLE_ASSISTANT, content=[parts[3], parts[0]]),
        pb.Message(role=pb.ROLE_TOOL, content=[parts[1]]),
    ]
    count = await gateway.stub.CountTokens(pb.CountTokensRequest(model="mock/echo", messages=messages))
    assert count.input_tokens == 3 * 4 + 2 + 2 + 85 + 1  # 4 tokens of framing per message


async def test_unary_chat_keeps_the_reasoning_signature(gateway) -> None:
    gateway.provider("mock").push(
        MockScript(
            events=[
                d.ReasoningDelta("hm", signature="sig-1"),
                d.TextDelta("ok"),
                d.ProviderFinish(d.FinishReason.STOP),
            ]
        )
    )
    response = await gateway.stub.Chat(chat("mock/echo"))
    assert (response.reasoning, response.reasoning_signature, response.text) == ("hm", "sig-1", "ok")


async def test_mock_remembers_only_recent_requests() -> None:
    """The mock is the default provider of a long-running server: its request log must not grow."""
    mock = MockProvider("m")
    for n in range(RECENT_REQUESTS + 50):
        message = d.Message(d.Role.USER, (d.TextPart(f"request {n}"),))
        await mock.chat(d.ChatRequest(model="echo", messages=[message]))
    assert mock.stats.started == RECENT_REQUESTS + 50
    assert len(mock.stats.requests) == RECENT_REQUESTS
    last = mock.stats.requests[-1]
    assert isinstance(last, d.ChatRequest)
    assert last.messages[0].content == (d.TextPart(f"request {RECENT_REQUESTS + 49}"),)
