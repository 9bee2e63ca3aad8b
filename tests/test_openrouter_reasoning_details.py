"""OpenRouter streams a thinking model's reasoning twice: as `reasoning` text, and as
`reasoning_details` entries that also carry what the next turn must send back: Claude's thinking
`signature` (`reasoning.text`) or a model's encrypted reasoning (`reasoning.encrypted`, its
`data`). Without them multi-turn tool use with thinking models through OpenRouter breaks; they
reach the client as the reasoning block's signature (redacted for encrypted data). Real gateway,
fake upstream on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from replay.support import Reasoning, ask, gateway_stream, gateway_unary, replay_gateway

from provider_gateway.fakes import FakeUpstream, Reply

MODEL = "anthropic/claude-sonnet-4.5"
USAGE = {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}


@pytest.fixture(scope="module")
async def openrouter() -> AsyncIterator[tuple[FakeUpstream, Any]]:
    async with replay_gateway("openrouter", "/v1") as upstream:
        yield upstream


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "gen-1", "object": "chat.completion.chunk", "created": 1, "model": MODEL,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip


def detail(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "format": "anthropic-claude-v1", "index": 0, **fields}


async def streamed(openrouter: tuple[FakeUpstream, Any], *deltas: dict[str, Any]) -> Any:
    fake, stub = openrouter
    usage = {
        "id": "gen-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": MODEL,
        "choices": [],
        "usage": USAGE,
    }
    fake.script("/v1/chat/completions", Reply.sse([*(chunk(d) for d in deltas), chunk({}, "stop"), usage]))
    view, error = await gateway_stream(stub, ask(f"openrouter/{MODEL}"))
    assert error is None, error.details()
    return view


async def test_claude_thinking_signature_closes_the_streamed_block(
    openrouter: tuple[FakeUpstream, Any],
) -> None:
    view = await streamed(
        openrouter,
        {"role": "assistant", "content": "", "reasoning": "Think.",
         "reasoning_details": [detail("reasoning.text", text="Think.", signature=None)]},
        {"content": "", "reasoning": " More.", "reasoning_details": [detail("reasoning.text", text=" More.")]},
        {"content": "", "reasoning": None, "reasoning_details": [detail("reasoning.text", text="", signature="EqQBCkYIBxgCKkB")]},
        {"content": "Answer"},
    )  # fmt: skip
    assert view.text == "Answer"
    assert view.reasoning == [Reasoning("Think. More.", "EqQBCkYIBxgCKkB")]  # the text once, signed


async def test_encrypted_reasoning_reaches_the_client_redacted(openrouter: tuple[FakeUpstream, Any]) -> None:
    view = await streamed(
        openrouter,
        {"role": "assistant", "reasoning": "Plan.", "reasoning_details": [detail("reasoning.summary", summary="Plan.")]},
        {"reasoning_details": [detail("reasoning.encrypted", data="gAAAAB-opaque")]},
        {"content": "Done"},
    )  # fmt: skip
    assert view.reasoning == [Reasoning("Plan.", "gAAAAB-opaque", redacted=True)]
    assert view.text == "Done"


async def test_details_without_the_reasoning_string_give_their_text(
    openrouter: tuple[FakeUpstream, Any],
) -> None:
    view = await streamed(
        openrouter,
        {"role": "assistant", "reasoning_details": [detail("reasoning.summary", summary="Short plan.")]},
        {"reasoning_details": [detail("reasoning.text", text="", signature="c2ln")]},
        {"content": "Done"},
    )  # fmt: skip
    assert view.reasoning == [Reasoning("Short plan.", "c2ln")]


async def test_a_whole_answer_keeps_the_signature(openrouter: tuple[FakeUpstream, Any]) -> None:
    fake, stub = openrouter
    message = {"role": "assistant", "content": "Answer", "reasoning": "Think.",
               "reasoning_details": [detail("reasoning.text", text="Think.", signature="EqQBCkYIBxgCKkB")]}  # fmt: skip
    fake.script("/v1/chat/completions", Reply.json({
        "id": "gen-1", "object": "chat.completion", "created": 1, "model": MODEL, "usage": USAGE,
        "choices": [{"index": 0, "finish_reason": "stop", "message": message}]}))  # fmt: skip
    view = await gateway_unary(stub, ask(f"openrouter/{MODEL}"))
    assert view.text == "Answer"
    assert view.reasoning == [Reasoning("Think.", "EqQBCkYIBxgCKkB")]
