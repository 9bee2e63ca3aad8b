"""Embed and CountTokens keep to the caller's gRPC deadline when it is sooner than `timeout_s` (the
attempt is cancelled when it passes, and no wait outlives it), and probe an all-open route early,
as Chat does."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from conftest import run_gateway
from routing_support import FakeClock, chat, make_router, mock, run_stream

from provider_gateway.domain import EmbedRequest
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.fakes import FakeUpstream, Reply
from provider_gateway.http import deadline as caller_deadline
from provider_gateway.providers.mock import MockModel
from provider_gateway.v1 import provider_service_pb2 as pb

pytestmark = pytest.mark.timeout(60)

EMBEDDER = (
    '[providers.a]\nkind = "mock"\n[providers.a.models.e]\nembeddings = true\n{model}\n'
    "[routing]\nretries = 0\ntimeout_s = 600\n{routing}"
)


async def test_an_embed_past_the_callers_deadline_ends_deadline_exceeded_and_cancels_the_upstream() -> None:
    router = make_router(EMBEDDER.format(model='fault = "hang"', routing=""))
    a = mock(router, "a")
    caller_deadline.set_deadline(0.2)  # as the servicer does with the gRPC call's time remaining
    with pytest.raises(GatewayError) as caught:
        async with asyncio.timeout(20):  # before: the router waited for timeout_s (600 s)
            await router.embed(EmbedRequest("a/e", ["x"]))
    assert caught.value.kind is ErrorKind.DEADLINE_EXCEEDED
    assert a.stats.cancelled == 1  # the provider's call was cancelled, not left running
    assert router.breaker_state("a") == "closed"  # the caller's deadline is not the deployment's fault
    assert router.planner.deployments["a/e"].limiter.in_flight == 0
    await router.aclose()


async def test_an_embed_waits_for_no_hold_that_outlasts_the_callers_deadline() -> None:
    """A deployment held 1.5 s by its provider's rate limit: within `max_retry_wait_s` (2 s), so a
    call with time to spare waits for it; a caller with 1 s left is told at once when to retry."""
    clock = FakeClock()
    router = make_router(
        EMBEDDER.format(model='fault = "rate_limit"\nretry_after_ms = 1500', routing=""),
        clock=clock,
    )
    a = mock(router, "a")
    with pytest.raises(GatewayError):
        await router.embed(EmbedRequest("a/e", ["x"]))  # the 429: a held 1.5 s
    a.set_model("e", MockModel(embeddings=True))
    caller_deadline.set_deadline(1.0)
    with pytest.raises(GatewayError) as caught:
        await router.embed(EmbedRequest("a/e", ["x"]))
    assert caught.value.kind is ErrorKind.RESOURCE_EXHAUSTED
    assert caught.value.retry_after == pytest.approx(1.5)
    assert clock.sleeps == []  # before: it slept 1.5 s, past the caller's deadline
    caller_deadline.set_deadline(None)  # no deadline: timeout_s bounds the wait, which fits
    _, result = await router.embed(EmbedRequest("a/e", ["x"]))
    assert len(result.vectors) == 1
    assert [seconds for _, seconds in clock.sleeps] == [pytest.approx(1.5)]
    await router.aclose()


async def test_an_embed_route_whose_breaker_is_open_gets_its_early_probe() -> None:
    """Every deployment open (a chat's failures opened it for a minute): the next Embed probes it
    early, and its success closes the breaker, as a chat's would; it was refused for the minute."""
    router = make_router(
        EMBEDDER.format(
            model='fault = "error_before_first_token"',
            routing="ttft_timeout_s = 120\n[routing.breaker]\nconsecutive_failures = 1\ncooldown_s = 60",
        )
    )
    a = mock(router, "a")
    with pytest.raises(GatewayError):
        await run_stream(router, chat("a/e"))
    assert router.breaker_state("a") == "open"
    a.set_model("e", MockModel(embeddings=True))  # recovered
    route, result = await router.embed(EmbedRequest("a/e", ["x"]))
    assert (route.provider, len(result.vectors)) == ("a", 1)
    assert router.breaker_state("a") == "closed"
    await router.aclose()


async def test_an_embed_through_the_gateway_stops_its_upstream_request_at_the_callers_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PG_DEADLINE_KEY", "sk-test")
    async with FakeUpstream() as fake:
        fake.script("/v1/embeddings", Reply(stall=True))  # never answers, until the gateway leaves
        config = (
            f'[providers.o]\nkind = "openai"\nbase_url = "{fake.url}/v1"\napi_key_env = "PG_DEADLINE_KEY"\n'
            "[routing]\nretries = 0\ntimeout_s = 600\n"
        )
        async with run_gateway(config) as gateway:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await gateway.stub.Embed(
                    pb.EmbedRequest(model="o/text-embedding-3-small", inputs=["x"]), timeout=0.5
                )
            await asyncio.wait_for(fake.disconnected.wait(), 10)
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert fake.disconnects == 1
    assert sum(r.path == "/v1/embeddings" for r in fake.requests) == 1
