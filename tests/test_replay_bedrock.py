"""Recorded Bedrock ConverseStream answers (tests/replay/bedrock/*.bin: binary event-stream frames
with reasoningContent text, signature and redactedContent, toolUse, metadata usage with cache reads
and writes, the `p` padding member Bedrock adds to every event, an exception frame mid-stream)
served byte for byte from a fake endpoint on 127.0.0.1, through the real gateway, compared with
what AWS's own SDK, botocore, makes of the same bytes (its event-stream parser and the
bedrock-runtime service model). Where they disagree, the gateway is wrong."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import grpc
import pytest
from replay.sdk_clients import bedrock_runtime
from replay.support import (
    Reasoning,
    View,
    ask,
    bedrock_gateway,
    figures,
    gateway_stream,
    gateway_unary,
    pieces,
    recordings,
    replay,
)

from provider_gateway.fakes import FakeUpstream, Reply
from provider_gateway.fakes.bedrock import event_frame
from provider_gateway.v1 import provider_service_pb2 as pb

MODEL = "anthropic.claude-sonnet-4-5-20250929-v1:0"
REGION = "us-west-2"
PATH = f"/model/{MODEL}/converse-stream"
UNARY_PATH = f"/model/{MODEL}/converse"
EVENT_STREAM = "application/vnd.amazon.eventstream"
# The gateway's contract maps stopReason to one enum (raw_finish_reason keeps Bedrock's word).
FINISH = {
    "end_turn": pb.FINISH_REASON_STOP,
    "stop_sequence": pb.FINISH_REASON_STOP,
    "max_tokens": pb.FINISH_REASON_LENGTH,
    "model_context_window_exceeded": pb.FINISH_REASON_LENGTH,
    "tool_use": pb.FINISH_REASON_TOOL_CALLS,
    "guardrail_intervened": pb.FINISH_REASON_CONTENT_FILTER,
    "content_filtered": pb.FINISH_REASON_CONTENT_FILTER,
    # what the model wrote was not a valid call or answer: nothing the client can run or use
    "malformed_tool_use": pb.FINISH_REASON_OTHER,
    "malformed_model_output": pb.FINISH_REASON_OTHER,
}
# Stream exceptions (and HTTP errors, named in x-amzn-ErrorType) by Bedrock's name, as gRPC codes
# (docs/vendor-providers.md).
ERROR_CODES = {
    "ThrottlingException": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "ModelNotReadyException": grpc.StatusCode.UNAVAILABLE,
    "AccessDeniedException": grpc.StatusCode.PERMISSION_DENIED,
    "ModelTimeoutException": grpc.StatusCode.DEADLINE_EXCEEDED,
    "ServiceUnavailableException": grpc.StatusCode.UNAVAILABLE,
    "throttlingException": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "modelStreamErrorException": grpc.StatusCode.UNAVAILABLE,
    "internalServerException": grpc.StatusCode.UNAVAILABLE,
    "serviceUnavailableException": grpc.StatusCode.UNAVAILABLE,
    "validationException": grpc.StatusCode.INVALID_ARGUMENT,
}


# How the request was served (a stream's metadata, a whole response): they set its price.
SERVED = ("serviceTier", "performanceConfig")


@pytest.fixture(scope="module")
async def upstream() -> AsyncIterator[tuple[FakeUpstream, Any]]:
    async with bedrock_gateway(REGION) as served:
        yield served


class SdkView:
    """botocore's parsed events folded into a view, the gateway's contract applied: a signature (or
    a redacted block, whose bytes travel base64 as on the wire) closes a reasoning block; usage
    input counts the cache; `Usage.raw` is Bedrock's usage with the stream's `latencyMs` beside it,
    and the `serviceTier` and `performanceConfig` that served the request when Bedrock names them."""

    def __init__(self) -> None:
        self.view = View()
        self.thought = ""
        self.calls: dict[int, tuple[str, str, list[str]]] = {}
        # A server tool's blocks (Bedrock ran the call itself): member, start fields, pieces
        self.server: dict[int, tuple[str, dict[str, Any], list[Any]]] = {}

    def event(self, event: dict[str, Any]) -> None:
        if "contentBlockStart" in event:
            start = event["contentBlockStart"]
            begun = start["start"]
            if begun.get("toolUse", {}).get("type") == "server_tool_use" or "toolResult" in begun:
                member = next(iter(begun))
                self.server[start["contentBlockIndex"]] = (member, dict(begun[member]), [])
                return
            tool = begun["toolUse"]
            self.calls[start["contentBlockIndex"]] = (tool["toolUseId"], tool["name"], [])
        elif "contentBlockDelta" in event:
            self.delta(event["contentBlockDelta"]["contentBlockIndex"], event["contentBlockDelta"]["delta"])
        elif "contentBlockStop" in event and event["contentBlockStop"]["contentBlockIndex"] in self.server:
            # not a call for the client: passed on whole, as a whole Converse response gives it
            member, fields, pieces = self.server.pop(event["contentBlockStop"]["contentBlockIndex"])
            fields["input" if member == "toolUse" else "content"] = (
                json.loads("".join(pieces)) if member == "toolUse" else pieces
            )
            self.view.raw_content.append((member, fields))
        elif "contentBlockStop" in event and event["contentBlockStop"]["contentBlockIndex"] in self.calls:
            call_id, name, pieces = self.calls.pop(event["contentBlockStop"]["contentBlockIndex"])
            self.view.tool_calls.append((call_id, name, json.loads("".join(pieces) or "{}")))
        elif "messageStop" in event:
            if self.thought:  # reasoning that no signature closed (gpt-oss, DeepSeek-R1): one block
                self.view.reasoning.append(Reasoning(self.thought))
                self.thought = ""
            stop = event["messageStop"]
            self.view.raw_finish_reason = stop["stopReason"]
            self.view.finish_reason = FINISH[self.view.raw_finish_reason]
            if "additionalModelResponseFields" in stop:  # what the request asked of the model: whole
                self.view.raw_content.append(
                    ("additionalModelResponseFields", stop["additionalModelResponseFields"])
                )
        elif "metadata" in event:
            usage = event["metadata"]["usage"]
            read, write = usage.get("cacheReadInputTokens", 0), usage.get("cacheWriteInputTokens", 0)
            self.view.usage = figures(
                input=usage["inputTokens"] + read + write,
                output=usage["outputTokens"],
                cache_read=read,
                cache_write=write,
            )
            metadata = event["metadata"]
            if "trace" in metadata:  # a guardrail's assessment, asked for: no typed event, whole
                self.view.raw_content.append(("trace", metadata["trace"]))
            served = {key: metadata[key] for key in SERVED if key in metadata}
            self.view.usage_raw = {**usage, "latencyMs": metadata["metrics"]["latencyMs"], **served}

    def delta(self, index: int, delta: dict[str, Any]) -> None:
        if index in self.server:
            if "toolUse" in delta:
                self.server[index][2].append(delta["toolUse"]["input"])
            self.server[index][2].extend(delta.get("toolResult", []))
        elif "text" in delta:
            self.view.text += delta["text"]
        elif "toolUse" in delta:
            self.calls[index][2].append(delta["toolUse"]["input"])
        elif "reasoningContent" not in delta:  # a citation...: no typed event, passed on whole
            self.view.raw_content += list(delta.items())
        elif "redactedContent" in delta["reasoningContent"]:
            data = base64.b64encode(delta["reasoningContent"]["redactedContent"]).decode()
            self.view.reasoning.append(Reasoning("", data, redacted=True))
        elif "signature" in delta["reasoningContent"]:
            self.view.reasoning.append(Reasoning(self.thought, delta["reasoningContent"]["signature"]))
            self.thought = ""
        else:
            self.thought += delta["reasoningContent"]["text"]

    def message(self, response: dict[str, Any]) -> View:
        """A whole Converse response, block by block as its stream would carry it."""
        for index, block in enumerate(response["output"]["message"]["content"]):
            if block.get("toolUse", {}).get("type") == "server_tool_use":
                self.view.raw_content.append(("toolUse", block["toolUse"]))
            elif "toolUse" in block:
                tool = block["toolUse"]
                self.calls[index] = (tool["toolUseId"], tool["name"], [json.dumps(tool["input"])])
                self.event({"contentBlockStop": {"contentBlockIndex": index}})
            elif "citationsContent" in block:  # the cited text, then its sources
                self.view.text += "".join(part["text"] for part in block["citationsContent"]["content"])
                self.view.raw_content += [("citation", c) for c in block["citationsContent"]["citations"]]
            elif "reasoningText" in block.get("reasoningContent", {}):
                reasoning = block["reasoningContent"]["reasoningText"]
                self.delta(index, {"reasoningContent": {"text": reasoning["text"]}})
                self.delta(index, {"reasoningContent": {"signature": reasoning["signature"]}})
            else:
                self.delta(index, block)
        stop = {"stopReason": response["stopReason"]}
        if "additionalModelResponseFields" in response:
            stop["additionalModelResponseFields"] = response["additionalModelResponseFields"]
        self.event({"messageStop": stop})
        held = {key: response[key] for key in (*SERVED, "trace") if key in response}
        self.event({"metadata": {"usage": response["usage"], "metrics": response["metrics"], **held}})
        return self.view


def botocore_client(fake: FakeUpstream) -> Any:
    return bedrock_runtime(fake, REGION)


async def sdk_stream(fake: FakeUpstream) -> tuple[View, botocore.exceptions.ClientError | None]:
    """botocore's own client (in a thread: it blocks, and the fake answers on this loop)."""

    def run() -> tuple[View, botocore.exceptions.ClientError | None]:
        client = botocore_client(fake)
        folded = SdkView()
        response = client.converse_stream(
            modelId=MODEL, messages=[{"role": "user", "content": [{"text": "Go on."}]}]
        )
        try:
            for event in response["stream"]:
                folded.event(event)
        except botocore.exceptions.ClientError as error:
            return folded.view, error
        return folded.view, None

    return await asyncio.to_thread(run)


@pytest.mark.parametrize("path", recordings("bedrock", ".bin"), ids=lambda p: p.stem)
async def test_converse_stream_matches_botocore(upstream: tuple[FakeUpstream, Any], path: Path) -> None:
    fake, stub = upstream
    fake.script(PATH, *[replay(path, EVENT_STREAM)] * 2)
    ours, our_error = await gateway_stream(stub, ask(f"bedrock/{MODEL}"))
    theirs, their_error = await sdk_stream(fake)
    if their_error is None:
        assert our_error is None, our_error.details() if our_error else ""
        assert ours == theirs
        return
    # Cut by an exception frame: the same content before it, then an error named after it.
    assert our_error is not None, "the stream ended cleanly where botocore raised"
    code = their_error.response["Error"]["Code"]
    assert our_error.code() == ERROR_CODES[code]
    assert their_error.response["Error"]["Message"] in our_error.details()
    assert ours.text == theirs.text


@pytest.mark.parametrize(
    "path", [p for p in recordings("bedrock", ".json") if len(p.suffixes) == 1], ids=lambda p: p.stem
)
async def test_converse_matches_botocore(upstream: tuple[FakeUpstream, Any], path: Path) -> None:
    fake, stub = upstream
    fake.script(UNARY_PATH, *[replay(path, "application/json")] * 2)
    ours = await gateway_unary(stub, ask(f"bedrock/{MODEL}"))
    response = await asyncio.to_thread(
        lambda: botocore_client(fake).converse(
            modelId=MODEL, messages=[{"role": "user", "content": [{"text": "Go on."}]}]
        )
    )
    assert ours == SdkView().message(response)


@pytest.mark.parametrize(
    "path", [p for p in recordings("bedrock", ".json") if len(p.suffixes) == 2], ids=lambda p: p.stem
)
async def test_error_status_matches_botocore(upstream: tuple[FakeUpstream, Any], path: Path) -> None:
    """`name.<http status>.json`: an error before the stream, its name in `x-amzn-ErrorType`
    (`name.<status>.headers`), answered with that status: botocore's error code decides the gRPC
    code, and Bedrock's message reaches the client."""
    fake, stub = upstream
    status = int(path.suffixes[0].lstrip("."))
    fake.script(PATH, *[replay(path, "application/json", status)] * 2)
    ours, error = await gateway_stream(stub, ask(f"bedrock/{MODEL}"))
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        await sdk_stream(fake)
    theirs = raised.value.response
    assert theirs["ResponseMetadata"]["HTTPStatusCode"] == status
    assert error is not None
    assert error.code() == ERROR_CODES[theirs["Error"]["Code"]]
    assert theirs["Error"]["Message"] in error.details()
    assert ours.text == ""


# Stream endings, as botocore's event-stream parser reads them. messageStop ends the message (the
# metadata event after it only carries usage); a messageStop without its stopReason says no reason:
# UNSPECIFIED, never STOP. A body that ends before messageStop, after metadata or not, is cut short:
# botocore yields what came, the gateway reports UNAVAILABLE (never a clean end).

TEXT_FRAMES = [
    event_frame("messageStart", {"role": "assistant"}),
    event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Half of it"}}),
    event_frame("contentBlockStop", {"contentBlockIndex": 0}),
]
METADATA = event_frame(
    "metadata",
    {"usage": {"inputTokens": 6, "outputTokens": 3, "totalTokens": 9}, "metrics": {"latencyMs": 80}},
)


async def botocore_events(fake: FakeUpstream) -> list[dict[str, Any]]:
    def run() -> list[dict[str, Any]]:
        response = botocore_client(fake).converse_stream(
            modelId=MODEL, messages=[{"role": "user", "content": [{"text": "Go on."}]}]
        )
        return list(response["stream"])

    return await asyncio.to_thread(run)


def frames_reply(*frames: bytes) -> Reply:
    return Reply(status=200, chunks=pieces(b"".join(frames)), content_type=EVENT_STREAM)


async def test_message_stop_without_a_stop_reason_is_no_claimed_stop(
    upstream: tuple[FakeUpstream, Any],
) -> None:
    fake, stub = upstream
    fake.script(PATH, *[frames_reply(*TEXT_FRAMES, event_frame("messageStop", {}), METADATA)] * 2)
    ours, error = await gateway_stream(stub, ask(f"bedrock/{MODEL}"))
    events = await botocore_events(fake)
    assert {"messageStop": {}} in events  # botocore: a stop that names no reason
    assert error is None, error.details() if error else ""
    assert (ours.text, ours.finish_reason, ours.raw_finish_reason) == (
        "Half of it",
        pb.FINISH_REASON_UNSPECIFIED,
        "",
    )
    assert ours.usage == figures(input=6, output=3)


@pytest.mark.parametrize("frames", [[*TEXT_FRAMES, METADATA], TEXT_FRAMES], ids=["metadata", "nothing"])
async def test_a_body_ending_before_message_stop_is_cut_short(
    upstream: tuple[FakeUpstream, Any], frames: list[bytes]
) -> None:
    fake, stub = upstream
    fake.script(PATH, *[frames_reply(*frames)] * 2)
    ours, error = await gateway_stream(stub, ask(f"bedrock/{MODEL}"))
    events = await botocore_events(fake)
    assert not any("messageStop" in event for event in events)  # botocore yields what came, no error
    assert error is not None, "a stream cut short ended cleanly"
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "before messageStop" in error.details()
    assert ours.text == "Half of it"
