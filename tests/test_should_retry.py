"""The vendors' `x-should-retry` header, through the served gateway to a fake OpenAI-style upstream.

The openai and anthropic SDKs obey it before any status rule ("if the server explicitly says
whether or not to retry, obey"); so does the gateway: "false" keeps the request off that deployment
(other deployments may still answer), "true" retries an error its status calls final.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anthropic
import grpc
import httpx2
import openai
import pytest
from conftest import RunningGateway, run_gateway
from upstream_support import chat_stream, user

from provider_gateway.fakes import FakeUpstream, Reply, kinds
from provider_gateway.v1 import provider_service_pb2 as pb

KEY = "sk-test-0123456789abcdef"
PATHS = {"a": "/a/v1/chat/completions", "b": "/b/v1/chat/completions"}
# Retries with a backoff too short to notice; a breaker that never opens, as tests share the gateway.
ROUTING = """
[routing]
retries = 2
backoff_base_ms = 1
backoff_max_ms = 1
[routing.breaker]
consecutive_failures = 1000000
min_calls = 1000000
[groups.g]
deployments = [{ provider = "a", model = "m", weight = 1 }, { provider = "b", model = "m", weight = 0 }]
"""


@dataclass
class Env:
    fake: FakeUpstream
    gateway: RunningGateway

    def seen(self, provider: str, model: str, since: int) -> int:
        """Requests to `provider` for `model` since the fake had seen `since` requests."""
        path = PATHS[provider]
        return sum(r.path == path and r.json()["model"] == model for r in self.fake.requests[since:])


@pytest.fixture(scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    key_file = Path(tmp_path_factory.mktemp("keys")) / "key"
    key_file.write_text(KEY)
    async with FakeUpstream() as fake:
        kinds.openai(fake)  # what a request meets once the scripted replies are spent: an answer
        providers = "".join(
            f'[providers.{name}]\nkind = "openai"\nbase_url = "{fake.url}/{name}/v1"\n'
            f'api_key_file = "{key_file}"\n'
            for name in PATHS
        )
        async with run_gateway(providers + ROUTING) as gateway:
            yield Env(fake, gateway)


@dataclass
class Outcome:
    provider: str  # who answered, "" on an error
    attempts: list[tuple[str, str]]
    error: grpc.aio.AioRpcError | None


async def ask(env: Env, model: str, streaming: bool) -> Outcome:
    request = pb.ChatRequest(model=model, messages=[user("Hi")])
    if streaming:
        got = await chat_stream(env.gateway.stub, request)
        if got.error is not None:
            return Outcome("", [], got.error)
        finish = got.finish
    else:
        try:
            finish = (await env.gateway.stub.Chat(request, timeout=20)).finish
        except grpc.aio.AioRpcError as error:
            return Outcome("", [], error)
    return Outcome(finish.provider, [(a.provider, a.outcome) for a in finish.attempts], None)


def error(status: int, headers: dict[str, str]) -> Reply:
    return Reply.error(status, {"error": {"message": f"upstream said {status}"}}, headers)


@pytest.mark.parametrize("streaming", [True, False], ids=["stream", "unary"])
async def test_a_500_that_says_do_not_retry_moves_to_the_next_deployment_and_never_back(
    env: Env, streaming: bool
) -> None:
    # b fails too, asking for a short wait: without the header's word, a (whose backoff is about
    # 1 ms) would be ready first and tried again.
    env.fake.script(PATHS["a"], error(500, {"x-should-retry": "false"}))
    env.fake.script(PATHS["b"], error(503, {"retry-after": "0.2"}))
    since = len(env.fake.requests)
    outcome = await ask(env, "g", streaming)
    assert outcome.error is None, outcome.error
    assert outcome.provider == "b"
    assert outcome.attempts == [("a", "UNAVAILABLE"), ("b", "UNAVAILABLE"), ("b", "ok")]
    assert (env.seen("a", "m", since), env.seen("b", "m", since)) == (1, 2)


@pytest.mark.parametrize("streaming", [True, False], ids=["stream", "unary"])
@pytest.mark.parametrize(
    ("status", "code"),
    [(500, grpc.StatusCode.UNAVAILABLE), (429, grpc.StatusCode.RESOURCE_EXHAUSTED)],
)
async def test_do_not_retry_on_the_only_deployment_sends_one_request_and_no_retry_delay(
    env: Env, streaming: bool, status: int, code: grpc.StatusCode
) -> None:
    # The vendor's retry-after would otherwise be waited out (within max_retry_wait_s) and retried,
    # and told to the client.
    model = f"only-{status}-{'stream' if streaming else 'unary'}"
    env.fake.script(PATHS["a"], error(status, {"X-Should-Retry": "false", "retry-after": "1"}))
    since = len(env.fake.requests)
    outcome = await ask(env, f"a/{model}", streaming)
    assert outcome.error is not None
    assert outcome.error.code() == code
    assert f"upstream said {status}" in (outcome.error.details() or "")
    trailers = dict(outcome.error.trailing_metadata() or ())
    assert "retry-after-ms" not in trailers
    assert "grpc-status-details-bin" not in trailers  # no google.rpc.RetryInfo either
    assert env.seen("a", model, since) == 1


@pytest.mark.parametrize("streaming", [True, False], ids=["stream", "unary"])
@pytest.mark.parametrize("status", [400, 404, 422])
async def test_a_final_status_that_says_retry_is_retried(env: Env, streaming: bool, status: int) -> None:
    model = f"final-{status}-{'stream' if streaming else 'unary'}"
    env.fake.script(PATHS["a"], error(status, {"x-should-retry": "true"}))
    since = len(env.fake.requests)
    outcome = await ask(env, f"a/{model}", streaming)
    assert outcome.error is None, outcome.error
    assert outcome.attempts[-1] == ("a", "ok")
    assert len(outcome.attempts) == 2
    assert env.seen("a", model, since) == 2


HEADERS: dict[str, dict[str, str]] = {
    "absent": {},
    "true": {"x-should-retry": "true"},
    "false": {"x-should-retry": "false"},
    "false, name in capitals": {"X-SHOULD-RETRY": "false"},
    "TRUE": {"x-should-retry": "TRUE"},
    "garbage": {"x-should-retry": "yes please"},
    "empty": {"x-should-retry": ""},
}
STATUSES = [400, 403, 404, 408, 409, 422, 429, 500, 503, 529]


def sdks_retry(status: int, headers: dict[str, str]) -> bool:
    """Whether the openai and anthropic SDKs retry this answer (they must agree: one oracle)."""
    response = httpx2.Response(status, headers=headers)
    base = "http://127.0.0.1:9"  # never called
    by_openai = openai.OpenAI(api_key=KEY, base_url=base)._should_retry(response)
    by_anthropic = anthropic.Anthropic(api_key=KEY, base_url=base)._should_retry(response)
    assert by_openai == by_anthropic
    return by_openai


@pytest.mark.parametrize("label", list(HEADERS))
@pytest.mark.parametrize("status", STATUSES)
async def test_the_gateway_retries_the_same_deployment_exactly_when_the_vendors_sdks_do(
    env: Env, status: int, label: str
) -> None:
    headers = HEADERS[label]
    model = f"oracle-{status}-{label}"
    env.fake.script(PATHS["a"], error(status, headers))  # then the fake's answer
    since = len(env.fake.requests)
    await ask(env, f"a/{model}", streaming=False)
    retried = env.seen("a", model, since) > 1
    assert retried == sdks_retry(status, headers)
