"""Reasoning state names who issued it (proto `Reasoning.issuer`), so that a history replayed after
a fallback never sends one vendor's signature to another, which refuses the whole request ("Invalid
signature in thinking block", a non-retryable 400). Through the real gRPC API against loopback fakes
scripted with the vendors' bytes: the gateway stamps the answering provider's family on signed and
redacted reasoning, in streams (coalesced or not) and unary answers; Claude then leaves out Gemini's
signatures, Gemini leaves out Claude's, and a block of the receiving vendor's own goes back whole,
an empty-text one included (Anthropic's `display: "omitted"` thinking, needed in tool-use loops).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from conftest import ADAPTER_ROUTING, run_gateway
from upstream_support import chat_stream, user

from provider_gateway.fakes import FakeUpstream, Reply
from provider_gateway.v1 import provider_service_pb2 as pb

ANTHROPIC_PATH = "/v1/messages"
GEMINI_PATH = "/v1beta/models/gemini-2.5-pro:streamGenerateContent"
GEMINI_UNARY_PATH = "/v1beta/models/gemini-2.5-pro:generateContent"
GOOGLE_SIGNATURE = "CiQB0e2Kb1gemini-thought-signature=="
CLAUDE_SIGNATURE = "EqQBclaude-signature"
GEMINI_CHUNK = {
    "candidates": [
        {
            "content": {
                "role": "model",
                "parts": [
                    {"text": "Checking the weather.", "thought": True},
                    {
                        "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                        "thoughtSignature": GOOGLE_SIGNATURE,
                    },
                ],
            },
            "finishReason": "STOP",
        }
    ],
    "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5},
    "modelVersion": "gemini-2.5-pro",
}
CLAUDE_MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [],
    "usage": {"input_tokens": 10, "output_tokens": 1},
}


def anthropic_sse(events: list[dict[str, Any]]) -> Reply:
    return Reply.sse(
        [b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n" for e in events],
        done=False,
    )


def claude_omitted_thinking_then_tool_use() -> Reply:
    """Thinking with `display: "omitted"`: an empty block that only carries its signature."""
    tool_use = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
    return anthropic_sse(
        [
            {"type": "message_start", "message": CLAUDE_MESSAGE},
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "thinking", "thinking": "", "signature": ""},
            },
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "signature_delta", "signature": CLAUDE_SIGNATURE},
            },
            {"type": "content_block_stop", "index": 0},
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "redacted_thinking", "data": "EmwKredacted"},
            },
            {"type": "content_block_stop", "index": 1},
            {"type": "content_block_start", "index": 2, "content_block": tool_use},
            {"type": "content_block_stop", "index": 2},
            {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 3}},
            {"type": "message_stop"},
        ]
    )


def claude_done() -> Reply:
    return anthropic_sse([{"type": "message_start", "message": CLAUDE_MESSAGE}, {"type": "message_stop"}])


@pytest.fixture(scope="module", params=["coalesced", "one by one"])
async def stub(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Any, FakeUpstream]]:
    async with FakeUpstream() as fake:
        config = (
            f"[server]\ncoalesce_deltas = {'true' if request.param == 'coalesced' else 'false'}\n"
            f'[providers.claude]\nkind = "anthropic"\nbase_url = "{fake.url}"\napi_key_env = "PG_T_ISSUER"\n'
            f'[providers.gem]\nkind = "gemini"\nbase_url = "{fake.url}"\napi_key_env = "PG_T_ISSUER"\n'
            + ADAPTER_ROUTING
        )
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("PG_T_ISSUER", "test-key")
            async with run_gateway(config) as gateway:
                yield gateway.stub, fake


def turn(reasoning: list[pb.Reasoning]) -> list[pb.Message]:
    """The next request's history: the answer's reasoning and tool call, then the tool's result."""
    call = pb.ToolCall(id="call_1", name="get_weather", arguments_json='{"city":"Paris"}')
    assistant = [pb.ContentPart(reasoning=r) for r in reasoning] + [pb.ContentPart(tool_call=call)]
    result = pb.ToolResult(tool_call_id="call_1", name="get_weather", content="18C")
    return [
        user("Weather?"),
        pb.Message(role=pb.ROLE_ASSISTANT, content=assistant),
        pb.Message(role=pb.ROLE_TOOL, content=[pb.ContentPart(tool_result=result)]),
    ]


def claude_request(history: list[pb.Message]) -> pb.ChatRequest:
    return pb.ChatRequest(
        model="claude/claude-sonnet-4-5",
        messages=history,
        reasoning=pb.ReasoningOptions(enabled=True, budget_tokens=2048),
        max_tokens=4096,
    )


async def test_gemini_names_itself_on_signed_reasoning_and_claude_leaves_it_out(
    stub: tuple[Any, FakeUpstream],
) -> None:
    grpc_stub, fake = stub
    fake.script(GEMINI_PATH, Reply.sse([GEMINI_CHUNK], done=False))
    request = pb.ChatRequest(model="gem/gemini-2.5-pro", messages=[user("Weather?")])
    got = await chat_stream(grpc_stub, request)
    assert got.error is None, got.error
    signed = [(d.signature, d.issuer) for d in got.of("reasoning_delta") if d.signature]
    assert signed == [(GOOGLE_SIGNATURE, "gemini")]
    fake.script(GEMINI_UNARY_PATH, Reply.json(GEMINI_CHUNK))
    response = await grpc_stub.Chat(request, timeout=10)
    assert [(p.signature, p.issuer) for p in response.reasoning_parts] == [(GOOGLE_SIGNATURE, "gemini")]

    fake.script(ANTHROPIC_PATH, claude_done())  # the history goes to Claude (a fallback, say)
    again = await chat_stream(grpc_stub, claude_request(turn(list(response.reasoning_parts))))
    assert again.error is None, again.error
    sent = fake.last(ANTHROPIC_PATH).json()["messages"][1]["content"]
    assert [block["type"] for block in sent] == ["tool_use"], sent
    assert GOOGLE_SIGNATURE not in orjson.dumps(sent).decode()


async def test_claude_names_itself_and_gets_its_empty_signed_thinking_back_but_gemini_does_not(
    stub: tuple[Any, FakeUpstream],
) -> None:
    grpc_stub, fake = stub
    fake.script(ANTHROPIC_PATH, claude_omitted_thinking_then_tool_use())
    got = await chat_stream(grpc_stub, claude_request([user("Weather?")]))
    assert got.error is None, got.error
    parts = [
        pb.Reasoning(text=d.text, signature=d.signature, redacted=d.redacted, issuer=d.issuer)
        for d in got.of("reasoning_delta")
    ]
    assert [(p.text, p.signature, p.redacted, p.issuer) for p in parts] == [
        ("", CLAUDE_SIGNATURE, False, "anthropic"),
        ("", "EmwKredacted", True, "anthropic"),
    ]

    fake.script(ANTHROPIC_PATH, claude_done())
    again = await chat_stream(grpc_stub, claude_request(turn(parts)))
    assert again.error is None, again.error
    sent = fake.last(ANTHROPIC_PATH).json()["messages"][1]["content"]
    assert sent[:2] == [
        {"type": "thinking", "thinking": "", "signature": CLAUDE_SIGNATURE},
        {"type": "redacted_thinking", "data": "EmwKredacted"},
    ]

    fake.script(GEMINI_UNARY_PATH, Reply.json(GEMINI_CHUNK))
    await grpc_stub.Chat(pb.ChatRequest(model="gem/gemini-2.5-pro", messages=turn(parts)), timeout=10)
    model_turn = fake.last(GEMINI_UNARY_PATH).json()["contents"][1]
    assert "thoughtSignature" not in orjson.dumps(model_turn).decode(), model_turn


async def test_state_of_unknown_issuer_goes_back_as_before(stub: tuple[Any, FakeUpstream]) -> None:
    """An older client sends no issuer: its blocks are sent as they were before issuers existed."""
    grpc_stub, fake = stub
    fake.script(ANTHROPIC_PATH, claude_done())
    unnamed = pb.Reasoning(text="Paris in spring.", signature=CLAUDE_SIGNATURE)
    again = await chat_stream(grpc_stub, claude_request(turn([unnamed])))
    assert again.error is None, again.error
    sent = fake.last(ANTHROPIC_PATH).json()["messages"][1]["content"]
    assert sent[0] == {"type": "thinking", "thinking": "Paris in spring.", "signature": CLAUDE_SIGNATURE}
