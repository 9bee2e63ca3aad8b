"""A finish with which a host cuts its answer short (DeepSeek's `insufficient_system_resource`,
Mistral's `error`) is an error, never a clean end. Where nothing of the answer has reached the
client yet, not even the text of the chunk that says it, the request fails over to its fallback
and the client gets a whole answer; once text went out, the stream ends UNAVAILABLE after it."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from conftest import run_gateway
from rpc_util import chat

from provider_gateway.fakes import FakeUpstream, Reply, kinds

CUT = {"deepseek": "insufficient_system_resource", "mistral": "error"}
PROVIDERS = """
[providers.cut]
kind = "{kind}"
base_url = "{url}/cut/v1"
api_key_env = "PG_CUT_KEY"

[providers.whole]
kind = "openai"
base_url = "{url}/whole/v1"
api_key_env = "PG_CUT_KEY"
"""


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return {"id": "cut-1", "object": "chat.completion.chunk", "model": "m", "choices": [choice]}


async def served(kind: str, chunks: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> tuple[str, Any]:
    """The text a client of `cut/m` (fallback `whole/gpt-4o-mini`) got, and the error that ended it."""
    monkeypatch.setenv("PG_CUT_KEY", "k")
    async with FakeUpstream() as fake:
        fake.on("POST", "/cut/v1/chat/completions", lambda _request: Reply.sse(chunks))
        kinds.openai(fake)
        async with run_gateway(PROVIDERS.format(url=fake.url, kind=kind)) as gateway:
            request = chat("cut/m")
            request.fallbacks.append("whole/gpt-4o-mini")
            text, error = "", None
            try:
                async for event in gateway.stub.ChatStream(request, timeout=10):
                    text += event.text_delta.text
            except grpc.aio.AioRpcError as failed:
                error = failed
            return text, error


@pytest.mark.parametrize("kind", sorted(CUT))
async def test_a_cut_first_chunk_fails_over_to_a_whole_answer(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The only chunk carries the answer's first words and the finish that cuts it.
    text, error = await served(
        kind, [chunk({"role": "assistant", "content": "Here is"}, CUT[kind])], monkeypatch
    )
    assert error is None, error.details() if error else ""
    assert text
    assert not text.startswith("Here is")


@pytest.mark.parametrize("kind", sorted(CUT))
async def test_a_cut_after_text_ends_unavailable_after_that_text(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    chunks = [chunk({"role": "assistant", "content": "Here is"}), chunk({"content": " the"}, CUT[kind])]
    text, error = await served(kind, chunks, monkeypatch)
    assert error is not None
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert text == "Here is the"


async def test_a_cut_after_reasoning_ends_unavailable_after_the_cut_chunks_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Reasoning went out first: no failover can take the request whole any more, so the chunk
    # that cuts the answer is relayed as the SDK reads it, then the stream fails.
    chunks = [
        chunk({"role": "assistant", "reasoning_content": "Let me think."}),
        chunk({"content": "Here"}, CUT["deepseek"]),
    ]
    text, error = await served("deepseek", chunks, monkeypatch)
    assert error is not None
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert text == "Here"
