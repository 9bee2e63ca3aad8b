"""`maxRetries` in the Node client: the Python client's policy (tests/test_python_retries.py) against a
real gateway. UNAVAILABLE and rate limits are retried (after the RetryInfo delay), a stream only before
its first event, a message over the size limit and everything else never. The gateway's own retries
are off, so every attempt the mock counts is one the client made."""

from __future__ import annotations

import json

import pytest
from test_node_client import run_node
from test_python_retries import CONFIG

from provider_gateway.errors import ErrorKind
from provider_gateway.errors import GatewayError as ServerError
from provider_gateway.providers.mock import MockScript

# Runs one call (argv: target, maxRetries, kind, model, deadlineMs) and prints what happened.
CALL_SCRIPT = """
const { GatewayClient } = require('.');
const [target, maxRetries, kind, model, deadlineMs] = process.argv.slice(1);
const client = new GatewayClient(target, { maxRetries: Number(maxRetries), deadlineMs: Number(deadlineMs) });
const texts = [];
async function call() {
  if (kind === 'unary') return (await client.chat({ model, prompt: 'Hi', maxTokens: 3 })).text;
  const stream = client.chatStream({ model, prompt: 'Hi', maxTokens: 3 });
  stream.on('text', (delta) => texts.push(delta));
  return stream.finalText();
}
call()
  .then((text) => ({ text }))
  .catch((error) => ({
    error: error.name, code: error.codeName, retryAfter: error.retryAfter, details: error.details,
    doNotRetry: error.doNotRetry,
  }))
  .then((out) => { client.close(); process.stdout.write(JSON.stringify({ ...out, texts })); });
"""


@pytest.fixture
async def gw(gateway_factory):
    async with gateway_factory(CONFIG) as running:
        yield running


async def call(gw, kind: str, model: str, max_retries: int = 2, deadline_ms: int = 30_000) -> dict:
    code, out, err = await run_node(
        "-e", CALL_SCRIPT, gw.target, str(max_retries), kind, model, str(deadline_ms)
    )
    assert code == 0, err
    return dict(json.loads(out))


def started(gw) -> int:
    return int(gw.provider("mock").stats.started)


async def test_a_rate_limited_call_is_tried_max_retries_more_times(gw) -> None:
    result = await call(gw, "unary", "mock/limited", max_retries=2)
    assert (result["error"], result["code"], result["retryAfter"]) == (
        "RateLimitError",
        "RESOURCE_EXHAUSTED",
        0.04,
    )
    assert started(gw) == 3


async def test_max_retries_zero_makes_one_attempt(gw) -> None:
    result = await call(gw, "unary", "mock/limited", max_retries=0)
    assert result["error"] == "RateLimitError"
    assert started(gw) == 1


async def test_a_retry_that_succeeds_returns_the_answer(gw) -> None:
    down = ServerError(ErrorKind.UNAVAILABLE, "blip", provider="mock")
    gw.provider("mock").push(MockScript(events=[], error=down))
    gw.provider("mock").push(MockScript(events=[], error=down))
    result = await call(gw, "unary", "mock/echo", max_retries=2)
    assert result["text"] == "Mock answer: Hi"
    assert started(gw) == 3


async def test_an_unavailable_stream_is_retried_before_its_first_event(gw) -> None:
    result = await call(gw, "stream", "mock/down", max_retries=2)
    assert result["error"] == "UnavailableError"
    assert "upstream is down" in result["details"]
    assert started(gw) == 3


async def test_a_stream_that_failed_before_output_then_succeeds_streams_once(gw) -> None:
    gw.provider("mock").push(MockScript(events=[], error=ServerError(ErrorKind.UNAVAILABLE, "blip")))
    result = await call(gw, "stream", "mock/echo", max_retries=1)
    assert result["text"] == "".join(result["texts"]) == "Mock answer: Hi"
    assert started(gw) == 2


async def test_a_stream_that_failed_after_output_is_not_retried(gw) -> None:
    result = await call(gw, "stream", "mock/cut", max_retries=2)
    assert result["error"] == "UnavailableError"
    assert "".join(result["texts"]) == "Mock answer:"  # shown once, never repeated by a retry
    assert started(gw) == 1


async def test_a_cancel_the_client_did_not_ask_for_is_retried(gw) -> None:
    result = await call(gw, "unary", "mock/cancelled", max_retries=2)
    assert (result["error"], result["code"]) == ("GatewayError", "CANCELLED")
    assert started(gw) == 3


async def test_a_wait_longer_than_the_deadline_is_not_taken(gw) -> None:
    result = await call(gw, "unary", "mock/held", max_retries=5, deadline_ms=5_000)  # 30 s asked for
    assert (result["error"], result["retryAfter"]) == ("RateLimitError", 30)
    assert started(gw) == 1


async def test_an_other_error_is_not_retried(gw) -> None:
    result = await call(gw, "unary", "mock/no-such-model", max_retries=2)
    assert result["error"] == "NotFoundError"


SIZE_SCRIPT = """
const { GatewayClient } = require('.');
const client = new GatewayClient(process.argv[1], { channelOptions: { 'grpc.max_receive_message_length': 64 } });
client.chat({ model: 'mock/echo', prompt: 'an answer longer than sixty-four bytes, once wrapped in protobuf' })
  .then(() => 'answered', (error) => `${error.name} ${error.codeName} ${error.details}`)
  .then((out) => { client.close(); process.stdout.write(out); });
"""


async def test_a_message_over_the_size_limit_is_not_retried(gw) -> None:
    code, out, err = await run_node("-e", SIZE_SCRIPT, gw.target)
    assert code == 0, err
    assert out.startswith("RateLimitError RESOURCE_EXHAUSTED")
    assert "larger than max" in out
    assert started(gw) == 1  # the same answer would be too large again


ABORT_SCRIPT = """
const { GatewayClient } = require('.');
const client = new GatewayClient(process.argv[1], { maxRetries: 5 });
const abort = new AbortController();
const started = Date.now();
setTimeout(() => abort.abort(), 500);
client.chat({ model: 'mock/echo', prompt: 'Hi' }, { signal: abort.signal, deadlineMs: 120_000 })
  .then(() => 'answered', (error) => `${error.name} ${error.codeName} ${Date.now() - started < 15_000}`)
  .then((out) => { client.close(); process.stdout.write(out); });
"""


async def test_aborting_during_the_wait_before_a_retry_ends_the_call(gw) -> None:
    # A rate limit asking for 20 s: the client is waiting to retry when the abort comes.
    limited = ServerError(ErrorKind.RESOURCE_EXHAUSTED, "slow down", provider="mock", retry_after=20.0)
    gw.provider("mock").push(MockScript(events=[], error=limited))
    code, out, err = await run_node("-e", ABORT_SCRIPT, gw.target)
    assert code == 0, err
    assert out == "GatewayError CANCELLED true"  # ended by the abort, not after the 20 s wait
    assert started(gw) == 1


POLICY_SCRIPT = """
const { RetryPolicy, GatewayError, grpc } = require('.');
const { status } = grpc;
const policy = new RetryPolicy({ maxRetries: 2 });
const error = (code, details, retryAfter = null) => new GatewayError(code, details, retryAfter);
const limited = error(status.RESOURCE_EXHAUSTED, 'later', 1.5);
const down = error(status.UNAVAILABLE, 'down');
const out = {
  limited: policy.waitBeforeMs(0, limited, null),
  usedUp: policy.waitBeforeMs(2, limited, null),
  notFound: policy.waitBeforeMs(0, error(status.NOT_FOUND, 'no such model'), null),
  internal: policy.waitBeforeMs(0, error(status.INTERNAL, 'x'), null),
  tooLong: policy.waitBeforeMs(0, error(status.RESOURCE_EXHAUSTED, 'x', 3600), null),
  tooLarge: policy.waitBeforeMs(0, error(status.RESOURCE_EXHAUSTED, 'Received message larger than max (9 vs 4)'), null),
  pastDeadline: policy.waitBeforeMs(0, limited, Date.now() + 1000),
  serverCancel: policy.waitBeforeMs(0, error(status.CANCELLED, 'CANCELLED'), null),
  localCancel: policy.waitBeforeMs(0, error(status.CANCELLED, 'Cancelled on client'), null),
  backoffs: Array.from({ length: 50 }, () => policy.waitBeforeMs(1, down, null)),
};
let badRetries = null;
try { new RetryPolicy({ maxRetries: -1 }); } catch (e) { badRetries = e.message; }
process.stdout.write(JSON.stringify({ ...out, badRetries }));
"""


async def test_the_policy_retries_only_what_is_safe() -> None:
    code, out, err = await run_node("-e", POLICY_SCRIPT)
    assert code == 0, err
    result = json.loads(out)
    assert 1500 <= result["limited"] <= 1650  # the gateway's delay, plus a little jitter
    assert result["usedUp"] is None
    assert result["notFound"] is None
    assert result["internal"] is None
    assert result["tooLong"] is None  # over a minute is the caller's decision
    assert result["tooLarge"] is None
    assert result["pastDeadline"] is None
    assert result["serverCancel"] is not None  # ended on the server's side before it ran
    assert result["localCancel"] is None  # the caller's own abort
    assert all(500 <= wait <= 1000 for wait in result["backoffs"])  # 2nd retry: 1 s, halved at most
    assert len(set(result["backoffs"])) > 1  # jitter: clients that failed together do not retry together
    assert "maxRetries" in result["badRetries"]
