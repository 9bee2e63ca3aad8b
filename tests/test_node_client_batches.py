"""The Node client asks for `streamOptions.batchEvents` and reads a batch's events as if each had
come in its own message: the same events, listener calls and `finalMessage()` answer (reasoning with
its issuer, text with logprobs, tool calls joined from fragments, usage made from the finish, raw
content); it never yields a batch; a stream whose finish is inside a batch is whole, and one that
ends after a batch without its finish was cut. The same scripts as the Python client's
(batch_support.py)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import Any

from batch_support import BATCHED, CUT, ONE_PER_MESSAGE, SHORT, SHORT_BATCHED, SIGNATURE, USAGE
from client_fakes import ScriptedService, scripted_gateway
from test_node_client import run_node

from provider_gateway.v1 import provider_service_pb2 as pb

READ_SCRIPT = """
const { GatewayClient } = require('.');
async function read(target, method, request) {
  const client = new GatewayClient(target, { maxRetries: 2, deadlineMs: 10000 });
  const stream = client[method]({ model: 'm/x', prompt: 'x', ...request });
  const seen = { events: [], texts: [], reasoning: [], toolCalls: [] };
  stream
    .on('event', (event) => seen.events.push(event))
    .on('text', (delta, soFar) => seen.texts.push([delta, soFar]))
    .on('reasoning', (delta, soFar) => seen.reasoning.push([delta, soFar]))
    .on('toolCall', (call) => seen.toolCalls.push(call));
  const pieces = [];
  try {
    for await (const piece of stream.textStream) pieces.push(piece);
    seen.final = await stream.finalMessage();
  } catch (error) {
    seen.threw = { codeName: error.codeName, details: error.details };
  }
  client.close();
  return { ...seen, pieces };
}
(async () => {
  const out = {};
  for (const [name, [target, method, request]] of Object.entries(JSON.parse(process.argv[1]))) {
    out[name] = await read(target, method, request);
  }
  process.stdout.write(JSON.stringify(out));
})().catch((error) => { process.stderr.write(String(error.stack)); process.exit(1); });
"""


async def read_with_node(
    scripts: dict[str, Sequence[pb.StreamEvent]], calls: dict[str, tuple[str, str, dict[str, Any]]]
) -> tuple[dict[str, Any], dict[str, ScriptedService]]:
    """Each call `name: (script, method, request fields)` read by the Node client, against a
    scripted server per script; what each call saw, and the servers' services."""
    async with AsyncExitStack() as servers:
        served = {name: await servers.enter_async_context(scripted_gateway(s)) for name, s in scripts.items()}
        plan = {name: (served[script][0], method, fields) for name, (script, method, fields) in calls.items()}
        code, out, err = await run_node("-e", READ_SCRIPT, json.dumps(plan))
    assert code == 0, err
    return json.loads(out), {name: service for name, (_, service) in served.items()}


async def test_a_batched_stream_gives_what_one_event_per_message_gives() -> None:
    seen, _ = await read_with_node(
        {"one": ONE_PER_MESSAGE, "batched": BATCHED},
        {"one": ("one", "chatStream", {}), "batched": ("batched", "chatStream", {})},
    )
    assert seen["batched"] == seen["one"]
    batched = seen["batched"]
    assert "batch" not in [event["event"] for event in batched["events"]]
    answer = batched["final"]
    assert answer["text"] == "".join(batched["pieces"]) == "Hello there"
    assert [(p["text"], p["signature"], p["issuer"]) for p in answer["reasoningParts"]] == [
        ("Checking the weather.", SIGNATURE, "gemini")
    ]
    assert [(lp["token"], lp["logprob"]) for lp in answer["logprobs"]] == [("Hello", -0.25)]
    (call,) = answer["toolCalls"]
    assert (call["id"], call["name"], call["arguments"], call["incomplete"]) == (
        "call_1",
        "get_weather",
        {"city": "Paris"},
        False,
    )
    assert batched["toolCalls"] == [call]
    assert answer["usage"]["outputTokens"] == USAGE.output_tokens
    assert [event["event"] for event in batched["events"]][-2:] == ["usage", "finish"]
    assert answer["finish"]["reason"] == "FINISH_REASON_TOOL_CALLS"
    assert answer["rawContent"] == [{"type": "reference", "raw": {"reference_ids": [1, 2]}}]


async def test_a_batch_holding_the_finish_completes_a_short_answer_and_a_cut_one_throws() -> None:
    seen, services = await read_with_node(
        {"one": SHORT, "batched": SHORT_BATCHED, "cut": CUT},
        {
            "chat": ("one", "chatStream", {}),
            "chatBatched": ("batched", "chatStream", {}),
            "complete": ("one", "completeStream", {}),
            "completeBatched": ("batched", "completeStream", {}),
            "cut": ("cut", "chatStream", {}),
        },
    )
    assert seen["chatBatched"] == seen["chat"]
    assert seen["completeBatched"] == seen["complete"]
    for name in ("chatBatched", "completeBatched"):
        answer = seen[name]["final"]
        assert (answer["text"], answer["finish"]["reason"]) == ("Hi", "FINISH_REASON_STOP")
        assert answer["usage"]["totalTokens"] == USAGE.total_tokens
    cut = seen["cut"]
    assert cut["threw"] == {"codeName": "UNAVAILABLE", "details": "stream ended without a finish"}
    assert cut["pieces"] == ["Hello", " there"]  # shown, then the stream failed
    assert "final" not in cut
    assert services["cut"].streams == 1  # its text was shown: never retried


async def test_streams_ask_for_batches_unless_the_caller_set_stream_options() -> None:
    own = {"streamOptions": {"usageInFinish": True}}
    _, services = await read_with_node(
        {"short": SHORT},
        {
            "chat": ("short", "chatStream", {}),
            "complete": ("short", "completeStream", {}),
            "own": ("short", "chatStream", own),
            "ownComplete": ("short", "completeStream", own),
        },
    )
    asked = [
        (type(r), r.stream_options.usage_in_finish, r.stream_options.batch_events)
        for r in services["short"].requests
    ]
    assert asked == [
        (pb.ChatRequest, True, True),
        (pb.CompleteRequest, True, True),
        (pb.ChatRequest, True, False),
        (pb.CompleteRequest, True, False),
    ]


COLLECT_SCRIPT = """
const { collect } = require('.');
const text = (piece) => ({ event: 'textDelta', textDelta: { text: piece, logprobs: [] } });
const finish = { event: 'finish', finish: { reason: 'FINISH_REASON_STOP', provider: 'p', model: 'm' } };
const batch = (...events) => ({ event: 'batch', batch: { events } });
async function* messages(list) { yield* list; }
const outcome = (promise) => promise.then((answer) => answer.text, (error) => error.codeName);
(async () => {
  const whole = await outcome(collect(messages([batch(text('Hi'), text(' there'), finish)])));
  const cut = await outcome(collect(messages([batch(text('Hi'), text(' there'))])));
  process.stdout.write(JSON.stringify({ whole, cut }));
})().catch((error) => { process.stderr.write(String(error.stack)); process.exit(1); });
"""


async def test_collect_reads_batches_in_a_plain_iterable() -> None:
    code, out, err = await run_node("-e", COLLECT_SCRIPT)
    assert code == 0, err
    assert json.loads(out) == {"whole": "Hi there", "cut": "UNAVAILABLE"}
