"""Recorded Mistral chat answers (tests/replay/mistral: `.sse` streams, `.json` whole answers) served
byte for byte from a fake upstream on 127.0.0.1 through the real gateway, compared with what the
official `mistralai` SDK makes of the same bytes (`chat.stream_async`, `chat.complete_async`):
content as a string or as chunks (`thinking` is reasoning, `text` is text), tool calls with
Mistral's 9-character ids, its finish reasons (`model_length` is LENGTH) and usage."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from mistralai.client import Mistral
from mistralai.client import models as mm
from mistralai.client.errors import MistralError
from replay.support import (
    KEY,
    Reasoning,
    View,
    ask,
    figures,
    gateway_stream,
    gateway_unary,
    replay,
    replay_gateway,
)
from replay.support import cases as replay_cases

from provider_gateway.fakes import FakeUpstream
from provider_gateway.v1 import provider_service_pb2 as pb

MODEL = "magistral-medium-latest"
PATH = "/v1/chat/completions"
# Mistral's finish reasons as the proto's enum (`model_length`: the model's context is full).
FINISH = {
    "stop": pb.FINISH_REASON_STOP,
    "length": pb.FINISH_REASON_LENGTH,
    "model_length": pb.FINISH_REASON_LENGTH,
    "tool_calls": pb.FINISH_REASON_TOOL_CALLS,
}


@pytest.fixture(scope="module")
async def upstream() -> AsyncIterator[tuple[FakeUpstream, Any]]:
    async with replay_gateway("mistral", "/v1") as served:
        yield served


class Accumulated:
    """The SDK's chunks (or its whole message) folded as a user of the SDK folds them."""

    def __init__(self) -> None:
        self.view = View()
        self.thinking = ""
        self.calls: dict[int, list[Any]] = {}

    def content(self, content: Any) -> None:
        if isinstance(content, str):
            self.view.text += content
            return
        for chunk in content or []:
            if isinstance(chunk, mm.ThinkChunk):
                self.thinking += "".join(t.text for t in chunk.thinking if isinstance(t, mm.TextChunk))
            elif isinstance(chunk, mm.TextChunk):
                self.view.text += chunk.text

    def tool_calls(self, calls: Any) -> None:
        for n, call in enumerate(calls or []):
            index = call.index if call.index is not None else n
            arguments = call.function.arguments
            arguments = arguments if isinstance(arguments, str) else json.dumps(arguments)
            entry = self.calls.setdefault(index, [call.id, call.function.name, ""])
            entry[2] += arguments

    def finish(self, reason: Any, usage: Any) -> View:
        view = self.view
        if reason is not None:
            view.raw_finish_reason = str(reason)
            if view.raw_finish_reason != "error":  # a failed generation: no finish (the test's check)
                view.finish_reason = FINISH[view.raw_finish_reason]
        view.reasoning = [Reasoning(self.thinking)] if self.thinking else []
        view.tool_calls = [(i, name, json.loads(args)) for i, name, args in self.calls.values()]
        # Cache hits: `prompt_tokens_details.cached_tokens` (Mistral's prompt caching page), which the
        # SDK keeps among its extra fields; part of prompt_tokens.
        details = (usage.additional_properties or {}).get("prompt_tokens_details") or {}
        view.usage = figures(
            input=usage.prompt_tokens,
            output=usage.completion_tokens,
            cache_read=details.get("cached_tokens", 0),
        )
        view.usage_raw = usage.model_dump(exclude_none=True)
        return view


async def sdk_stream(fake: FakeUpstream) -> View:
    client = Mistral(api_key=KEY, server_url=fake.url)
    stream = await client.chat.stream_async(model=MODEL, messages=[{"role": "user", "content": "Go on."}])
    folded, reason, usage = Accumulated(), None, None
    async for event in stream:
        chunk = event.data
        usage = chunk.usage or usage
        for choice in chunk.choices:
            folded.content(choice.delta.content)
            folded.tool_calls(choice.delta.tool_calls)
            reason = choice.finish_reason or reason
    return folded.finish(reason, usage)


def cases(suffix: str, *, errors: bool = False) -> list[Any]:
    return replay_cases("mistral", suffix, errors=errors)


@pytest.mark.parametrize("path", cases(".sse"))
async def test_stream_matches_sdk(path: Path, upstream: tuple[FakeUpstream, Any]) -> None:
    fake, stub = upstream
    fake.script(PATH, *[replay(path, "text/event-stream")] * 2)
    ours, error = await gateway_stream(stub, ask(f"mistral/{MODEL}"))
    theirs = await sdk_stream(fake)
    if theirs.raw_finish_reason == "error":  # Mistral's failed generation: UNAVAILABLE after its text
        assert error is not None, "a generation error ended the stream cleanly"
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert (ours.text, ours.finish_reason) == (theirs.text, pb.FINISH_REASON_UNSPECIFIED)
        return
    assert error is None, error.details() if error else ""
    assert ours == theirs


@pytest.mark.parametrize("path", cases(".json"))
async def test_whole_answer_matches_sdk(path: Path, upstream: tuple[FakeUpstream, Any]) -> None:
    fake, stub = upstream
    fake.script(PATH, *[replay(path, "application/json")] * 2)
    ours = await gateway_unary(stub, ask(f"mistral/{MODEL}"))
    client = Mistral(api_key=KEY, server_url=fake.url)
    answer = await client.chat.complete_async(model=MODEL, messages=[{"role": "user", "content": "Go on."}])
    choice = answer.choices[0]
    folded = Accumulated()
    folded.content(choice.message.content)
    folded.tool_calls(choice.message.tool_calls)
    assert ours == folded.finish(choice.finish_reason, answer.usage)


# An HTTP error status as the gRPC code a client gets (docs/http-providers.md: the status decides).
ERROR_CODES = {422: grpc.StatusCode.INVALID_ARGUMENT, 429: grpc.StatusCode.RESOURCE_EXHAUSTED}


def mistral_said(path: Path) -> list[str]:
    """Mistral's words in an error body: its `message`, or a 422's validation `msg`s (Mistral
    nests them in `message.detail`)."""
    message = json.loads(path.read_text())["message"]
    return [message] if isinstance(message, str) else [entry["msg"] for entry in message["detail"]]


@pytest.mark.parametrize("path", cases(".json", errors=True))
async def test_error_status_matches_sdk(path: Path, upstream: tuple[FakeUpstream, Any]) -> None:
    fake, stub = upstream
    status = int(path.suffixes[0].lstrip("."))
    fake.script(PATH, *[replay(path, "application/json", status)] * 2)
    ours, error = await gateway_stream(stub, ask(f"mistral/{MODEL}"))
    with pytest.raises(MistralError) as raised:
        await sdk_stream(fake)
    assert raised.value.status_code == status
    assert error is not None
    assert (error.code(), ours.text) == (ERROR_CODES[status], "")
    assert all(said in error.details() for said in mistral_said(path))
