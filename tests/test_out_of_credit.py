"""An account out of credit (OpenAI's 429 `insufficient_quota`; Anthropic's 400 "Your credit balance
is too low"), through the served gateway to fake upstreams: no wait helps that deployment soon,
another one answers. The request fails over, the deployment is held for every request
(OUT_OF_CREDIT_HOLD_S), and a client with nowhere else to go is told what to change."""

from __future__ import annotations

from typing import Any

import grpc
import orjson
import pytest
from conftest import run_gateway
from rpc_util import chat
from vendor_cases import chat_error, retry_after_ms

from provider_gateway.errors import ErrorKind
from provider_gateway.fakes import FakeUpstream, Reply, kinds
from provider_gateway.http import UpstreamResponse
from provider_gateway.http.errors import OUT_OF_CREDIT_HOLD_S, error_from_response, obey_retry_advice
from provider_gateway.providers.upstream_io import VendorErrors
from provider_gateway.v1 import provider_service_pb2 as pb

QUOTA = {
    "error": {
        "message": "You exceeded your current quota, please check your plan and billing details.",
        "type": "insufficient_quota",
        "code": "insufficient_quota",
    }
}
PROVIDERS = """
[providers.a]
kind = "openai"
base_url = "{url}/a/v1"
api_key_env = "PG_CREDIT_KEY"

[providers.b]
kind = "openai"
base_url = "{url}/b/v1"
api_key_env = "PG_CREDIT_KEY"
"""
# Equal weights: without a hold, about half the requests would pick a first.
GROUPS = """
[groups.g]
deployments = [{ provider = "a", model = "gpt-4o-mini", weight = 1 }, { provider = "b", model = "gpt-4o-mini", weight = 1 }]

[groups.e]
deployments = [{ provider = "a", model = "text-embedding-3-small", weight = 1 }, { provider = "b", model = "text-embedding-3-small", weight = 1 }]
"""


def embedded(_request: object) -> Reply:
    return Reply.json(
        {"data": [{"index": 0, "embedding": [0.5]}], "model": "e", "usage": {"prompt_tokens": 1}}
    )


def sent(fake: FakeUpstream, path: str) -> int:
    return sum(r.path == path for r in fake.requests)


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PG_CREDIT_KEY", "sk-test")


async def test_a_deployment_out_of_credit_is_failed_over_and_held_for_every_request() -> None:
    async with FakeUpstream() as fake:
        fake.on("POST", "/a/v1/*", lambda _r: Reply.error(429, QUOTA))
        fake.on("POST", "/b/v1/embeddings", embedded)
        kinds.openai(fake)
        async with run_gateway(PROVIDERS.format(url=fake.url) + GROUPS) as gateway:
            answered = [(await gateway.stub.Chat(chat("g"), timeout=10)).finish for _ in range(12)]
            vectors = [
                await gateway.stub.Embed(pb.EmbedRequest(model="e", inputs=["x"]), timeout=10)
                for _ in range(6)
            ]
    assert {f.provider for f in answered} == {"b"}
    assert {v.provider for v in vectors} == {"b"}
    # Asked once for each kind of call, then held: no request after the first goes there again.
    assert sent(fake, "/a/v1/chat/completions") <= 1
    assert sent(fake, "/a/v1/embeddings") <= 1
    tried_a = [f.attempts[0] for f in answered if f.attempts[0].provider == "a"]
    assert all(a.outcome == "RESOURCE_EXHAUSTED" for a in tried_a)


async def refused(stub: Any, streaming: bool) -> grpc.aio.AioRpcError:
    if streaming:
        error, _ = await chat_error(stub, chat("a/gpt-4o-mini"))
        return error
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Chat(chat("a/gpt-4o-mini"), timeout=10)
    return caught.value


@pytest.mark.parametrize("streaming", [True, False], ids=["stream", "unary"])
async def test_the_only_deployment_out_of_credit_tells_the_client_what_to_change(streaming: bool) -> None:
    async with FakeUpstream() as fake:
        fake.on("POST", "/a/v1/chat/completions", lambda _r: Reply.error(429, QUOTA))
        async with run_gateway(PROVIDERS.format(url=fake.url)) as gateway:
            first = await refused(gateway.stub, streaming)
            again = await refused(gateway.stub, streaming)
    assert first.code() == again.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    details = first.details() or ""
    assert "out of credit" in details, details
    assert "billing" in details, details
    assert ("grpc-retry-pushback-ms", "-1") in tuple(first.trailing_metadata() or ())  # nowhere else
    for error in (first, again):  # not a rate limit's seconds: come back in minutes
        assert (retry_after_ms(error) or 0) > 60_000, error.details()
    # Never retried, and held: the second request does not reach the exhausted account.
    assert sent(fake, "/a/v1/chat/completions") == 1


@pytest.mark.parametrize("advice", [{}, {"x-should-retry": "false"}, {"retry-after": "2"}])
def test_out_of_credit_fails_over_and_holds_whatever_the_headers_say(advice: dict[str, str]) -> None:
    error = obey_retry_advice(
        error_from_response("openai", 429, advice, orjson.dumps(QUOTA), model="gpt-4o"), advice
    )
    assert (error.kind, error.retryable, error.retry_elsewhere_only) == (
        ErrorKind.RESOURCE_EXHAUSTED,
        True,
        True,
    )
    assert error.retry_after == OUT_OF_CREDIT_HOLD_S


# Anthropic refuses an account without credit with a 400 `invalid_request_error` in these words
# (not a 402 or a 429): the same out-of-credit refusal, not a bad request.
ANTHROPIC_NO_CREDIT = {
    "type": "error",
    "error": {
        "type": "invalid_request_error",
        "message": "Your credit balance is too low to access the Anthropic API. "
        "Please go to Plans & Billing to upgrade or purchase credits.",
    },
}
CLAUDE_AND_BACKUP = """
[providers.claude]
kind = "anthropic"
base_url = "{url}/claude"
api_key_env = "PG_CREDIT_KEY"

[providers.b]
kind = "openai"
base_url = "{url}/b/v1"
api_key_env = "PG_CREDIT_KEY"
"""


async def test_anthropic_out_of_credit_fails_over_and_is_held() -> None:
    async with FakeUpstream() as fake:
        fake.on("POST", "/claude/v1/messages", lambda _r: Reply.error(400, ANTHROPIC_NO_CREDIT))
        kinds.openai(fake)
        async with run_gateway(CLAUDE_AND_BACKUP.format(url=fake.url)) as gateway:
            request = chat("claude/claude-sonnet-4-5")
            request.fallbacks.append("b/gpt-4o-mini")
            answered = [(await gateway.stub.Chat(request, timeout=10)).finish for _ in range(4)]
    assert {f.provider for f in answered} == {"b"}
    assert answered[0].attempts[0].provider == "claude"
    assert answered[0].attempts[0].outcome == "RESOURCE_EXHAUSTED"
    # Held after the first refusal: the later requests go straight to the fallback.
    assert sent(fake, "/claude/v1/messages") == 1


@pytest.mark.parametrize("streaming", [True, False], ids=["stream", "unary"])
async def test_anthropic_out_of_credit_alone_tells_the_client_to_add_credit(streaming: bool) -> None:
    async with FakeUpstream() as fake:
        fake.on("POST", "/claude/v1/messages", lambda _r: Reply.error(400, ANTHROPIC_NO_CREDIT))
        async with run_gateway(CLAUDE_AND_BACKUP.format(url=fake.url)) as gateway:
            request = chat("claude/claude-sonnet-4-5")
            if streaming:
                error, _ = await chat_error(gateway.stub, request)
            else:
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await gateway.stub.Chat(request, timeout=10)
                error = caught.value
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    details = error.details() or ""
    assert "out of credit" in details, details
    assert "add credit" in details, details
    assert "Plans & Billing" in details, details  # Anthropic's own words stay
    assert ("grpc-retry-pushback-ms", "-1") in tuple(error.trailing_metadata() or ())
    assert (retry_after_ms(error) or 0) > 60_000, details


@pytest.mark.parametrize(
    "message",
    [
        "prompt is too long: 208310 tokens > 200000 maximum",
        "messages.0.content: credit card numbers are not allowed here",  # not the refusal
    ],
)
def test_other_anthropic_400s_stay_bad_requests(message: str) -> None:
    body = {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
    error = VendorErrors().from_response("claude", UpstreamResponse(400, {}), orjson.dumps(body), "m", ())
    assert error.kind is ErrorKind.INVALID_ARGUMENT
    assert not error.retry_elsewhere_only
