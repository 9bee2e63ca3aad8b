"""A vendor's `x-should-retry: false` reaches the gateway's clients: once no deployment is left that
could take the request, the gateway ends the call with gRFC A6's `grpc-retry-pushback-ms: -1`, and
the Python and Node clients (and gRPC's own retryPolicy) then make no retry of their own.

A real gateway over a real channel, against a fake OpenAI-style upstream whose requests are counted.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from conftest import RunningGateway, run_gateway
from test_node_client import run_node
from test_node_retries import CALL_SCRIPT
from upstream_support import chat_stream, user

from provider_gateway.fakes import FakeUpstream, Reply, kinds
from provider_gateway.fakes.server import RecordedRequest
from provider_gateway.v1 import provider_service_pb2 as pb
from provider_gateway_client import GatewayClient, GatewayError, SyncGatewayClient
from provider_gateway_client.errors import gateway_error
from provider_gateway_client.retries import RetryPolicy

KEY = "sk-test-0123456789abcdef"
# a and b answer as scripted (then as OpenAI does); r fails every request, as its model's name says.
PROVIDERS = ("a", "b", "r")
PUSHBACK = "grpc-retry-pushback-ms"
# The gateway's own retries with a backoff too short to notice; a breaker that never opens, as
# tests share the gateway. Groups fail over from a to b: `g`, and `q` for a final error (to leave
# g's deployments as they were).
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
[groups.q]
deployments = [{ provider = "a", model = "q", weight = 1 }, { provider = "b", model = "q", weight = 0 }]
"""
# gRPC's own retries, as a channel's service config asks for them.
GRPC_RETRIES = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{"service": "provider_gateway.v1.ProviderService"}],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.01s",
                    "maxBackoff": "0.05s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"],
                },
            }
        ]
    }
)


@dataclass
class Env:
    fake: FakeUpstream
    gateway: RunningGateway

    def seen(self, provider: str, model: str, since: int, what: str = "chat/completions") -> int:
        """Requests to `provider` for `model` since the fake had seen `since` requests."""
        path = f"/{provider}/v1/{what}"
        return sum(r.path == path and r.json()["model"] == model for r in self.fake.requests[since:])

    def refuse(
        self, provider: str, status: int = 503, what: str = "chat/completions", **headers: str
    ) -> None:
        """The next request to `provider` fails with `status` and `x-should-retry: false`."""
        self.fake.script(f"/{provider}/v1/{what}", refusal(status, {"x-should-retry": "false", **headers}))


def refusal(status: int, headers: dict[str, str]) -> Reply:
    return Reply.error(status, {"error": {"message": f"upstream said {status}"}}, headers)


def refuse_by_model(request: RecordedRequest) -> Reply:
    """r's answer to every request: "refuse-429-..." a 429 and "refuse-..." a 503 that say
    `x-should-retry: false`, anything else a plain 503."""
    model = str(request.json()["model"])
    status = 429 if model.startswith("refuse-429") else 503
    return refusal(status, {"x-should-retry": "false"} if model.startswith("refuse") else {})


@pytest.fixture(scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    key_file = Path(tmp_path_factory.mktemp("keys")) / "key"
    key_file.write_text(KEY)
    async with FakeUpstream() as fake:
        fake.on("POST", "/r/v1/chat/completions", refuse_by_model)
        kinds.openai(fake)  # what a request meets once the scripted replies are spent: an answer
        providers = "".join(
            f'[providers.{name}]\nkind = "openai"\nbase_url = "{fake.url}/{name}/v1"\n'
            f'api_key_file = "{key_file}"\n'
            for name in PROVIDERS
        )
        async with run_gateway(providers + ROUTING) as gateway:
            yield Env(fake, gateway)


def chat(model: str) -> pb.ChatRequest:
    return pb.ChatRequest(model=model, messages=[user("Hi")])


async def failed_chat(env: Env, model: str, streaming: bool) -> grpc.aio.AioRpcError:
    if streaming:
        got = await chat_stream(env.gateway.stub, chat(model))
        assert got.error is not None
        return got.error
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await env.gateway.stub.Chat(chat(model), timeout=20)
    return info.value


def trailers(error: grpc.aio.AioRpcError) -> dict[str, str | bytes]:
    return dict(error.trailing_metadata() or ())


@pytest.mark.parametrize("streaming", [True, False], ids=["stream", "unary"])
@pytest.mark.parametrize(
    ("status", "code"),
    [(503, grpc.StatusCode.UNAVAILABLE), (429, grpc.StatusCode.RESOURCE_EXHAUSTED)],
)
async def test_the_only_deployment_saying_do_not_retry_tells_the_client_not_to(
    env: Env, streaming: bool, status: int, code: grpc.StatusCode
) -> None:
    model = f"only-{status}-{'stream' if streaming else 'unary'}"
    env.refuse("a", status, **{"retry-after": "1"})
    since = len(env.fake.requests)
    error = await failed_chat(env, f"a/{model}", streaming)
    assert error.code() == code
    assert f"upstream said {status}" in (error.details() or "")
    said = trailers(error)
    assert said.get(PUSHBACK) == "-1"
    assert "retry-after-ms" not in said  # and no RetryInfo: no wait makes a retry worth it
    assert "grpc-status-details-bin" not in said
    assert env.seen("a", model, since) == 1


async def test_every_deployment_saying_do_not_retry_tells_the_client_not_to(env: Env) -> None:
    env.refuse("a")
    env.refuse("b")
    since = len(env.fake.requests)
    error = await failed_chat(env, "g", streaming=False)
    assert trailers(error).get(PUSHBACK) == "-1"
    assert (env.seen("a", "m", since), env.seen("b", "m", since)) == (1, 1)


async def test_an_error_the_gateway_never_fails_over_tells_the_client_not_to_retry(env: Env) -> None:
    # A bad request is final at the gateway: b is not tried, and a client's retry would meet a again.
    # (A spent quota is not: it fails over, tests/test_out_of_credit.py.)
    env.fake.script("/a/v1/chat/completions", refusal(400, {"x-should-retry": "false"}))
    since = len(env.fake.requests)
    error = await failed_chat(env, "q", streaming=False)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert trailers(error).get(PUSHBACK) == "-1"
    assert (env.seen("a", "q", since), env.seen("b", "q", since)) == (1, 0)


async def test_a_deployment_that_may_answer_later_keeps_the_client_retrying(env: Env) -> None:
    # a asks for a wait longer than the gateway waits ([routing] max_retry_wait_s, 2 s), then b says
    # "do not retry": b's error is the last, but a client's retry after the wait could reach a.
    env.fake.script("/a/v1/chat/completions", refusal(503, {"retry-after": "30"}))
    env.refuse("b")
    since = len(env.fake.requests)
    error = await failed_chat(env, "g", streaming=False)
    assert "upstream said 503" in (error.details() or "")
    said = trailers(error)
    assert PUSHBACK not in said
    assert int(said["retry-after-ms"]) > 25_000  # a's 30 s, less the moments since it was asked
    assert (env.seen("a", "m", since), env.seen("b", "m", since)) == (1, 1)


async def test_an_embedding_the_only_deployment_refused_tells_the_client_not_to_retry(env: Env) -> None:
    env.refuse("a", what="embeddings")
    since = len(env.fake.requests)
    request = pb.EmbedRequest(model="a/text-embedding-3-small", inputs=["Hi"])
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await env.gateway.stub.Embed(request, timeout=20)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert trailers(info.value).get(PUSHBACK) == "-1"
    assert env.seen("a", "text-embedding-3-small", since, "embeddings") == 1


async def test_grpcs_own_retry_policy_obeys_the_pushback(env: Env) -> None:
    # Without it, this channel would send the call 4 times (maxAttempts).
    env.refuse("a")
    since = len(env.fake.requests)
    options = [("grpc.service_config", GRPC_RETRIES), ("grpc.enable_retries", 1)]
    async with grpc.aio.insecure_channel(env.gateway.target, options=options) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await channel.unary_unary(
                "/provider_gateway.v1.ProviderService/Chat",
                request_serializer=pb.ChatRequest.SerializeToString,
                response_deserializer=pb.ChatResponse.FromString,
            )(chat("a/grpc-retries"), timeout=20)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert env.seen("a", "grpc-retries", since) == 1


async def python_client_error(env: Env, how: str, model: str) -> GatewayError:
    """The error of one call of the Python client with `max_retries=2`, `how`: async unary or
    stream, or sync."""
    if how == "sync":
        with SyncGatewayClient(env.gateway.target, max_retries=2) as sync_client:
            try:
                await asyncio.to_thread(sync_client.chat, model, "Hi", timeout=20)
            except GatewayError as error:
                return error
    else:
        async with GatewayClient(env.gateway.target, max_retries=2) as client:
            try:
                if how == "stream":
                    await client.chat_stream(model, "Hi", timeout=20).final()
                else:
                    await client.chat(model, "Hi", timeout=20)
            except GatewayError as error:
                return error
    raise AssertionError("the call succeeded")


@pytest.mark.parametrize("how", ["unary", "stream", "sync"])
async def test_the_python_client_makes_one_call_when_told_not_to_retry(env: Env, how: str) -> None:
    # Before the pushback: 3 calls (max_retries + 1), each sent to the vendor that said not to.
    model = f"refuse-python-{how}"
    since = len(env.fake.requests)
    error = await python_client_error(env, how, f"r/{model}")
    assert error.code == grpc.StatusCode.UNAVAILABLE
    assert error.do_not_retry
    assert env.seen("r", model, since) == 1


async def test_the_python_client_still_retries_what_the_vendor_did_not_refuse(env: Env) -> None:
    since = len(env.fake.requests)
    error = await python_client_error(env, "unary", "r/plain-python")
    assert not error.do_not_retry
    # The gateway's own 3 attempts ([routing] retries = 2) for each of the client's 3.
    assert env.seen("r", "plain-python", since) == 9


@dataclass
class FailedCall:
    """What `gateway_error` reads of a grpc.RpcError."""

    trailing: tuple[tuple[str, str], ...]

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return "down"

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.trailing


@pytest.mark.parametrize(
    ("pushback", "retry_after", "do_not_retry"),
    [
        ("-1", None, True),
        ("abc", None, True),
        ("4294967296", None, True),
        ("1500", 1.5, False),
        ("0", 0.0, False),
    ],
)
def test_the_python_client_reads_a_pushback_as_a_wait_or_a_refusal(
    pushback: str, retry_after: float | None, do_not_retry: bool
) -> None:
    error = gateway_error(FailedCall(((PUSHBACK, pushback),)))  # type: ignore[arg-type]
    assert (error.retry_after, error.do_not_retry) == (retry_after, do_not_retry)
    wait = RetryPolicy(max_retries=2).wait_before(0, error, None)
    assert (wait is None) == do_not_retry
    if retry_after:
        assert wait is not None
        assert wait >= retry_after  # the wait asked for, plus a little jitter


async def node_call(env: Env, kind: str, model: str) -> dict[str, object]:
    code, out, err = await run_node("-e", CALL_SCRIPT, env.gateway.target, "2", kind, model, "20000")
    assert code == 0, err
    return dict(json.loads(out))


@pytest.mark.parametrize("kind", ["unary", "stream"])
async def test_the_node_client_makes_one_call_when_told_not_to_retry(env: Env, kind: str) -> None:
    model = f"refuse-429-node-{kind}"
    since = len(env.fake.requests)
    result = await node_call(env, kind, f"r/{model}")
    assert (result["error"], result["code"], result["doNotRetry"]) == (
        "RateLimitError",
        "RESOURCE_EXHAUSTED",
        True,
    )
    assert env.seen("r", model, since) == 1


PUSHBACK_SCRIPT = """
const { gatewayError, RetryPolicy, grpc } = require('.');
const policy = new RetryPolicy({ maxRetries: 2 });
const out = {};
for (const value of JSON.parse(process.argv[1])) {
  const metadata = new grpc.Metadata();
  metadata.set('grpc-retry-pushback-ms', value);
  const error = gatewayError({ code: grpc.status.UNAVAILABLE, details: 'down', metadata });
  out[value] = [error.retryAfter, error.doNotRetry, policy.waitBeforeMs(0, error, null)];
}
process.stdout.write(JSON.stringify(out));
"""


async def test_the_node_client_reads_a_pushback_as_a_wait_or_a_refusal() -> None:
    code, out, err = await run_node(
        "-e", PUSHBACK_SCRIPT, json.dumps(["-1", "abc", "4294967296", "1500", "0"])
    )
    assert code == 0, err
    result = json.loads(out)
    for refused in ("-1", "abc", "4294967296"):
        assert result[refused] == [None, True, None]
    retry_after, do_not_retry, wait = result["1500"]
    assert (retry_after, do_not_retry) == (1.5, False)
    assert 1500 <= wait <= 1650  # the wait asked for, plus a little jitter
    assert result["0"][:2] == [0, False]
    assert result["0"][2] is not None
