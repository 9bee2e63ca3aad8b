"""Both clients send each reasoning block back with the `issuer` the gateway named, from a streamed
answer (the accumulator folds it from the block-closing delta) and a unary one: without it, the
gateway cannot tell a Gemini signature from Claude's after a fallback and sends it to a vendor that
refuses the whole request. The scripted server records what the clients send."""

from __future__ import annotations

import json

from client_fakes import finish, scripted_gateway
from test_node_client import run_node

from provider_gateway.v1 import provider_service_pb2 as pb
from provider_gateway_client import GatewayClient, Reasoning, message

SIGNATURE = "CiQBthought-signature"
EVENTS = [
    pb.StreamEvent(reasoning_delta=pb.ReasoningDelta(text="Checking the weather.")),
    pb.StreamEvent(reasoning_delta=pb.ReasoningDelta(signature=SIGNATURE, issuer="gemini")),
    finish(),
]
ANSWER = pb.ChatResponse(
    reasoning_parts=[pb.Reasoning(text="Checking.", signature=SIGNATURE, issuer="gemini")],
    finish=pb.Finish(reason=pb.FINISH_REASON_STOP, provider="p", model="m"),
)


def replayed(request: pb.ChatRequest) -> list[tuple[str, str, str]]:
    """The reasoning blocks of the assistant turn a client sent back."""
    (assistant,) = [m for m in request.messages if m.role == pb.ROLE_ASSISTANT]
    return [(p.reasoning.text, p.reasoning.signature, p.reasoning.issuer) for p in assistant.content]


async def test_the_python_client_sends_the_issuer_back_from_a_stream_and_a_unary_answer() -> None:
    async with scripted_gateway(EVENTS, ANSWER) as (target, service), GatewayClient(target) as client:
        stream = client.chat_stream("m/x", "Weather?")
        events = [e async for e in stream]
        streamed = await stream.final()
        await client.chat("m/x", [message("user", "Weather?"), streamed.message()])
        unary = await client.chat("m/x", "Weather?")
        await client.chat("m/x", [message("user", "Weather?"), unary.message()])
    assert Reasoning("", SIGNATURE, issuer="gemini") in events  # the typed event carries it too
    assert replayed(service.requests[1]) == [("Checking the weather.", SIGNATURE, "gemini")]
    assert replayed(service.requests[3]) == [("Checking.", SIGNATURE, "gemini")]


NODE_SCRIPT = """
const { GatewayClient, assistantTurn } = require('.');
const client = new GatewayClient(process.argv[1], { maxRetries: 0, deadlineMs: 10000 });
const user = { role: 'ROLE_USER', content: [{ text: 'Weather?' }] };
(async () => {
  const streamed = await client.chatStream({ model: 'm/x', prompt: 'Weather?' }).finalMessage();
  await client.chat({ model: 'm/x', messages: [user, assistantTurn(streamed)] });
  const unary = await client.chat({ model: 'm/x', prompt: 'Weather?' });
  await client.chat({ model: 'm/x', messages: [user, assistantTurn(unary)] });
  client.close();
  process.stdout.write(JSON.stringify(streamed.reasoningParts));
})().catch((error) => { process.stderr.write(String(error.stack)); process.exit(1); });
"""


async def test_the_node_client_sends_the_issuer_back_from_a_stream_and_a_unary_answer() -> None:
    async with scripted_gateway(EVENTS, ANSWER) as (target, service):
        code, out, err = await run_node("-e", NODE_SCRIPT, target)
    assert code == 0, err
    assert [part["issuer"] for part in json.loads(out)] == ["gemini"]
    assert replayed(service.requests[1]) == [("Checking the weather.", SIGNATURE, "gemini")]
    assert replayed(service.requests[3]) == [("Checking.", SIGNATURE, "gemini")]
