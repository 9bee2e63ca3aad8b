"""The Node client's stream helper (ChatStream: textStream, on(), finalMessage()) against a real
gateway: a streamed answer accumulates to what the unary call returns, tool calls and reasoning blocks
included; leaving early cancels the provider's work; finalMessage() never passes part of an answer
(a stream left early, or one that ended without its finish) off as the whole; and index.d.ts
type-checks real use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from client_fakes import raw_content, scripted_gateway, text
from rpc_util import wait_for
from test_node_client import NODE_DIR, run_node
from test_python_sdk import push_reasoning_blocks

from provider_gateway.v1 import provider_service_pb2 as pb

SAME_AS_UNARY_SCRIPT = """
const { GatewayClient } = require('.');
const client = new GatewayClient(process.argv[1]);
const weather = { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } };
async function both(request) {
  const unary = await client.chat(request);
  const stream = client.chatStream(request);
  const seen = { texts: [], snapshots: [], reasoning: [], toolCalls: [], events: 0 };
  stream
    .on('text', (delta, soFar) => { seen.texts.push(delta); seen.snapshots.push(soFar); })
    .on('reasoning', (delta) => seen.reasoning.push(delta))
    .on('toolCall', (call) => seen.toolCalls.push(call))
    .on('event', () => seen.events++);
  const pieces = [];
  for await (const text of stream.textStream) pieces.push(text);
  const final = await stream.finalMessage();
  return { unary, final, pieces, seen };
}
(async () => {
  const out = {
    tools: await both({ model: 'mock/tools', prompt: 'Weather in Paris?', tools: [weather] }),
    reasoner: await both({ model: 'mock/reasoner', prompt: 'Why?', maxTokens: 3 }),
  };
  client.close();
  process.stdout.write(JSON.stringify(out));
})().catch((error) => { process.stderr.write(String(error.stack)); process.exit(1); });
"""


def comparable(answer: dict) -> dict:
    """What a streamed answer and a unary one must agree on."""
    return {
        "text": answer["text"],
        "reasoning": answer["reasoning"],
        "reasoningParts": answer["reasoningParts"],
        "toolCalls": [(c["id"], c["name"], c["argumentsJson"], c["incomplete"]) for c in answer["toolCalls"]],
        "usage": answer["usage"],
        "reason": answer["finish"]["reason"],
        "attempts": [(a["provider"], a["model"], a["outcome"]) for a in answer["finish"]["attempts"]],
    }


async def test_final_message_is_what_the_unary_call_returns(gateway) -> None:
    code, out, err = await run_node("-e", SAME_AS_UNARY_SCRIPT, gateway.target)
    assert code == 0, err
    result = json.loads(out)
    for case in result.values():
        assert comparable(case["final"]) == comparable(case["unary"])
        assert "".join(case["pieces"]) == case["final"]["text"] == "".join(case["seen"]["texts"])
        assert case["seen"]["snapshots"][-1] == case["final"]["text"]
        assert case["seen"]["events"] >= len(case["pieces"]) + 2  # usage and finish too
    tools = result["tools"]
    (call,) = tools["final"]["toolCalls"]
    assert call["arguments"] == {"city": "Paris", "unit": "celsius"}
    assert tools["seen"]["toolCalls"] == [call]
    assert tools["final"]["finish"]["reason"] == "FINISH_REASON_TOOL_CALLS"
    reasoner = result["reasoner"]
    assert reasoner["final"]["reasoning"].startswith("Thinking")
    assert "".join(reasoner["seen"]["reasoning"]) == reasoner["final"]["reasoning"]
    assert reasoner["final"]["text"] == "Mock answer: Why?"


REASONING_SCRIPT = """
const { GatewayClient, assistantTurn } = require('.');
const client = new GatewayClient(process.argv[1]);
(async () => {
  const unary = await client.chat({ model: 'mock/echo', prompt: 'Hi' });
  const streamed = await client.chatStream({ model: 'mock/echo', prompt: 'Hi' }).finalMessage();
  client.close();
  process.stdout.write(JSON.stringify({
    unary: unary.reasoningParts, streamed: streamed.reasoningParts,
    unaryTurn: assistantTurn(unary), streamedTurn: assistantTurn(streamed),
  }));
})().catch((error) => { process.stderr.write(String(error.stack)); process.exit(1); });
"""


async def test_reasoning_blocks_keep_signature_redacted_and_id_for_the_next_turn(gateway) -> None:
    push_reasoning_blocks(gateway, times=2)
    code, out, err = await run_node("-e", REASONING_SCRIPT, gateway.target)
    assert code == 0, err
    result = json.loads(out)
    assert (
        result["streamed"]
        == result["unary"]
        == [
            {"text": "First thought", "signature": "sig-1", "redacted": False, "id": "", "issuer": "mock"},
            {"text": "", "signature": "ENCRYPTED", "redacted": True, "id": "", "issuer": "mock"},
            {"text": "summary", "signature": "", "redacted": False, "id": "rs_1", "issuer": "mock"},
        ]
    )
    assert result["streamedTurn"] == result["unaryTurn"]
    assert result["unaryTurn"]["content"][-1] == {"text": "answer"}


LEAVE_SCRIPT = """
const { GatewayClient } = require('.');
const client = new GatewayClient(process.argv[1]);
(async () => {
  let first = null;
  for await (const text of client.chatStream({ model: 'mock/dribble', prompt: 'Hi' }).textStream) {
    first = text;
    break;
  }
  const stream = client.chatStream({ model: 'mock/dribble', prompt: 'Hi' });
  stream.on('text', () => stream.cancel());
  const cancelled = await stream.finalMessage().then(() => 'ended', (error) => error.codeName);
  client.close();
  process.stdout.write(JSON.stringify({ first, cancelled }));
})().catch((error) => { process.stderr.write(String(error.stack)); process.exit(1); });
"""


async def test_leaving_text_stream_early_or_cancel_stops_the_providers_work(gateway_factory) -> None:
    async with gateway_factory("[providers.mock.models.dribble]\ntokens = 200\ntoken_delay_ms = 100\n") as gw:
        code, out, err = await run_node("-e", LEAVE_SCRIPT, gw.target)
        assert code == 0, err
        assert json.loads(out) == {"first": "Mock", "cancelled": "CANCELLED"}
        stats = gw.provider("mock").stats
        await wait_for(stats.cancelled_event)
        assert stats.completed == 0


FINAL_AFTER_LEAVING_SCRIPT = """
const { GatewayClient } = require('.');
const client = new GatewayClient(process.argv[1]);
(async () => {
  const stream = client.chatStream({ model: 'mock/dribble', prompt: 'Hi' });
  for await (const event of stream) if (event.event === 'textDelta') break;
  const after = await stream.finalMessage().then((answer) => answer, (error) => error.codeName);
  client.close();
  process.stdout.write(JSON.stringify(after));
})().catch((error) => { process.stderr.write(String(error.stack)); process.exit(1); });
"""


async def test_final_message_after_leaving_early_throws_cancelled(gateway_factory) -> None:
    async with gateway_factory("[providers.mock.models.dribble]\ntokens = 200\ntoken_delay_ms = 100\n") as gw:
        code, out, err = await run_node("-e", FINAL_AFTER_LEAVING_SCRIPT, gw.target)
        assert code == 0, err
        assert json.loads(out) == "CANCELLED"  # not the first piece of text as the whole answer
        await wait_for(gw.provider("mock").stats.cancelled_event)


NO_FINISH_SCRIPT = """
const { GatewayClient } = require('.');
const client = new GatewayClient(process.argv[1], { maxRetries: 1, deadlineMs: 10000 });
(async () => {
  const outcome = await client.chatStream({ model: 'm/x', prompt: 'Hi' }).finalMessage().then(
    (answer) => ({ returned: answer }),
    (error) => ({ threw: error.codeName, details: error.details }),
  );
  client.close();
  process.stdout.write(JSON.stringify(outcome));
})().catch((error) => { process.stderr.write(String(error.stack)); process.exit(1); });
"""


@pytest.mark.parametrize(("events", "attempts"), [([text("partial an")], 1), ([], 2)])
async def test_a_stream_ending_without_finish_throws_unavailable(events, attempts: int) -> None:
    """Retried, as any stream failure, only when nothing was shown."""
    async with scripted_gateway(events) as (target, service):
        code, out, err = await run_node("-e", NO_FINISH_SCRIPT, target)
    assert code == 0, err
    assert json.loads(out) == {"threw": "UNAVAILABLE", "details": "stream ended without a finish"}
    assert service.streams == attempts


NEWER_SERVER_SCRIPT = """
const { GatewayClient } = require('.');
const client = new GatewayClient(process.argv[1], { maxRetries: 0, deadlineMs: 10000 });
(async () => {
  const answer = await client.chatStream({ model: 'm/x', prompt: 'Hi' }).finalMessage();
  client.close();
  const { reason, timing } = answer.finish;
  process.stdout.write(JSON.stringify({ reason, upstreamUs: timing.upstreamUs, rawContent: answer.rawContent }));
})().catch((error) => { process.stderr.write(String(error.stack)); process.exit(1); });
"""


async def test_a_newer_finish_reason_and_raw_content_reach_the_caller() -> None:
    """The same stream the Python client reads in test_python_client_streams.py."""
    newer = pb.Finish(reason=7, provider="p", model="m", timing=pb.Timing(total_us=10, upstream_us=7))
    events = [
        text("see [1]"),
        raw_content("reference", {"reference_ids": [1, 2]}),
        pb.StreamEvent(finish=newer),
    ]
    async with scripted_gateway(events) as (target, _):
        code, out, err = await run_node("-e", NEWER_SERVER_SCRIPT, target)
    assert code == 0, err
    assert json.loads(out) == {
        "reason": 7,
        "upstreamUs": 7,
        "rawContent": [{"type": "reference", "raw": {"reference_ids": [1, 2]}}],
    }


SHARED_SIGNAL_SCRIPT = """
const { getEventListeners } = require('node:events');
const { GatewayClient } = require('.');
const client = new GatewayClient(process.argv[1]);
const shutdown = new AbortController(); // one signal for every call, as a server passes its own
(async () => {
  for (let i = 0; i < 20; i++) {
    await client.chatStream({ model: 'mock/echo', prompt: 'Hi', maxTokens: 1 }, { signal: shutdown.signal }).finalText();
    await client.chat({ model: 'mock/echo', prompt: 'Hi', maxTokens: 1 }, { signal: shutdown.signal });
  }
  for await (const _ of client.chatStream({ model: 'mock/echo', prompt: 'Hi' }, { signal: shutdown.signal })) break;
  client.close();
  process.stdout.write(String(getEventListeners(shutdown.signal, 'abort').length));
})().catch((error) => { process.stderr.write(String(error.stack)); process.exit(1); });
"""


async def test_a_signal_shared_by_many_calls_keeps_no_listeners_after_them(gateway) -> None:
    code, out, err = await run_node("-e", SHARED_SIGNAL_SCRIPT, gateway.target)
    assert code == 0, err
    assert out == "0"
    assert "MaxListenersExceededWarning" not in err


TYPED_USE = """
import {
  GatewayClient, ChatStream, FinalMessage, RateLimitError, RetryPolicy, StreamEvent, StreamEventBatch,
  assistantTurn, collect,
} from '%(index)s';

async function main(): Promise<void> {
  const gateway = new GatewayClient(undefined, { maxRetries: 3, deadlineMs: 1000 });
  const stream: ChatStream = gateway.chatStream({ model: 'mock/echo', prompt: 'Hi' });
  stream.on('text', (delta: string, soFar: string) => console.log(delta.length + soFar.length));
  stream.on('toolCall', (call) => console.log(call.arguments, call.incomplete));
  for await (const text of stream.textStream) console.log(text.toUpperCase());
  for await (const event of gateway.chatStream({ model: 'mock/echo' })) {
    if (event.event === 'textDelta') console.log(event.textDelta.text);
    if (event.event === 'reasoningDelta') console.log(event.reasoningDelta.redacted);
  }
  const providers = await gateway.listProviders();
  console.log(providers.providers[0].capabilities?.rateLimits?.requestsPerMinute);
  const final: FinalMessage = await stream.finalMessage();
  const next = assistantTurn(final);
  console.log(next.role, final.usage?.totalTokens, final.finish?.reason, (await collect(stream)).text);
  const emulated: string[] = final.finish?.emulated ?? [];
  console.log(emulated.includes('response_format'));
  const own = gateway.chatStream({ model: 'mock/echo', streamOptions: { usageInFinish: true, batchEvents: false } });
  async function* wire(): AsyncGenerator<StreamEvent | StreamEventBatch> {
    yield { event: 'batch', batch: { events: [{ event: 'textDelta', textDelta: { text: 'Hi', logprobs: [] } }] } };
  }
  console.log((await collect(wire())).text, own.call);
  try {
    await gateway.chat({ model: 'mock/echo' });
  } catch (error) {
    if (error instanceof RateLimitError) {
      console.log(error.retryAfter, new RetryPolicy({ maxRetries: 1 }).waitBeforeMs(0, error, null));
    }
  }
  // @ts-expect-error: 'text_delta' is the wire's name, not the client's
  for await (const event of stream) if (event.event === 'text_delta') console.log(event);
  // @ts-expect-error: no such stream event
  stream.on('nope', () => undefined);
}
main();
"""


async def test_index_d_ts_types_real_use(tmp_path: Path) -> None:
    (tmp_path / "use.ts").write_text(TYPED_USE % {"index": str(NODE_DIR / "index")})
    tsc = NODE_DIR / "node_modules" / "typescript" / "bin" / "tsc"
    assert tsc.is_file(), "run scripts/setup.d/node.sh"
    code, out, err = await run_node(
        str(tsc),
        "--noEmit",
        "--strict",
        "--target",
        "es2022",
        "--module",
        "commonjs",
        "--moduleResolution",
        "node",
        "--typeRoots",
        str(NODE_DIR / "node_modules" / "@types"),
        "--types",
        "node",
        str(tmp_path / "use.ts"),
        timeout_s=120,
    )
    assert code == 0, out + err
