"""A stream whose last event has no blank line after it (issue 18.9): `data: {"type":"message_stop"}`
then the end of the body, with or without the line's own newline.

The official SDKs, reading the same bytes from the same fake, are the oracle for what the answer is.
Their SSE decoders treat the end of the body as the end of the last line but never dispatch the
unterminated event; they need no terminal event, so their users still get the whole answer. The
gateway needs the terminal event to tell a finished stream from a cut one, so its decoder also
dispatches that last event: same answer as the SDK, where it used to fail UNAVAILABLE.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import openai
import pytest
from anthropic._streaming import SSEDecoder as AnthropicSseDecoder
from conftest import ADAPTER_ROUTING, run_gateway
from openai._streaming import SSEDecoder as OpenAISseDecoder
from upstream_support import chat_stream, user

from provider_gateway.fakes import FakeUpstream, Reply
from provider_gateway.fakes import chat_completions as cc
from provider_gateway.fakes import conversation as conv
from provider_gateway.fakes.anthropic import message_frames
from provider_gateway.v1 import provider_service_pb2 as pb

KEY = "sk-test-last-event"
KEY_ENV = "PG_TEST_LAST_EVENT_KEY"
# How the body ends after the last event's data: its newline but no blank line, or nothing at all.
TAILS = {"newline": "\n", "crlf": "\r\n", "none": ""}


class Env:
    def __init__(self, fake: FakeUpstream, stub: Any) -> None:
        self.fake = fake
        self.stub = stub


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[Env]:
    async with FakeUpstream() as fake:
        config = f"""
[providers.claude]
kind = "anthropic"
base_url = "{fake.url}"
api_key_env = "{KEY_ENV}"
[providers.oa]
kind = "openai"
base_url = "{fake.url}/v1"
api_key_env = "{KEY_ENV}"
{ADAPTER_ROUTING}"""
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(KEY_ENV, KEY)
            async with run_gateway(config) as gateway:
                yield Env(fake, gateway.stub)


def unterminated(frames: list[str], tail: str) -> bytes:
    """The frames, the last one without its blank line; `tail` ends its data line ("" = nothing)
    and, when it is CRLF, every other line too."""
    body = "".join(frames).removesuffix("\n\n")
    return (body.replace("\n", tail or "\n") + tail).encode()


def sse_reply(body: bytes) -> Reply:
    # One chunk per line, so the last line arrives on its own, as it does from a real upstream.
    return Reply(chunks=body.splitlines(keepends=True), content_type="text/event-stream")


def sdk_events(decoder: Any, body: bytes) -> list[str]:
    return [event.data for event in decoder.iter_bytes(iter([body]))]


@pytest.mark.parametrize("tail", TAILS.values(), ids=TAILS.keys())
async def test_anthropic_message_stop_without_blank_line(env: Env, tail: str) -> None:
    frames, _ = message_frames("text", "claude-x")
    body = unterminated(frames, tail)
    # The SDK's own decoder sees every event but the last; the gateway's sees that one too.
    assert json.loads(sdk_events(AnthropicSseDecoder(), body)[-1])["type"] == "message_delta"

    env.fake.script("/v1/messages", sse_reply(body), sse_reply(body))
    got = await chat_stream(env.stub, pb.ChatRequest(model="claude/claude-x", messages=[user("Q")]))
    sdk = anthropic.AsyncAnthropic(api_key=KEY, base_url=env.fake.url, max_retries=0)
    async with sdk.messages.stream(
        model="claude-x", max_tokens=64, messages=[{"role": "user", "content": "Q"}]
    ) as stream:
        answer = await stream.get_final_message()
    await sdk.close()

    assert got.error is None, got.error
    assert (
        got.text == "".join(b.text for b in answer.content if b.type == "text") == "".join(conv.TEXT_CHUNKS)
    )
    assert got.finish.raw_finish_reason == answer.stop_reason == "end_turn"
    assert got.finish.reason == pb.FINISH_REASON_STOP
    assert got.usage.output_tokens == answer.usage.output_tokens == conv.OUTPUT_TOKENS


@pytest.mark.parametrize("tail", TAILS.values(), ids=TAILS.keys())
async def test_openai_done_without_blank_line(env: Env, tail: str) -> None:
    model = "gpt-x"
    usage = cc.usage(9, 3)
    chunks: list[Any] = [cc.chunk(model, {"role": "assistant", "content": ""})]
    chunks += [cc.chunk(model, {"content": word}) for word in ("Hello", " there", ".")]
    chunks += [cc.chunk(model, {}, "stop"), cc.usage_chunk(model, usage)]
    frames = [f"data: {Reply.json(c).body.decode()}\n\n" for c in chunks] + ["data: [DONE]\n\n"]
    body = unterminated(frames, tail)
    assert sdk_events(OpenAISseDecoder(), body)[-1] != "[DONE]"  # the SDK never sees [DONE] here

    env.fake.script("/v1/chat/completions", sse_reply(body), sse_reply(body))
    got = await chat_stream(env.stub, pb.ChatRequest(model=f"oa/{model}", messages=[user("Q")]))
    sdk = openai.AsyncOpenAI(api_key=KEY, base_url=env.fake.url + "/v1", max_retries=0)
    stream = await sdk.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Q"}], stream=True
    )
    read = [c async for c in stream]
    await sdk.close()

    assert got.error is None, got.error
    assert got.text == "".join(c.choices[0].delta.content or "" for c in read if c.choices) == "Hello there."
    finish = next(c.choices[0].finish_reason for c in read if c.choices and c.choices[0].finish_reason)
    assert got.finish.raw_finish_reason == finish == "stop"
    assert (got.usage.input_tokens, got.usage.output_tokens) == (read[-1].usage.prompt_tokens, 3)
