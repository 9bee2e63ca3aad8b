"""First routing rules through the real API: provider field, prefix, alias, default, fallbacks."""

from __future__ import annotations

import grpc
import pytest
from rpc_util import chat, collect_until_error, kinds, runs

from provider_gateway.v1 import provider_service_pb2 as pb

ROUTES = """
[server]
default_provider = "backup"

[providers.primary]
kind = "mock"
[providers.primary.models.broken]
fault = "error_before_first_token"
fault_status = "UNAVAILABLE"
fault_message = "primary region down"
[providers.primary.models.refusing]
fault = "error_before_first_token"
fault_status = "INVALID_ARGUMENT"
fault_message = "context too long"
[providers.primary.models.midway]
fault = "error_after_tokens"
fault_after_tokens = 2

[providers.backup]
kind = "mock"

[aliases]
smart = "primary/reasoner"
"""


@pytest.fixture
async def routed(gateway_factory):
    async with gateway_factory(ROUTES) as gw:
        yield gw


async def answered_by(gw, request: pb.ChatRequest) -> tuple[str, str]:
    response = await gw.stub.Chat(request)
    return response.finish.provider, response.finish.model


async def test_provider_model_prefix_picks_the_provider(routed) -> None:
    assert await answered_by(routed, chat("primary/echo")) == ("primary", "echo")
    assert await answered_by(routed, chat("backup/echo")) == ("backup", "echo")


async def test_explicit_provider_field_wins_and_accepts_its_own_prefix(routed) -> None:
    assert await answered_by(routed, chat("echo", provider="primary")) == ("primary", "echo")
    assert await answered_by(routed, chat("primary/echo", provider="primary")) == ("primary", "echo")


async def test_alias_from_config(routed) -> None:
    assert await answered_by(routed, chat("smart")) == ("primary", "reasoner")


async def test_bare_model_goes_to_the_default_provider(routed) -> None:
    assert await answered_by(routed, chat("echo")) == ("backup", "echo")


async def test_unknown_provider_is_not_found_listing_the_configured_ones(routed) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await routed.stub.Chat(chat("echo", provider="openai"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    # Helpful: names the unknown provider and lists the configured ones.
    assert "'openai'" in info.value.details()
    assert "primary, backup" in info.value.details()


async def test_unknown_prefix_is_not_found_explaining_the_prefix(routed) -> None:
    events, error = await collect_until_error(routed.stub.ChatStream(chat("openai/gpt-4o")))
    assert events == []
    assert error is not None
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "'openai/gpt-4o'" in error.details()
    assert "'provider/' prefix must name a configured provider" in error.details()


async def test_unknown_model_is_not_found_listing_the_models(routed) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await routed.stub.Chat(chat("primary/gpt-9"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "'gpt-9' is not offered by provider 'primary'" in info.value.details()
    assert "models: broken, echo, embed, midway" in info.value.details()


async def test_fallback_before_the_first_token(routed) -> None:
    request = chat("primary/broken", fallbacks=["backup/echo"])
    events = [e async for e in routed.stub.ChatStream(request)]
    assert kinds(events)[-1] == "finish"
    finish = events[-1].finish
    assert (finish.provider, finish.model) == ("backup", "echo")
    assert [(a.provider, a.outcome) for a in finish.attempts] == [
        ("primary", "UNAVAILABLE"),
        ("backup", "ok"),
    ]
    assert finish.attempts[0].error == "primary region down"
    response = await routed.stub.Chat(request)
    assert (response.finish.provider, response.finish.model) == ("backup", "echo")


async def test_fallback_may_be_an_alias(routed) -> None:
    response = await routed.stub.Chat(chat("primary/broken", fallbacks=["smart"]))
    assert (response.finish.provider, response.finish.model) == ("primary", "reasoner")


async def test_no_fallback_once_tokens_were_sent(routed) -> None:
    events, error = await collect_until_error(
        routed.stub.ChatStream(chat("primary/midway", fallbacks=["backup/echo"]))
    )
    assert runs(kinds(events)) == ["text_delta"]  # the two tokens sent, perhaps as one message
    assert error is not None
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert routed.provider("backup").stats.started == 0


async def test_no_fallback_for_a_final_error(routed) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await routed.stub.Chat(chat("primary/refusing", fallbacks=["backup/echo"]))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert routed.provider("backup").stats.started == 0


async def test_when_every_route_fails_the_last_error_is_returned(routed) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await routed.stub.Chat(chat("primary/broken", fallbacks=["primary/broken", "backup/gpt-9"]))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "'gpt-9'" in info.value.details()


async def test_count_tokens_and_embed_route_like_chat(routed) -> None:
    count = await routed.stub.CountTokens(pb.CountTokensRequest(model="smart", text="abcd"))
    assert (count.provider, count.model) == ("primary", "reasoner")
    embedded = await routed.stub.Embed(pb.EmbedRequest(model="embed", inputs=["x"]))
    assert (embedded.provider, embedded.model) == ("backup", "embed")
