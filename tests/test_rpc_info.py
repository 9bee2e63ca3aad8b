"""ListModels, CountTokens, Embed, ListProviders and health through the real gRPC API."""

from __future__ import annotations

import math

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rpc_util import rpc_error, user

from provider_gateway.v1 import provider_service_pb2 as pb

TWO_PROVIDERS = """
[providers.mock]
[providers.sick]
kind = "mock"
healthy = false
[providers.sick.models.custom]
tokens = 2
context_window = 8000
[aliases]
fast = "mock/echo"
quick = "mock/echo"
"""


async def test_list_models_names_every_mock_model_with_flags(gateway) -> None:
    response = await gateway.stub.ListModels(pb.ListModelsRequest())
    by_id = {m.id: m for m in response.models}
    assert sorted(by_id) == ["echo", "embed", "reasoner", "slow", "tools"]
    assert {m.provider for m in response.models} == {"mock"}
    assert by_id["reasoner"].reasoning
    assert not by_id["echo"].reasoning
    assert by_id["embed"].embeddings
    assert not by_id["tools"].embeddings
    assert by_id["tools"].tools
    assert by_id["echo"].context_window == 128_000
    assert by_id["echo"].display_name == "Mock echo"


async def test_list_models_filters_by_provider_and_shows_aliases(gateway_factory) -> None:
    async with gateway_factory(TWO_PROVIDERS) as gw:
        everything = await gw.stub.ListModels(pb.ListModelsRequest())
        sick = await gw.stub.ListModels(pb.ListModelsRequest(provider="sick"))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await gw.stub.ListModels(pb.ListModelsRequest(provider="nope"))
    assert {m.provider for m in everything.models} == {"mock", "sick"}
    assert {m.id for m in sick.models} == {"custom", "echo", "embed", "reasoner", "slow", "tools"}
    custom = next(m for m in sick.models if m.id == "custom")
    assert custom.context_window == 8000
    echo = next(m for m in everything.models if (m.provider, m.id) == ("mock", "echo"))
    assert sorted(echo.aliases) == ["fast", "quick"]
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "'nope'" in info.value.details()
    assert "mock, sick" in info.value.details()


async def test_count_tokens_of_text_and_of_messages(gateway) -> None:
    text = await gateway.stub.CountTokens(pb.CountTokensRequest(model="mock/echo", text="12345678"))
    assert (text.input_tokens, text.estimated, text.provider, text.model) == (2, False, "mock", "echo")
    conversation = await gateway.stub.CountTokens(
        pb.CountTokensRequest(model="echo", messages=[user("12345678"), user("1234")])
    )
    assert conversation.input_tokens == (4 + 2) + (4 + 1)  # per-message framing plus text
    chat = await gateway.stub.Chat(
        pb.ChatRequest(model="mock/echo", messages=[user("12345678"), user("1234")])
    )
    assert chat.usage.input_tokens == conversation.input_tokens


async def test_count_tokens_of_an_unknown_model_is_not_found(gateway) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await gateway.stub.CountTokens(pb.CountTokensRequest(model="mock/gpt-9", text="x"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "'gpt-9' is not offered by provider 'mock'" in info.value.details()


async def test_embed_returns_deterministic_unit_vectors(gateway) -> None:
    request = pb.EmbedRequest(model="mock/embed", inputs=["alpha", "beta", "alpha"])
    response = await gateway.stub.Embed(request)
    assert [e.index for e in response.embeddings] == [0, 1, 2]
    vectors = [list(e.values) for e in response.embeddings]
    assert all(len(v) == 16 for v in vectors)
    assert all(math.isclose(math.fsum(x * x for x in v), 1.0, rel_tol=1e-5) for v in vectors)
    assert vectors[0] == vectors[2] != vectors[1]
    assert (response.provider, response.model) == ("mock", "embed")
    assert response.usage.input_tokens == 2 + 1 + 2
    again = await gateway.stub.Embed(request)
    assert [list(e.values) for e in again.embeddings] == vectors


async def test_embed_honours_requested_dimensions(gateway) -> None:
    response = await gateway.stub.Embed(pb.EmbedRequest(model="mock/embed", inputs=["x"], dimensions=3))
    assert len(response.embeddings[0].values) == 3


async def test_a_model_without_embeddings_refuses_embed(gateway) -> None:
    """`mock/echo` declares no embeddings in ListModels, so it must not answer Embed either."""
    models = await gateway.stub.ListModels(pb.ListModelsRequest(provider="mock"))
    assert not next(m for m in models.models if m.id == "echo").embeddings
    error = await rpc_error(gateway.stub.Embed(pb.EmbedRequest(model="mock/echo", inputs=["x"])))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "does not offer embeddings (embedding models: embed)" in (error.details() or "")


async def test_list_providers_reports_health_and_capabilities(gateway_factory) -> None:
    async with gateway_factory(TWO_PROVIDERS) as gw:
        response = await gw.stub.ListProviders(pb.ListProvidersRequest())
    assert response.default_provider == "mock"
    by_name = {p.name: p for p in response.providers}
    assert list(by_name) == ["mock", "sick"]
    assert by_name["mock"].health == pb.PROVIDER_HEALTH_SERVING
    assert by_name["sick"].health == pb.PROVIDER_HEALTH_NOT_SERVING
    assert by_name["sick"].health_message == "mock set unhealthy"
    caps = by_name["mock"].capabilities
    assert (by_name["mock"].kind, caps.max_tokens) == ("mock", 4096)
    assert caps.streaming
    assert caps.tools
    assert caps.vision
    assert caps.embeddings
    assert caps.completion


async def test_health_reports_server_service_and_each_provider(gateway_factory) -> None:
    async with gateway_factory(TWO_PROVIDERS) as gw:
        health = health_pb2_grpc.HealthStub(gw.channel)

        async def status(service: str) -> int:
            response = await health.Check(health_pb2.HealthCheckRequest(service=service))
            return response.status

        assert await status("") == health_pb2.HealthCheckResponse.SERVING
        assert await status("provider_gateway.v1.ProviderService") == health_pb2.HealthCheckResponse.SERVING
        assert await status("provider/mock") == health_pb2.HealthCheckResponse.SERVING
        assert await status("provider/sick") == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await status("provider/nope")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_health_watch_streams_the_current_status(gateway) -> None:
    health = health_pb2_grpc.HealthStub(gateway.channel)
    call = health.Watch(health_pb2.HealthCheckRequest(service=""))
    first = await call.read()
    call.cancel()
    assert first.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.ChatRequest(model="mock/echo"), "messages"),
        (pb.ChatRequest(model="mock/echo", messages=[pb.Message(role=pb.ROLE_USER)]), "messages[0].content"),
        (
            pb.ChatRequest(model="mock/echo", messages=[pb.Message(content=[pb.ContentPart(text="x")])]),
            "role",
        ),
        (pb.ChatRequest(model="", messages=[user("x")]), "model is required"),
    ],
)
async def test_bad_chat_requests_are_invalid_argument_naming_the_field(gateway, request_, field) -> None:
    for method in (gateway.stub.Chat, gateway.stub.ChatStream):
        error = await rpc_error(method(request_))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in error.details()


async def test_bad_complete_embed_and_count_requests_are_invalid_argument(gateway) -> None:
    calls = [
        gateway.stub.Complete(pb.CompleteRequest(model="mock/echo")),
        gateway.stub.Embed(pb.EmbedRequest(model="mock/embed")),
        gateway.stub.CountTokens(pb.CountTokensRequest(model="mock/echo")),
    ]
    for call, field in zip(calls, ["prompt", "inputs", "text or messages"], strict=True):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details().startswith(field)


async def test_server_is_not_serving_when_no_provider_serves(gateway_factory) -> None:
    async with gateway_factory("[providers.mock]\nhealthy = false\n") as gw:
        health = health_pb2_grpc.HealthStub(gw.channel)
        overall = await health.Check(health_pb2.HealthCheckRequest(service=""))
        service = await health.Check(
            health_pb2.HealthCheckRequest(service="provider_gateway.v1.ProviderService")
        )
    assert overall.status == health_pb2.HealthCheckResponse.NOT_SERVING
    assert service.status == health_pb2.HealthCheckResponse.NOT_SERVING
