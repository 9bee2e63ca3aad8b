"""Recorded Claude streams from Bedrock's InvokeModelWithResponseStream (tests/replay/bedrock_invoke:
binary event-stream frames whose `chunk` events carry Anthropic's own events base64 in `bytes`,
beside Bedrock's `p` padding, the last one with `amazon-bedrock-invocationMetrics`) served byte for
byte from a fake endpoint on 127.0.0.1 through the real gateway's CompleteStream (Bedrock completions
use InvokeModel, docs/vendor-providers.md), compared with what anthropic's own Bedrock client
(`AsyncAnthropicBedrock`, `messages.stream`) makes of the same bytes.

The gateway's documented mappings: the stop reason as for Anthropic's API; the usage figures are
Bedrock's invocation metrics (what Bedrock bills), the input counting the cache."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import grpc
import pytest
from anthropic import AsyncAnthropicBedrock
from replay.support import (
    KEY,
    Reasoning,
    View,
    bedrock_gateway,
    figures,
    gateway_stream,
    recordings,
    replay,
    usage_figures,
)

from provider_gateway.fakes import FakeUpstream
from provider_gateway.v1 import provider_service_pb2 as pb

MODEL = "anthropic.claude-sonnet-4-5-20250929-v1:0"
REGION = "us-west-2"
PATH = f"/model/{MODEL}/invoke-with-response-stream"
METRICS = "amazon-bedrock-invocationMetrics"
# Anthropic's stop reasons as the proto's enum, as the Anthropic adapter maps them.
# Bedrock's stream exceptions as gRPC codes (docs/vendor-providers.md), by the name the SDK reports.
ERROR_CODES = {
    "throttlingException": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "modelStreamErrorException": grpc.StatusCode.UNAVAILABLE,
    "internalServerException": grpc.StatusCode.UNAVAILABLE,
    "serviceUnavailableException": grpc.StatusCode.UNAVAILABLE,
    "validationException": grpc.StatusCode.INVALID_ARGUMENT,
}
FINISH = {
    "end_turn": pb.FINISH_REASON_STOP,
    "stop_sequence": pb.FINISH_REASON_STOP,
    "max_tokens": pb.FINISH_REASON_LENGTH,
    "refusal": pb.FINISH_REASON_CONTENT_FILTER,
}


@pytest.fixture(scope="module")
async def upstream() -> AsyncIterator[tuple[FakeUpstream, Any]]:
    async with bedrock_gateway(REGION) as served:
        yield served


def sdk_client(fake: FakeUpstream) -> AsyncAnthropicBedrock:
    # A Bedrock API key (bearer) rather than SigV4, which would need boto3: the fake checks neither.
    return AsyncAnthropicBedrock(api_key=KEY, aws_region=REGION, base_url=fake.url, max_retries=0)


ASKED: dict[str, Any] = {
    "model": MODEL,
    "max_tokens": 1024,
    "messages": [{"role": "user", "content": "Go on."}],
}


async def sdk_failure(fake: FakeUpstream) -> tuple[str, anthropic.APIError | None]:
    """The text the SDK's stream gave, and the error that ended it (None if none did)."""
    text = ""
    try:
        async with sdk_client(fake).messages.stream(**ASKED) as stream:
            async for piece in stream.text_stream:
                text += piece
    except anthropic.APIError as error:
        return text, error
    return text, None


async def sdk_view(fake: FakeUpstream) -> View:
    client = sdk_client(fake)
    async with client.messages.stream(**ASKED) as stream:
        message = await stream.get_final_message()
    # Bedrock's counts ride on Anthropic's last event: the raw events keep them (MessageStream's not).
    metrics: dict[str, int] = {}
    async for event in await client.messages.create(**ASKED, stream=True):
        if event.type == "message_stop":
            metrics = (event.model_extra or {})[METRICS]
    view = View(text="".join(block.text for block in message.content if block.type == "text"))
    for block in message.content:
        if block.type == "thinking":
            view.reasoning.append(Reasoning(block.thinking, block.signature))
        elif block.type == "redacted_thinking":
            view.reasoning.append(Reasoning("", block.data, redacted=True))
    if message.stop_details:  # the stop's own fields, as the Anthropic adapter passes them
        view.raw_content.append(("stop_details", message.stop_details.to_dict(mode="json")))
    if message.stop_sequence:
        view.raw_content.append(("stop_sequence", {"stop_sequence": message.stop_sequence}))
    cache_read = metrics.get("cacheReadInputTokenCount", 0)
    cache_write = metrics.get("cacheWriteInputTokenCount", 0)
    view.usage = figures(
        input=metrics["inputTokenCount"] + cache_read + cache_write,
        output=metrics["outputTokenCount"],
        cache_read=cache_read,
        cache_write=cache_write,
    )
    view.usage_raw = {METRICS: metrics}
    view.raw_finish_reason = str(message.stop_reason)
    view.finish_reason = FINISH[view.raw_finish_reason]
    return view


@pytest.mark.parametrize("path", recordings("bedrock_invoke", ".bin"), ids=lambda p: p.stem)
async def test_complete_stream_matches_anthropics_bedrock_client(
    upstream: tuple[FakeUpstream, Any], path: Path
) -> None:
    fake, stub = upstream
    fake.script(PATH, replay(path, "application/vnd.amazon.eventstream"))
    request = pb.CompleteRequest(model=f"bedrock/{MODEL}", prompt="Go on.", max_tokens=1024)
    ours, error = await gateway_stream(stub, request)
    if error is not None:  # an exception frame: its code and words, after the text
        fake.script(PATH, replay(path, "application/vnd.amazon.eventstream"))
        text, failure = await sdk_failure(fake)
        assert failure is not None, f"the SDK read a whole answer; the gateway: {error.details()}"
        said = failure.body["error"]  # type: ignore[index]
        assert (error.code(), ours.text) == (ERROR_CODES[said["type"]], text)
        assert said["message"] in error.details()
        return
    fake.script(PATH, *[replay(path, "application/vnd.amazon.eventstream")] * 2)
    ours.usage_raw = {METRICS: ours.usage_raw[METRICS]}  # Claude's own figures beside them: not compared
    assert ours == await sdk_view(fake)


@pytest.mark.parametrize("path", recordings("bedrock_invoke", ".json"), ids=lambda p: p.stem)
async def test_complete_matches_anthropics_bedrock_client(
    upstream: tuple[FakeUpstream, Any], path: Path
) -> None:
    """A whole InvokeModel answer (`/invoke`): Complete's text, usage (Claude's own, the input
    counting the cache) and finish, as the SDK's `messages.create` reads the body."""
    fake, stub = upstream
    fake.script(f"/model/{MODEL}/invoke", *[replay(path, "application/json")] * 2)
    ours = await stub.Complete(pb.CompleteRequest(model=f"bedrock/{MODEL}", prompt="Go on.", max_tokens=1024))
    message = await sdk_client(fake).messages.create(**ASKED)
    usage = message.usage
    cache_read, cache_write = usage.cache_read_input_tokens or 0, usage.cache_creation_input_tokens or 0
    assert ours.text == "".join(block.text for block in message.content if block.type == "text")
    assert usage_figures(ours.usage) == figures(
        input=usage.input_tokens + cache_read + cache_write,
        output=usage.output_tokens,
        cache_read=cache_read,
        cache_write=cache_write,
    )
    assert (ours.finish.reason, ours.finish.raw_finish_reason) == (
        FINISH[str(message.stop_reason)],
        message.stop_reason,
    )
