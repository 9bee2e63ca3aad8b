"""The Node.js client (clients/node) streams a chat through a live gateway.

The gateway runs in this process on a free loopback port; the Node example runs as a real
subprocess against it, so the proto loading, service config and stream handling are all real.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
from conftest import RunningGateway, run_gateway
from processes import run_process

from provider_gateway.v1 import provider_service_pb2 as pb

NODE_DIR = Path(__file__).resolve().parent.parent / "clients" / "node"
NODE = shutil.which("node")


async def run_node(*args: str, timeout_s: float = 30.0) -> tuple[int, str, str]:
    assert NODE, "node is not installed (scripts/setup.d/node.sh installs it)"
    assert (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir(), "run scripts/setup.d/node.sh"
    return await run_process(NODE, *args, cwd=NODE_DIR, timeout_s=timeout_s)


def user_request(prompt: str) -> pb.ChatRequest:
    return pb.ChatRequest(
        model="mock/echo", messages=[pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text=prompt)])]
    )


async def test_node_example_streams_text_and_ends_with_finish(gateway: RunningGateway) -> None:
    prompt = "streaming from node"
    code, out, err = await run_node("examples/chat.js", "--target", gateway.target, "--events", prompt)
    assert code == 0, err

    events = [json.loads(line) for line in out.splitlines()]
    kinds = [next(iter(event)) for event in events]
    assert kinds[-1] == "finish", kinds
    assert kinds.count("finish") == 1
    assert "usage" in kinds
    streamed = "".join(e["textDelta"]["text"] for e in events if "textDelta" in e)
    assert prompt in streamed
    # The same request answered by the unary RPC over the Python stub gives the same text.
    unary = await gateway.stub.Chat(user_request(prompt), timeout=10)
    assert streamed == unary.text

    finish = events[-1]["finish"]
    assert finish["reason"] == "FINISH_REASON_STOP"
    assert (finish["provider"], finish["model"]) == ("mock", "echo")
    assert finish["attempts"][-1]["outcome"] == "ok"


async def test_node_example_human_output(gateway: RunningGateway) -> None:
    code, out, err = await run_node("examples/chat.js", "--target", gateway.target, "hello", "node")
    assert code == 0, err
    assert out.startswith("Mock answer: hello node")
    assert "[mock/echo FINISH_REASON_STOP" in err


async def test_node_example_reports_grpc_errors_by_name(gateway: RunningGateway) -> None:
    code, _, err = await run_node(
        "examples/chat.js", "--target", gateway.target, "--model", "mock/no-such-model", "hi"
    )
    assert code == 1
    assert "NOT_FOUND" in err
    assert "no-such-model" in err


NODE_API_SCRIPT = """
const { GatewayClient, collect } = require('.');
const client = new GatewayClient(process.argv[1]);
(async () => {
  const out = {
    health: await client.health(''),
    serviceHealth: await client.health('provider_gateway.v1.ProviderService'),
    models: (await client.listModels('mock')).map((m) => m.id),
    providers: (await client.listProviders()).providers.map((p) => p.name),
    chat: (await client.chat({ model: 'mock/echo', prompt: 'unary' })).text,
    collected: await collect(client.chatStream({ model: 'mock/tools', prompt: 'weather?',
      tools: [{ name: 'get_weather', description: 'weather' }] })),
    count: (await client.countTokens({ model: 'mock/echo', text: 'count these words' })).inputTokens,
    embed: (await client.embed({ model: 'mock/embed', inputs: ['a', 'b'] })).embeddings.length,
  };
  client.close();
  process.stdout.write(JSON.stringify(out));
})().catch((error) => { process.stderr.write(String(error)); process.exit(1); });
"""


async def test_node_client_api_covers_unary_calls_and_health(gateway: RunningGateway) -> None:
    code, out, err = await run_node("-e", NODE_API_SCRIPT, gateway.target)
    assert code == 0, err
    result = json.loads(out)
    assert result["health"] == "SERVING"
    assert result["serviceHealth"] == "SERVING"
    assert "echo" in result["models"]
    assert result["providers"] == ["mock"]
    assert result["chat"].startswith("Mock answer: unary")
    collected = result["collected"]
    assert collected["finish"]["reason"] == "FINISH_REASON_TOOL_CALLS"
    assert [call["name"] for call in collected["toolCalls"]] == ["get_weather"]
    assert json.loads(collected["toolCalls"][0]["argumentsJson"]) == {"city": "Paris", "unit": "celsius"}
    assert result["count"] > 0
    assert result["embed"] == 2


@pytest.mark.parametrize(
    "path", ["index.js", "errors.js", "convert.js", "index.d.ts", "examples/chat.js", "package-lock.json"]
)
def test_node_package_files_are_committed(path: str) -> None:
    assert (NODE_DIR / path).is_file()


NODE_CANCEL_SCRIPT = """
const { GatewayClient } = require('.');
const client = new GatewayClient(process.argv[1]);
const abort = new AbortController();
(async () => {
  let texts = 0;
  try {
    for await (const event of client.chatStream({ model: 'mock/slow', prompt: 'long' }, { signal: abort.signal })) {
      if (event.event === 'textDelta' && ++texts === 2) abort.abort();
    }
    process.stdout.write('ended without cancel');
  } catch (error) {
    process.stdout.write(JSON.stringify({ code: error.code, name: error.name, texts }));
  } finally {
    client.close();
  }
})();
"""


async def test_node_abort_cancels_the_call_and_the_upstream(gateway: RunningGateway) -> None:
    mock = gateway.provider("mock")
    code, out, err = await run_node("-e", NODE_CANCEL_SCRIPT, gateway.target)
    assert code == 0, err
    assert json.loads(out) == {"code": 1, "name": "GatewayError", "texts": 2}  # 1 = grpc.status.CANCELLED
    async with asyncio.timeout(10):
        await mock.stats.cancelled_event.wait()
    assert mock.stats.cancelled == 1


NODE_DEADLINE_SCRIPT = """
const { GatewayClient } = require('.');
const client = new GatewayClient(process.argv[1], { deadlineMs: 300 });
client.chat({ model: 'mock/stuck', prompt: 'never answered' })
  .then(() => process.stdout.write('answered'))
  .catch((error) => process.stdout.write(`${error.code} ${error.name}`))
  .finally(() => client.close());
"""


async def test_node_deadline_ends_a_hung_call() -> None:
    async with run_gateway(
        '[providers.mock]\nkind = "mock"\n[providers.mock.models.stuck]\nfault = "hang"\n'
    ) as gw:
        code, out, err = await run_node("-e", NODE_DEADLINE_SCRIPT, gw.target)
        assert code == 0, err
        assert out == "4 DeadlineExceededError"  # 4 = grpc.status.DEADLINE_EXCEEDED
        async with asyncio.timeout(10):
            await gw.provider("mock").stats.cancelled_event.wait()


NODE_LOGPROBS_SCRIPT = """
const { GatewayClient } = require('.');
const client = new GatewayClient(process.argv[1]);
(async () => {
  const request = { model: 'mock/echo', prompt: 'score me', logprobs: { enabled: true, topLogprobs: 2 } };
  const unary = await client.chat(request);
  const stream = client.chatStream(request);
  const deltas = [];
  for await (const event of stream) if (event.event === 'textDelta') deltas.push(event.textDelta.logprobs.length);
  const final = await stream.finalMessage();
  client.close();
  const entries = (list) => list.map((e) => [e.token, e.logprob, e.topLogprobs.length]);
  process.stdout.write(JSON.stringify({
    text: unary.text, unary: entries(unary.logprobs), streamed: entries(final.logprobs), deltas,
  }));
})().catch((error) => { process.stderr.write(String(error)); process.exit(1); });
"""


async def test_node_client_gives_the_logprobs_of_unary_and_streamed_answers(gateway: RunningGateway) -> None:
    code, out, err = await run_node("-e", NODE_LOGPROBS_SCRIPT, gateway.target)
    assert code == 0, err
    result = json.loads(out)
    assert result["unary"], "no logprobs"
    assert "".join(token for token, _, _ in result["unary"]) == result["text"]
    assert all(top == 2 for _, _, top in result["unary"])
    assert result["streamed"] == result["unary"]
    assert sum(result["deltas"]) == len(result["unary"])
