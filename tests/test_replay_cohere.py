"""Recorded Cohere v2 chat answers (tests/replay/cohere) served byte for byte from a fake upstream
on 127.0.0.1, through the real gateway, compared with the answer as Cohere's v2 chat reference
documents those events and fields. Cohere's SDK is not a dependency here, so the expected view is
read from the recording by the documented shapes: text (and thinking) from `content-delta`, the
tool plan from `tool-plan-delta`, tool calls from `tool-call-start`/`-delta`/`-end` (or a whole
answer's `message.tool_plan` and `message.tool_calls`), citations from `citation-start` (or a whole
answer's `message.citations`), usage from `message-end`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from replay.support import (
    Reasoning,
    View,
    ask,
    figures,
    gateway_stream,
    gateway_unary,
    partial,
    pieces,
    recordings,
    replay,
    replay_gateway,
)

from provider_gateway.fakes import FakeUpstream, Reply
from provider_gateway.v1 import provider_service_pb2 as pb

MODEL = "command-a-03-2025"
PATH = "/v2/chat"
FINISH = {
    "COMPLETE": pb.FINISH_REASON_STOP,
    "STOP_SEQUENCE": pb.FINISH_REASON_STOP,
    "MAX_TOKENS": pb.FINISH_REASON_LENGTH,
    "TOOL_CALL": pb.FINISH_REASON_TOOL_CALLS,
    # Cohere's generation time limit cut the answer: no enum value says so; OTHER keeps the text
    # and the raw reason (docs/vendor-providers.md, Cohere).
    "TIMEOUT": pb.FINISH_REASON_OTHER,
}


@pytest.fixture(scope="module")
async def upstream() -> AsyncIterator[tuple[FakeUpstream, Any]]:
    async with replay_gateway("cohere") as running:
        yield running


def answers(suffix: str) -> list[Path]:
    """The recordings with `suffix`, `name.<http status>.json` error bodies apart."""
    return [p for p in recordings("cohere", suffix) if len(p.suffixes) == 1]


def end(view: View, finish_reason: str, usage: dict[str, Any]) -> View:
    """Usage as the gateway's contract normalises it: `tokens` (what the model saw) over
    `billed_units`; `cached_tokens` are part of the input."""
    tokens = usage.get("tokens") or usage["billed_units"]
    view.usage = figures(
        input=tokens["input_tokens"], output=tokens["output_tokens"], cache_read=usage.get("cached_tokens", 0)
    )
    view.usage_raw = usage
    view.raw_finish_reason, view.finish_reason = finish_reason, FINISH[finish_reason]
    return view


def documented_stream(path: Path) -> tuple[View, str]:
    """The documented view, and the `error` text of a message-end with finish_reason ERROR (which
    ends the view without a finish) or ""."""
    view = View()
    thinking = ""  # the gateway's contract: thinking and the tool plan are reasoning
    calls: dict[int, list[str]] = {}  # index -> id, name, argument pieces
    for line in path.read_text().splitlines():
        if not line.startswith("data: "):
            continue
        event = json.loads(line.removeprefix("data: "))
        message = event.get("delta", {}).get("message", {})
        if event["type"] == "content-delta":
            content = message["content"]
            thinking += content.get("thinking", "")
            view.text += content.get("text", "")
        elif event["type"] == "tool-plan-delta":
            thinking += message["tool_plan"]
        elif event["type"] == "tool-call-start":
            call = message["tool_calls"]
            calls[event["index"]] = [call["id"], call["function"]["name"], call["function"]["arguments"]]
        elif event["type"] == "tool-call-delta":
            calls[event["index"]].append(message["tool_calls"]["function"]["arguments"])
        elif event["type"] == "tool-call-end":
            call_id, name, *pieces = calls.pop(event["index"])
            view.tool_calls.append((call_id, name, json.loads("".join(pieces) or "{}")))
        elif event["type"] == "citation-start":
            view.raw_content.append(("citation", message["citations"]))
        elif event["type"] == "message-end":
            # A call MAX_TOKENS cut (never ended): the arguments that came, incomplete (the
            # gateway's contract, as for Anthropic's `max_tokens`).
            for call_id, name, *pieces in calls.values():
                view.tool_calls.append((call_id, name, partial("".join(pieces))))
            if thinking:
                view.reasoning.append(Reasoning(thinking))
            if event["delta"]["finish_reason"] == "ERROR":
                return view, event["delta"]["error"]
            end(view, event["delta"]["finish_reason"], event["delta"]["usage"])
    return view, ""


def documented_answer(path: Path) -> View:
    answer = json.loads(path.read_text())
    message = answer["message"]
    content = message.get("content", [])
    view = View(text="".join(part["text"] for part in content if part["type"] == "text"))
    thinking = "".join(part["thinking"] for part in content if part["type"] == "thinking")
    view.reasoning = [Reasoning(plan) for plan in (thinking, message.get("tool_plan", "")) if plan]
    calls = message.get("tool_calls", [])
    for n, call in enumerate(calls):
        arguments = call["function"]["arguments"]
        # MAX_TOKENS cut the last call: the arguments that came, incomplete (as its stream's)
        cut = answer["finish_reason"] == "MAX_TOKENS" and n == len(calls) - 1
        parsed = partial(arguments) if cut else json.loads(arguments or "{}")
        view.tool_calls.append((call["id"], call["function"]["name"], parsed))
    view.raw_content = [("citation", citation) for citation in message.get("citations", [])]
    return end(view, answer["finish_reason"], answer["usage"])


@pytest.mark.parametrize("path", answers(".sse"), ids=lambda p: p.stem)
async def test_stream_matches_the_documented_events(upstream: tuple[FakeUpstream, Any], path: Path) -> None:
    fake, stub = upstream
    fake.script(PATH, replay(path, "text/event-stream"))
    ours, error = await gateway_stream(stub, ask(f"cohere/{MODEL}"))
    theirs, their_error = documented_stream(path)
    if their_error:  # finish_reason ERROR, as documented: UNAVAILABLE with Cohere's words, no finish
        assert error is not None, "a generation error ended the stream cleanly"
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert their_error in error.details()
        assert ours.text == theirs.text
        return
    assert error is None, error.details() if error else ""
    assert ours == theirs


@pytest.mark.parametrize("path", answers(".json"), ids=lambda p: p.stem)
async def test_whole_answer_matches_the_documented_fields(
    upstream: tuple[FakeUpstream, Any], path: Path
) -> None:
    fake, stub = upstream
    fake.script(PATH, replay(path, "application/json"))
    ours = await gateway_unary(stub, ask(f"cohere/{MODEL}"))
    assert ours == documented_answer(path)


# Cohere's error statuses (its API reference's "Errors"): the HTTP status decides the code
# (docs/vendor-providers.md); 498 is Cohere's "invalid token".
ERROR_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    498: grpc.StatusCode.UNAUTHENTICATED,
}


def error_message(path: Path) -> str:
    """Cohere's words in an error body: its `message`."""
    return str(json.loads(path.read_text())["message"])


@pytest.mark.parametrize(
    "path", [p for p in recordings("cohere", ".json") if len(p.suffixes) == 2], ids=lambda p: p.stem
)
async def test_error_status_has_its_code_and_coheres_words(
    upstream: tuple[FakeUpstream, Any], path: Path
) -> None:
    """`name.<http status>.json`: the body answered with that status, to a stream and to Chat."""
    fake, stub = upstream
    status = int(path.suffixes[0].lstrip("."))
    said = error_message(path)
    fake.script(PATH, *[replay(path, "application/json", status)] * 2)
    ours, error = await gateway_stream(stub, ask(f"cohere/{MODEL}"))
    assert error is not None, "an error status answered as a stream"
    assert (error.code(), ours.text) == (ERROR_CODES[status], "")
    assert said in error.details()
    with pytest.raises(grpc.aio.AioRpcError) as unary:
        await gateway_unary(stub, ask(f"cohere/{MODEL}"))
    assert (unary.value.code(), said in unary.value.details()) == (ERROR_CODES[status], True)


# Stream endings. message-end ends the answer; Cohere's v2 reference types its `finish_reason` as
# optional, and one left out names no reason: UNSPECIFIED, neither STOP nor OTHER. A body that ends
# before message-end is cut short (UNAVAILABLE, never a clean end).

STARTED = [
    {"type": "message-start", "id": "c-ends", "delta": {"message": {"role": "assistant"}}},
    {"type": "content-start", "index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}},
    {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "Half of it"}}}},
    {"type": "content-end", "index": 0},
]
USAGE = {
    "billed_units": {"input_tokens": 6, "output_tokens": 3},
    "tokens": {"input_tokens": 6, "output_tokens": 3},
}


def events_reply(*events: dict[str, Any]) -> Reply:
    body = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)
    return Reply(status=200, chunks=pieces(body.encode()), content_type="text/event-stream")


async def test_message_end_without_a_finish_reason_is_no_claimed_finish(
    upstream: tuple[FakeUpstream, Any],
) -> None:
    fake, stub = upstream
    fake.script(PATH, events_reply(*STARTED, {"type": "message-end", "delta": {"usage": USAGE}}))
    ours, error = await gateway_stream(stub, ask(f"cohere/{MODEL}"))
    assert error is None, error.details() if error else ""
    assert (ours.text, ours.finish_reason, ours.raw_finish_reason) == (
        "Half of it",
        pb.FINISH_REASON_UNSPECIFIED,
        "",
    )
    assert ours.usage == figures(input=6, output=3)


async def test_a_body_ending_before_message_end_is_cut_short(upstream: tuple[FakeUpstream, Any]) -> None:
    fake, stub = upstream
    fake.script(PATH, events_reply(*STARTED))
    ours, error = await gateway_stream(stub, ask(f"cohere/{MODEL}"))
    assert error is not None, "a stream cut short ended cleanly"
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "before message-end" in error.details()
    assert ours.text == "Half of it"
