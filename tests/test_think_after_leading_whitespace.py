"""A `<think>` block after leading whitespace is reasoning: chat templates of R1-style models often
emit a newline first, and the block then leaked into the text whole. Ordinary text that starts with
whitespace stays text, whitespace included. Real gateway, a `<think>`-splitting host (vLLM) on a
fake upstream on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from replay.support import Reasoning, ask, gateway_stream, gateway_unary, replay_gateway

from provider_gateway.fakes import FakeUpstream, Reply

USAGE = {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}


@pytest.fixture(scope="module")
async def vllm() -> AsyncIterator[tuple[FakeUpstream, Any]]:
    async with replay_gateway("vllm", "/v1") as upstream:
        yield upstream


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "r1",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip


def texts(*pieces: str) -> Reply:
    return Reply.sse([*(chunk({"content": p}) for p in pieces), chunk({}, "stop")])


async def test_a_streamed_think_block_after_a_newline_is_reasoning(vllm: tuple[FakeUpstream, Any]) -> None:
    fake, stub = vllm
    fake.script(
        "/v1/chat/completions", texts("\n", " <th", "ink>Plan", "</think>", "\n\nAnswer"), texts("\n\n", "Hi")
    )
    view, error = await gateway_stream(stub, ask("vllm/r1"))
    assert error is None, error.details()
    assert (view.reasoning, view.text) == ([Reasoning("Plan")], "\n\nAnswer")
    view, error = await gateway_stream(stub, ask("vllm/r1"))  # no block: the whitespace is text
    assert error is None, error.details()
    assert (view.reasoning, view.text) == ([], "\n\nHi")


async def test_a_whole_answer_with_a_think_block_after_a_newline_is_split(
    vllm: tuple[FakeUpstream, Any],
) -> None:
    fake, stub = vllm
    message = {"role": "assistant", "content": "\n<think>Plan</think>Answer"}
    fake.script("/v1/chat/completions", Reply.json({
        "id": "c", "object": "chat.completion", "created": 1, "model": "r1", "usage": USAGE,
        "choices": [{"index": 0, "finish_reason": "stop", "message": message}]}))  # fmt: skip
    view = await gateway_unary(stub, ask("vllm/r1"))
    assert (view.reasoning, view.text) == ([Reasoning("Plan")], "Answer")
