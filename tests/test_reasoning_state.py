"""One mechanism for opaque reasoning state on every provider: the client copies each reasoning
block (text plus `signature`, `redacted`, `id`) into the next turn's assistant message, and each
provider gets back the state it issued, in its own format. Through the real gRPC API, against
loopback fakes scripted with the vendors' bytes (OpenAI Responses and Mistral: their own tests).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from conftest import ADAPTER_ROUTING, run_gateway
from upstream_support import Collected, chat_stream, user

from provider_gateway.fakes import FakeUpstream, Reply
from provider_gateway.v1 import provider_service_pb2 as pb

ANTHROPIC_PATH = "/v1/messages"
GEMINI_PATH = "/v1beta/models/gemini-2.5-pro:streamGenerateContent"
GEMINI_UNARY_PATH = "/v1beta/models/gemini-2.5-pro:generateContent"


def blocks(got: Collected) -> list[pb.Reasoning]:
    """The documented client rule: a reasoning delta with state closes the block it ends."""
    out: list[pb.Reasoning] = []
    text: list[str] = []
    for delta in got.of("reasoning_delta"):
        text.append(delta.text)
        if delta.signature or delta.redacted or delta.id:
            out.append(
                pb.Reasoning(
                    text="".join(text), signature=delta.signature, redacted=delta.redacted, id=delta.id
                )
            )
            text = []
    if any(text):
        out.append(pb.Reasoning(text="".join(text)))
    return out


def next_turn(got: Collected, parts: list[pb.Reasoning]) -> list[pb.Message]:
    content = [pb.ContentPart(reasoning=p) for p in parts]
    content += [pb.ContentPart(tool_call=e.call) for e in got.of("tool_call_end")]
    results = [
        pb.ContentPart(tool_result=pb.ToolResult(tool_call_id=e.call.id, name=e.call.name, content="18C"))
        for e in got.of("tool_call_end")
    ]
    return [
        user("Weather?"),
        pb.Message(role=pb.ROLE_ASSISTANT, content=content),
        pb.Message(role=pb.ROLE_TOOL, content=results),
    ]


def anthropic_sse(events: list[dict[str, Any]]) -> Reply:
    return Reply.sse(
        [b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n" for e in events],
        done=False,
    )


@pytest.fixture(scope="module")
async def stub() -> AsyncIterator[tuple[Any, FakeUpstream]]:
    async with FakeUpstream() as fake:
        config = (
            f'[providers.claude]\nkind = "anthropic"\nbase_url = "{fake.url}"\napi_key_env = "PG_T_REASONING"\n'
            f'[providers.gem]\nkind = "gemini"\nbase_url = "{fake.url}"\napi_key_env = "PG_T_REASONING"\n'
            + ADAPTER_ROUTING
        )
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("PG_T_REASONING", "test-key")
            async with run_gateway(config) as gateway:
                yield gateway.stub, fake


async def test_anthropic_thinking_signatures_and_redacted_thinking_round_trip(
    stub: tuple[Any, FakeUpstream],
) -> None:
    grpc_stub, fake = stub
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [],
        "usage": {"input_tokens": 10, "output_tokens": 1},
    }
    fake.script(
        ANTHROPIC_PATH,
        anthropic_sse(
            [
                {"type": "message_start", "message": message},
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "thinking", "thinking": "", "signature": ""},
                },
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "thinking_delta", "thinking": "Paris in"},
                },
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "thinking_delta", "thinking": " spring."},
                },
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "signature_delta", "signature": "EqQBsig1"},
                },
                {"type": "content_block_stop", "index": 0},
                {
                    "type": "content_block_start",
                    "index": 1,
                    "content_block": {"type": "redacted_thinking", "data": "EmwKAhIBredacted"},
                },
                {"type": "content_block_stop", "index": 1},
                {
                    "type": "content_block_start",
                    "index": 2,
                    "content_block": {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {},
                    },
                },
                {
                    "type": "content_block_delta",
                    "index": 2,
                    "delta": {"type": "input_json_delta", "partial_json": '{"city":"Paris"}'},
                },
                {"type": "content_block_stop", "index": 2},
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "tool_use"},
                    "usage": {"output_tokens": 30},
                },
                {"type": "message_stop"},
            ]
        ),
    )
    request = pb.ChatRequest(
        model="claude/claude-sonnet-4-5",
        messages=[user("Weather?")],
        reasoning=pb.ReasoningOptions(enabled=True, budget_tokens=2048),
        max_tokens=4096,
    )
    got = await chat_stream(grpc_stub, request)
    assert got.error is None, got.error
    parts = blocks(got)
    assert [(p.text, p.signature, p.redacted) for p in parts] == [
        ("Paris in spring.", "EqQBsig1", False),
        ("", "EmwKAhIBredacted", True),
    ]
    fake.script(
        ANTHROPIC_PATH,
        anthropic_sse([{"type": "message_start", "message": message}, {"type": "message_stop"}]),
    )
    request = pb.ChatRequest(
        model="claude/claude-sonnet-4-5",
        messages=next_turn(got, parts),
        reasoning=request.reasoning,
        max_tokens=4096,
    )
    again = await chat_stream(grpc_stub, request)
    assert again.error is None, again.error
    assistant = fake.last(ANTHROPIC_PATH).json()["messages"][1]
    assert assistant["content"] == [
        {"type": "thinking", "thinking": "Paris in spring.", "signature": "EqQBsig1"},
        {"type": "redacted_thinking", "data": "EmwKAhIBredacted"},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
    ]


async def test_gemini_thought_signature_round_trips_through_a_unary_answer(
    stub: tuple[Any, FakeUpstream],
) -> None:
    grpc_stub, fake = stub
    chunk = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"text": "Checking the weather.", "thought": True},
                        {
                            "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                            "thoughtSignature": "CiQBthought",
                        },
                    ],
                },
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "thoughtsTokenCount": 7},
        "modelVersion": "gemini-2.5-pro",
    }
    fake.script(GEMINI_UNARY_PATH, Reply.json(chunk))  # a unary answer is one whole chunk
    fake.script(GEMINI_PATH, Reply.sse([chunk], done=False))
    request = pb.ChatRequest(
        model="gem/gemini-2.5-pro", messages=[user("Weather?")], reasoning=pb.ReasoningOptions(enabled=True)
    )
    response = await grpc_stub.Chat(request, timeout=10)
    assert [(p.text, p.signature) for p in response.reasoning_parts] == [
        ("Checking the weather.", "CiQBthought")
    ]
    assert response.reasoning_signature == "CiQBthought"
    got = await chat_stream(grpc_stub, request)
    assert [(p.text, p.signature) for p in blocks(got)] == [("Checking the weather.", "CiQBthought")]
    fake.script(GEMINI_UNARY_PATH, Reply.json(chunk))
    await grpc_stub.Chat(
        pb.ChatRequest(model="gem/gemini-2.5-pro", messages=next_turn(got, list(response.reasoning_parts))),
        timeout=10,
    )
    model_turn = fake.last(GEMINI_UNARY_PATH).json()["contents"][1]
    assert model_turn["parts"] == [
        {"text": "Checking the weather.", "thought": True},
        {
            "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
            "thoughtSignature": "CiQBthought",
        },
    ]
