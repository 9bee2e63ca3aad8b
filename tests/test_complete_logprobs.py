"""CompleteRequest.logprobs: a completion's token log-probabilities, as a chat's (proto field 12,
CompleteResponse.logprobs field 4, CompleteStream's TextDelta.logprobs). Asked, the completion runs
as the one-message chat (server/scored_completion.py): the vendor gets the chat request the SDK
sends, the answer carries the entries the SDK reads, and a provider without logprobs refuses
FAILED_PRECONDITION before anything is sent, as Chat does. The Python and Node clients pass it on."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from conftest import run_gateway
from logprobs_support import CHAT_PATH, TOP, Entry, Env, logprobs_env
from test_node_client import run_node
from upstream_support import Collected

from provider_gateway.v1 import provider_service_pb2 as pb
from provider_gateway_client import GatewayClient
from provider_gateway_client import pb as client_pb

pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")


@pytest.fixture(scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    async with logprobs_env(tmp_path_factory.mktemp("keys")) as env:
        yield env


def ask(model: str, top: int = TOP, **fields: Any) -> pb.CompleteRequest:
    options = pb.LogprobsOptions(enabled=True, top_logprobs=top)
    return pb.CompleteRequest(model=model, prompt="Say hello", logprobs=options, **fields)


def ours(entries: Any) -> list[Entry]:
    def one(e: pb.TokenLogprob) -> tuple[str, float, bytes | None]:
        return e.token, e.logprob, e.bytes if e.HasField("bytes") else None

    return [(*one(e), [one(t) for t in e.top_logprobs]) for e in entries]


def openai_sdk(entries: Any) -> list[Entry]:
    def one(e: Any) -> tuple[str, float, bytes | None]:
        return e.token, e.logprob, None if e.bytes is None else bytes(e.bytes)

    return [(*one(e), [one(t) for t in e.top_logprobs]) for e in entries]


async def complete_stream(stub: Any, request: pb.CompleteRequest) -> Collected:
    got = Collected()
    try:
        async for event in stub.CompleteStream(request, timeout=10):
            got.events.append(event)
    except grpc.aio.AioRpcError as error:
        got.error = error
    return got


async def test_a_completion_carries_the_logprobs_the_sdk_reads(env: Env) -> None:
    response = await env.stub.Complete(ask("oa/gpt-4o", temperature=0.5, max_tokens=20), timeout=10)
    sent = env.fake.last(CHAT_PATH).json()
    assert (sent["logprobs"], sent["top_logprobs"]) == (True, TOP)
    assert sent["messages"] == [{"role": "user", "content": "Say hello"}]
    assert (sent["temperature"], sent.get("max_completion_tokens", sent.get("max_tokens"))) == (0.5, 20)
    answer = await env.sdk.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Say hello"}], logprobs=True, top_logprobs=TOP
    )
    logprobs = answer.choices[0].logprobs
    assert logprobs is not None
    assert logprobs.content is not None
    assert ours(response.logprobs) == openai_sdk(logprobs.content)
    assert response.text == answer.choices[0].message.content
    assert "".join(e.token for e in response.logprobs) == response.text
    assert (response.finish.provider, response.usage.output_tokens) == ("oa", answer.usage.completion_tokens)


async def test_a_completion_stream_carries_the_same_entries_on_its_text(env: Env) -> None:
    unary = await env.stub.Complete(ask("oa/gpt-4o"), timeout=10)
    got = await complete_stream(env.stub, ask("oa/gpt-4o"))
    assert got.error is None, got.error
    deltas = got.of("text_delta")
    assert ours(e for d in deltas for e in d.logprobs) == ours(unary.logprobs)
    assert "".join(d.text for d in deltas) == unary.text
    assert got.events[-1].HasField("finish")


async def test_a_completion_without_logprobs_has_none_and_keeps_its_path(env: Env) -> None:
    response = await env.stub.Complete(pb.CompleteRequest(model="oa/gpt-4o", prompt="Say hello"), timeout=10)
    assert response.text
    assert not response.logprobs
    assert "logprobs" not in env.fake.last(CHAT_PATH).json()


@pytest.mark.parametrize(
    ("model", "why"),
    [("ant/claude-sonnet-4-5", "Claude has no logprobs"), ("groq/llama-3.3-70b-versatile", "Groq")],
)
async def test_a_provider_without_logprobs_refuses_the_completion_naming_the_field(
    env: Env, model: str, why: str
) -> None:
    before = len(env.fake.requests)
    for outcome in (await _unary_outcome(env, model), await complete_stream(env.stub, ask(model))):
        assert outcome.error is not None
        assert outcome.error.code() == grpc.StatusCode.FAILED_PRECONDITION
        details = outcome.error.details() or ""
        for named in ("logprobs", model.split("/")[1], why):
            assert named in details, details
    assert len(env.fake.requests) == before  # refused before anything was sent


async def _unary_outcome(env: Env, model: str) -> Collected:
    try:
        await env.stub.Complete(ask(model), timeout=10)
    except grpc.aio.AioRpcError as error:
        return Collected(error=error)
    return Collected()


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        (pb.LogprobsOptions(enabled=True, top_logprobs=21), "between 0 and 20"),
        (pb.LogprobsOptions(top_logprobs=5), "set logprobs.enabled"),
    ],
)
async def test_top_logprobs_out_of_range_or_without_enabled_is_invalid(
    env: Env, options: pb.LogprobsOptions, complaint: str
) -> None:
    request = pb.CompleteRequest(model="oa/gpt-4o", prompt="Say hello", logprobs=options)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await env.stub.Complete(request, timeout=10)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert complaint in (caught.value.details() or "")


async def test_the_python_client_passes_logprobs_on_for_a_completion() -> None:
    options = client_pb.LogprobsOptions(enabled=True, top_logprobs=2)
    async with run_gateway() as gateway, GatewayClient(gateway.target) as client:
        whole = await client.complete("mock/echo", "score me", logprobs=options)
        async with client.complete_stream("mock/echo", "score me", logprobs=options) as stream:
            streamed = await stream.final()
    assert whole.logprobs
    assert "".join(e.token for e in whole.logprobs) == whole.text
    assert all(len(e.top_logprobs) == 2 for e in whole.logprobs)
    assert streamed.logprobs == whole.logprobs


NODE_SCRIPT = """
const { GatewayClient } = require('.');
const client = new GatewayClient(process.argv[1]);
(async () => {
  const request = { model: 'mock/echo', prompt: 'score me', logprobs: { enabled: true, topLogprobs: 2 } };
  const unary = await client.complete(request);
  const final = await client.completeStream(request).finalMessage();
  client.close();
  const entries = (list) => list.map((e) => [e.token, e.logprob, e.topLogprobs.length]);
  process.stdout.write(JSON.stringify({ text: unary.text, unary: entries(unary.logprobs), streamed: entries(final.logprobs) }));
})().catch((error) => { process.stderr.write(String(error)); process.exit(1); });
"""


async def test_the_node_client_passes_logprobs_on_for_a_completion() -> None:
    async with run_gateway() as gateway:
        code, out, err = await run_node("-e", NODE_SCRIPT, gateway.target)
    assert code == 0, err
    result = json.loads(out)
    assert result["unary"], "no logprobs"
    assert "".join(token for token, _, _ in result["unary"]) == result["text"]
    assert all(top == 2 for _, _, top in result["unary"])
    assert result["streamed"] == result["unary"]
