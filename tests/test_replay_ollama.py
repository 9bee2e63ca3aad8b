"""Recorded Ollama /api/chat answers (tests/replay/ollama: `.ndjson` streams, `.json` whole
`"stream": false` answers) served byte for byte from a fake Ollama on 127.0.0.1 through the real
gateway. No Ollama SDK is installed: the oracle is Ollama's API reference (docs/api.md, "Generate a
chat completion"), read here as it documents the lines: each line's `message.content` and
`message.thinking` add to the answer, `tool_calls` come whole, the `done` line carries
`done_reason`, `prompt_eval_count` (input) and `eval_count` (output), and a line with `error` ends
the stream with that error."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import ADAPTER_ROUTING, run_gateway
from replay.support import (
    Reasoning,
    View,
    ask,
    figures,
    gateway_stream,
    gateway_unary,
    replay,
)
from replay.support import cases as replay_cases

from provider_gateway.fakes import FakeUpstream
from provider_gateway.v1 import provider_service_pb2 as pb

# Ollama's done_reason as the proto's enum; "stop" after tool calls is TOOL_CALLS (the model
# waits for their results), as for the OpenAI family (docs/vendor-providers.md).
DONE = {"stop": pb.FINISH_REASON_STOP, "length": pb.FINISH_REASON_LENGTH}
# A `<think>...</think>` block at the start of the content (after whitespace).
THINK = re.compile(r"\s*<think>(.*?)</think>(.*)", re.DOTALL)


@pytest.fixture(scope="module")
async def upstream() -> AsyncIterator[tuple[FakeUpstream, Any]]:
    async with FakeUpstream() as fake:
        config = f'[providers.ollama]\nkind = "ollama"\nbase_url = "{fake.url}"\n{ADAPTER_ROUTING}'
        async with run_gateway(config) as gateway:
            yield fake, gateway.stub


def documented_view(path: Path) -> tuple[View, str | None]:
    """The answer as Ollama's reference reads the lines; the `error` line's text, if one came."""
    view = View()
    thinking = ""
    for raw in path.read_bytes().splitlines():
        if not raw.strip():
            continue
        line = json.loads(raw)
        if "error" in line:
            return view, line["error"]
        message = line.get("message") or {}
        view.text += message.get("content") or ""
        thinking += message.get("thinking") or ""
        for call in message.get("tool_calls") or []:
            function = call["function"]
            view.tool_calls.append((call["id"], function["name"], function["arguments"]))
        if line.get("done"):
            reason = line["done_reason"]
            view.raw_finish_reason = reason
            view.finish_reason = pb.FINISH_REASON_TOOL_CALLS if view.tool_calls else DONE[reason]
            # Ollama leaves a zero count out (Go's omitempty): a prompt wholly in its cache
            # evaluates no token, so the line has no prompt_eval_count.
            view.usage = figures(input=line.get("prompt_eval_count", 0), output=line.get("eval_count", 0))
            view.usage_raw = {k: v for k, v in line.items() if k.endswith(("_count", "_duration"))}
    view.reasoning = [Reasoning(thinking)] if thinking else []
    if not thinking and (block := THINK.fullmatch(view.text)):
        # Servers before `think` (or a request without it) leave a thinking model's block in the
        # content: reasoning, the text after it the answer (docs/http-providers.md).
        view.reasoning, view.text = [Reasoning(block[1])], block[2]
    return view, None


def cases(suffix: str, *, errors: bool = False) -> list[Any]:
    return replay_cases("ollama", suffix, errors=errors)


@pytest.mark.parametrize("path", cases(".ndjson"))
async def test_stream_matches_the_reference(path: Path, upstream: tuple[FakeUpstream, Any]) -> None:
    fake, stub = upstream
    fake.script("/api/chat", replay(path, "application/x-ndjson"))
    ours, error = await gateway_stream(stub, ask("ollama/model"))
    theirs, their_error = documented_view(path)
    if their_error is None:
        assert error is None, error.details() if error else ""
        assert ours == theirs
        return
    assert error is not None, "the stream ended cleanly after an error line"
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert their_error in error.details()
    assert ours.text == theirs.text
    assert ours.finish_reason == pb.FINISH_REASON_UNSPECIFIED


@pytest.mark.parametrize("path", cases(".json"))
async def test_whole_answer_matches_the_reference(path: Path, upstream: tuple[FakeUpstream, Any]) -> None:
    fake, stub = upstream
    fake.script("/api/chat", replay(path, "application/json"))
    ours = await gateway_unary(stub, ask("ollama/model"))
    theirs, _ = documented_view(path)
    assert ours == theirs


# An error status as the gRPC code a client gets: the status decides (docs/http-providers.md); a
# 404 for a model not pulled says what to run instead of Ollama's words.
ERROR_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    500: grpc.StatusCode.UNAVAILABLE,
}


def ollama_said(path: Path) -> str:
    return str(json.loads(path.read_text())["error"])


@pytest.mark.parametrize("path", cases(".json", errors=True))
async def test_error_status_has_its_code(path: Path, upstream: tuple[FakeUpstream, Any]) -> None:
    """`name.<http status>.json`: Ollama's `{"error": ...}` answered with that status."""
    fake, stub = upstream
    status = int(path.suffixes[0].lstrip("."))
    fake.script("/api/chat", replay(path, "application/json", status))
    ours, error = await gateway_stream(stub, ask("ollama/model"))
    assert error is not None, "an error status answered as a stream"
    assert (error.code(), ours.text) == (ERROR_CODES[status], "")
    expected = "run `ollama pull model`" if status == 404 else ollama_said(path)
    assert expected in error.details()
