"""An account out of credit (OpenAI's 429 `insufficient_quota`), through the served gateway to fake
OpenAI-style upstreams: no wait helps that deployment soon, another one answers. The request fails
over, the deployment is held for every request (OUT_OF_CREDIT_HOLD_S), and a client with nowhere
else to go is told what to change."""

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
from provider_gateway.http.errors import OUT_OF_CREDIT_HOLD_S, error_from_response, obey_retry_advice
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
