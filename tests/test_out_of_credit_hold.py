"""A deployment held for an account out of credit (OpenAI's 429 `insufficient_quota`): the
requests refused during the hold are told so, with what to do, which deployment and when it is
tried again, not "rate limit"; and the refusal does not halve the deployment's concurrency, as a
rate limit's 429 does (the account's balance says nothing of the provider's load)."""

from __future__ import annotations

import grpc
import pytest
from conftest import run_gateway
from routing_support import chat, make_router, run_stream
from rpc_util import chat as pb_chat
from test_out_of_credit import PROVIDERS, QUOTA

from provider_gateway.domain import EmbedRequest
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.fakes import FakeUpstream, Reply

RATE_LIMITED = {
    "error": {"message": "Rate limit reached for requests", "type": "requests", "code": "rate_limit_exceeded"}
}


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PG_CREDIT_KEY", "sk-test")


async def test_an_out_of_credit_answer_leaves_the_limiter_as_it_was_and_a_rate_limit_halves_it() -> None:
    async with FakeUpstream() as fake:
        fake.on("POST", "/a/v1/*", lambda _r: Reply.error(429, QUOTA))
        fake.on("POST", "/b/v1/*", lambda _r: Reply.error(429, RATE_LIMITED, {"retry-after": "20"}))
        router = make_router(PROVIDERS.format(url=fake.url))
        for model in ("a/gpt-4o-mini", "b/gpt-4o-mini"):
            with pytest.raises(GatewayError):
                await run_stream(router, chat(model))
        credit, rate = (router.planner.deployments[f"{p}/gpt-4o-mini"].limiter for p in "ab")
        assert credit.limit == credit.settings.initial
        assert rate.limit == rate.settings.initial / 2
        await router.aclose()


async def test_a_request_refused_during_the_hold_is_told_the_account_is_out_of_credit() -> None:
    async with FakeUpstream() as fake:
        fake.on("POST", "/a/v1/*", lambda _r: Reply.error(429, QUOTA))
        router = make_router(PROVIDERS.format(url=fake.url))
        with pytest.raises(GatewayError, match="out of credit"):
            await run_stream(router, chat("a/gpt-4o-mini"))  # the 429 itself
        for call in (
            run_stream(router, chat("a/gpt-4o-mini")),
            router.embed(EmbedRequest("a/gpt-4o-mini", ["x"])),
        ):
            with pytest.raises(GatewayError) as held:
                await call
            error = held.value
            assert error.kind is ErrorKind.RESOURCE_EXHAUSTED
            assert "the account behind a (a/gpt-4o-mini) is out of credit" in error.message
            assert "add credit or raise its billing limit" in error.message
            assert "rate limit" not in error.message
            assert 290 < (error.retry_after or 0) <= 300
            assert f"tries a/gpt-4o-mini again in {error.retry_after:g} s" in error.message
        assert len(fake.requests) == 1  # held: neither reached the account
        await router.aclose()


async def test_a_client_refused_during_the_hold_reads_what_to_change() -> None:
    async with FakeUpstream() as fake:
        fake.on("POST", "/a/v1/*", lambda _r: Reply.error(429, QUOTA))
        async with run_gateway(PROVIDERS.format(url=fake.url)) as gateway:
            for _ in range(2):  # the 429 itself, then a refusal of the hold
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await gateway.stub.Chat(pb_chat("a/gpt-4o-mini"), timeout=10)
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    details = caught.value.details() or ""
    assert "out of credit" in details, details
    assert "billing limit" in details, details
    assert "a/gpt-4o-mini again in" in details, details
