"""CompleteStream on every provider kind (issue 14.5): an upstream stream that stops before the
vendor's end marker, by a dropped connection or by a clean end of the HTTP body, fails UNAVAILABLE
after the text it relayed; it never ends as a clean success."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from conftest import ADAPTER_ROUTING, run_gateway, use_fake_aws_credentials
from vendor_cases import WAIT_S

from provider_gateway.fakes import FakeUpstream, Reply, kinds
from provider_gateway.fakes.anthropic import FakeAnthropic
from provider_gateway.fakes.bedrock import FakeBedrock, chunk_frame, event_frame
from provider_gateway.fakes.bedrock import Reply as BedrockReply
from provider_gateway.fakes.cohere import FakeCohere
from provider_gateway.fakes.gemini import FakeGemini
from provider_gateway.fakes.vertex import FakeVertex
from provider_gateway.v1 import provider_service_pb2 as pb


@dataclass
class Fakes:
    openai: FakeUpstream
    ollama: FakeUpstream
    bedrock: FakeBedrock
    stub: Any


@pytest.fixture(scope="module")
async def fakes() -> AsyncIterator[Fakes]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        async with AsyncExitStack() as stack:
            anthropic = await stack.enter_async_context(FakeAnthropic())
            gemini = await stack.enter_async_context(FakeGemini())
            vertex = await stack.enter_async_context(FakeVertex())
            cohere = await stack.enter_async_context(FakeCohere())
            bedrock = await stack.enter_async_context(FakeBedrock())
            openai, ollama = [await stack.enter_async_context(FakeUpstream()) for _ in range(2)]
            kinds.ollama(ollama)
            use_fake_aws_credentials(monkeypatch)
            for env, value in [
                ("PG_CUT_OPENAI", "sk-test-openai"),
                ("PG_CUT_ANTHROPIC", anthropic.api_key),
                ("PG_CUT_GEMINI", gemini.api_key),
                ("PG_CUT_VERTEX", vertex.vertex_token),
                ("PG_CUT_COHERE", cohere.api_key),
            ]:
                monkeypatch.setenv(env, value)
            config = f"""
[providers.openai]
base_url = "{openai.url}/v1"
api_key_env = "PG_CUT_OPENAI"

[providers.ollama]
kind = "ollama"
base_url = "{ollama.url}"

[providers.anthropic]
base_url = "{anthropic.base_url}"
api_key_env = "PG_CUT_ANTHROPIC"

[providers.gemini]
base_url = "{gemini.base_url}"
api_key_env = "PG_CUT_GEMINI"

[providers.vertex]
project = "p"
base_url = "{vertex.base_url}"
access_token_env = "PG_CUT_VERTEX"

[providers.cohere]
base_url = "{cohere.base_url}"
api_key_env = "PG_CUT_COHERE"

[providers.bedrock]
kind = "bedrock"
region = "us-west-2"
endpoint_url = "{bedrock.url}"
{ADAPTER_ROUTING}"""
            gateway = await stack.enter_async_context(run_gateway(config))
            yield Fakes(openai, ollama, bedrock, gateway.stub)


def openai_chunk(content: str) -> dict[str, Any]:
    return {"id": "cmpl-x", "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]}


def ollama_line(content: str) -> dict[str, Any]:
    return {"model": "llama3.2", "message": {"role": "assistant", "content": content}, "done": False}


def nothing(fakes: Fakes) -> None:
    """The vendor fakes play the cut by the model's name."""


async def relay(call: Any, into: list[pb.StreamEvent]) -> None:
    async for event in call:
        into.append(event)


# model -> how the fake is told to stop before the end marker
CUTS: dict[str, Callable[[Fakes], None]] = {
    "anthropic/cut": nothing,  # /v1/complete: a completion, then the connection drops
    "gemini/cut": nothing,
    "vertex/cut": nothing,
    "vertex/claude-cut": nothing,
    "cohere/cut": nothing,
    "openai/gpt-4o#dropped": lambda f: f.openai.script(
        "/v1/chat/completions", Reply.sse([openai_chunk("par")], then="cut")
    ),
    "openai/gpt-4o#no-done": lambda f: f.openai.script(
        "/v1/chat/completions", Reply.sse([openai_chunk("par")], done=False)
    ),
    "ollama/llama3.2#dropped": lambda f: f.ollama.script("/api/chat", Reply.ndjson([ollama_line("par")], then="cut")),
    "ollama/llama3.2#no-done": lambda f: f.ollama.script("/api/chat", Reply.ndjson([ollama_line("par")])),
    "bedrock/meta.llama3-8b-instruct-v1:0#no-stop-reason": lambda f: f.bedrock.push(
        BedrockReply(frames=[chunk_frame({"generation": "par", "prompt_token_count": 3, "stop_reason": None})])
    ),
    "bedrock/qwen.qwen3-32b-v1:0#no-message-stop": lambda f: f.bedrock.push(
        BedrockReply(frames=[event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "par"}})])
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CUTS))
async def test_complete_stream_cut_before_the_end_marker_is_unavailable(fakes: Fakes, case: str) -> None:
    model = case.split("#", 1)[0]
    CUTS[case](fakes)
    received: list[pb.StreamEvent] = []
    call = fakes.stub.CompleteStream(pb.CompleteRequest(model=model, prompt="Hi"), timeout=WAIT_S)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await relay(call, received)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, caught.value.details()
    assert "".join(e.text_delta.text for e in received), "the text before the cut was relayed"
    assert not any(e.HasField("finish") for e in received)
