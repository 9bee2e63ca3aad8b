"""ListModels of every provider: one slow or broken provider is left out, not the whole listing."""

from __future__ import annotations

import grpc
import pytest
from conftest import run_gateway

from provider_gateway.fakes import FakeUpstream, Reply
from provider_gateway.v1 import provider_service_pb2 as pb

GPT_4O = {"object": "list", "data": [{"id": "gpt-4o", "object": "model"}]}
BOOM = {"error": {"message": "boom"}}


def upstreams(url: str, mock: bool = True) -> str:
    """`up` (the fake's /v1) and `up2` (its /v2), and the mock provider unless `mock` is false."""
    providers = "".join(
        f'[providers.{name}]\nkind = "openai"\nbase_url = "{url}/{path}"\napi_key_env = "PATH"\n'
        for name, path in (("up", "v1"), ("up2", "v2"))
    )
    head = '[providers.mock]\nkind = "mock"\n' if mock else '[server]\ndefault_provider = "up"\n'
    return head + providers


def listing(fake: FakeUpstream, v1: Reply, v2: Reply) -> None:
    """How the fake answers each provider's GET /models (the start-up health probe's too)."""
    fake.on("GET", "/v1/models", lambda r: v1)
    fake.on("GET", "/v2/models", lambda r: v2)


async def status_of(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    return info.value


def providers_of(reply: pb.ListModelsResponse) -> set[str]:
    return {m.provider for m in reply.models}


async def test_a_provider_that_never_answers_is_left_out_within_the_callers_deadline() -> None:
    async with FakeUpstream() as fake:
        listing(fake, Reply.json(GPT_4O), Reply.json(GPT_4O))  # the start-up probes pass
        async with run_gateway(upstreams(fake.url)) as gw:
            fake.script("/v2/models", Reply(stall=True))
            # Before: the providers were asked one after another, and the call ended
            # DEADLINE_EXCEEDED with nothing listed.
            reply = await gw.stub.ListModels(pb.ListModelsRequest(), timeout=2)
    assert providers_of(reply) == {"mock", "up"}
    assert "up/gpt-4o" in {f"{m.provider}/{m.id}" for m in reply.models}


async def test_a_provider_that_fails_is_left_out_and_the_others_are_listed() -> None:
    async with FakeUpstream() as fake:
        listing(fake, Reply.json(GPT_4O), Reply.json(GPT_4O))
        async with run_gateway(upstreams(fake.url)) as gw:
            assert providers_of(await gw.stub.ListModels(pb.ListModelsRequest(), timeout=10)) == {
                "mock",
                "up",
                "up2",
            }
            fake.script("/v2/models", Reply.error(500, BOOM))
            # Before: UNAVAILABLE "up2: up2 unavailable (HTTP 500): boom", and no model at all.
            reply = await gw.stub.ListModels(pb.ListModelsRequest(), timeout=10)
    assert providers_of(reply) == {"mock", "up"}


async def test_when_every_provider_fails_the_listing_fails_with_their_status() -> None:
    async with FakeUpstream() as fake:
        overloaded = Reply.error(503, {"error": {"message": "overloaded"}})
        listing(fake, overloaded, overloaded)
        async with run_gateway(upstreams(fake.url, mock=False)) as gw:
            error = await status_of(gw.stub.ListModels(pb.ListModelsRequest(), timeout=10))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    details = error.details() or ""
    assert "no provider could list its models" in details
    assert "up: " in details  # each provider's reason
    assert "up2: " in details
    assert "overloaded" in details


async def test_a_named_provider_that_fails_fails_the_call_with_its_error() -> None:
    async with FakeUpstream() as fake:
        listing(fake, Reply.json(GPT_4O), Reply.json(GPT_4O))
        async with run_gateway(upstreams(fake.url)) as gw:
            fake.script("/v2/models", Reply.error(500, BOOM))
            error = await status_of(gw.stub.ListModels(pb.ListModelsRequest(provider="up2"), timeout=10))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert (error.details() or "").startswith("up2: ")
    assert "boom" in (error.details() or "")
