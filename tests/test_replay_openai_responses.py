"""Recorded OpenAI Responses API answers (tests/replay/openai_responses: typed stream events with
reasoning summaries, function calls, hosted-tool items and annotations, `response.incomplete`,
`response.failed` and `error` events; whole `response` objects) served byte for byte from a fake
upstream on 127.0.0.1 to a provider with `api = "responses"`, compared with what the official
`openai` SDK makes of the same bytes: `responses.stream` (its terminal event's response, which the
SDK assembles from the events) and `responses.create`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import openai
import pytest
from replay.support import (
    KEY,
    Logprob,
    Reasoning,
    View,
    ask,
    figures,
    gateway_stream,
    gateway_unary,
    partial,
    recordings,
    replay,
    replay_gateway,
)

from provider_gateway.fakes import FakeUpstream
from provider_gateway.v1 import provider_service_pb2 as pb

MODEL = "o4-mini"
PATH = "/v1/responses"
# The gateway's documented reading of a response's end (providers/openai/responses_stream.py):
# `completed` is STOP (TOOL_CALLS after function calls); `incomplete` goes by its reason.
INCOMPLETE = {"max_output_tokens": pb.FINISH_REASON_LENGTH, "content_filter": pb.FINISH_REASON_CONTENT_FILTER}
# An error's code as the gRPC status the gateway reports (the HTTP status the same failure has).
ERROR_CODES = {
    "server_error": grpc.StatusCode.UNAVAILABLE,
    "rate_limit_exceeded": grpc.StatusCode.RESOURCE_EXHAUSTED,
}


@pytest.fixture(scope="module")
async def upstream() -> AsyncIterator[tuple[FakeUpstream, Any]]:
    async with replay_gateway("openai", "/v1", extra='api = "responses"') as pair:
        yield pair


def sdk_client(fake: FakeUpstream) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{fake.url}/v1", api_key=KEY, max_retries=0)


def sdk_view(response: Any) -> View:
    """The SDK's Response as the gateway's contract carries it: a refusal is text, a reasoning
    item one block (its summary parts apart by a blank line, `encrypted_content` the signature),
    annotations, a message's `phase` and hosted tools' items RawContent."""
    view = View()
    for item in response.output or []:
        if item.type == "message":
            for part in item.content:
                view.text += part.text if part.type == "output_text" else part.refusal
                view.logprobs += [sdk_logprob(e) for e in getattr(part, "logprobs", None) or []]
                view.raw_content += [(a.type, a.to_dict()) for a in getattr(part, "annotations", None) or []]
            # Whether the message is commentary (a preamble before tool calls) or the final answer
            # (gpt-5.3-codex and later): RawContent `phase` after the message's text.
            if getattr(item, "phase", None):
                view.raw_content.append(("phase", {"phase": item.phase}))
        elif item.type == "reasoning":
            texts = [s.text for s in item.summary] + [c.text for c in item.content or []]
            view.reasoning.append(Reasoning("\n\n".join(t for t in texts if t), item.encrypted_content or ""))
        elif item.type == "function_call" and item.status == "incomplete":  # cut mid-arguments
            view.tool_calls.append((item.call_id, item.name, partial(item.arguments)))
        elif item.type == "function_call":
            view.tool_calls.append((item.call_id, item.name, json.loads(item.arguments)))
        else:
            view.raw_content.append((item.type, item.to_dict()))
    if response.status == "incomplete":
        view.raw_finish_reason = response.incomplete_details.reason
        view.finish_reason = INCOMPLETE[view.raw_finish_reason]
    else:
        view.raw_finish_reason = response.status
        view.finish_reason = pb.FINISH_REASON_TOOL_CALLS if view.tool_calls else pb.FINISH_REASON_STOP
    usage = response.usage
    if usage:
        view.usage = figures(
            input=usage.input_tokens,
            output=usage.output_tokens,
            cache_read=usage.input_tokens_details.cached_tokens,
            reasoning=usage.output_tokens_details.reasoning_tokens,
        )
        view.usage_raw = usage.to_dict()
    return view


def sdk_logprob(entry: Any) -> Logprob:
    top = tuple(sdk_logprob(alt) for alt in getattr(entry, "top_logprobs", None) or [])
    return (entry.token, entry.logprob, bytes(entry.bytes), top)


# `logprobs_*` recordings answer a request that asked for logprobs with this many top tokens.
TOP_LOGPROBS = 2


def asked(path: Path) -> pb.ChatRequest:
    """Logprobs are asked of a model that gives them (the gateway refuses them on reasoning ones)."""
    if path.stem.startswith("logprobs_"):
        return ask("openai/gpt-4.1", top_logprobs=TOP_LOGPROBS)
    return ask(f"openai/{MODEL}")


async def sdk_stream(fake: FakeUpstream) -> tuple[Any, Any]:
    """The response of the stream's terminal event (completed, incomplete, failed), and an `error`
    event if one came."""
    final = error = None
    async with sdk_client(fake).responses.stream(model=MODEL, input="Go on.") as stream:
        async for event in stream:
            if event.type in ("response.completed", "response.incomplete", "response.failed"):
                final = event.response
            elif event.type == "error":
                error = event
    return final, error


def streams() -> list[Path]:
    return recordings("openai_responses", ".sse")


@pytest.mark.parametrize("path", streams(), ids=lambda p: p.stem)
async def test_stream_matches_sdk(upstream: tuple[FakeUpstream, Any], path: Path) -> None:
    fake, stub = upstream
    fake.script(PATH, replay(path, "text/event-stream"), replay(path, "text/event-stream"))
    ours, our_error = await gateway_stream(stub, asked(path))
    final, their_error = await sdk_stream(fake)
    if their_error is not None or final.status == "failed":
        # The content before it, then the vendor's message in a status its code chooses.
        said = their_error if their_error is not None else final.error
        assert our_error is not None, "the stream ended cleanly where the vendor failed it"
        assert our_error.code() == ERROR_CODES[said.code]
        assert said.message in our_error.details()
        if final is not None:
            assert ours.text == sdk_view(final).text
        return
    assert our_error is None, our_error.details() if our_error else ""
    theirs = sdk_view(final)
    assert bool(theirs.logprobs) == path.stem.startswith("logprobs_")
    assert ours == theirs


@pytest.mark.parametrize("path", recordings("openai_responses", ".json"), ids=lambda p: p.stem)
async def test_whole_answer_matches_sdk(upstream: tuple[FakeUpstream, Any], path: Path) -> None:
    fake, stub = upstream
    fake.script(PATH, replay(path, "application/json"), replay(path, "application/json"))
    ours = await gateway_unary(stub, asked(path))
    response = await sdk_client(fake).responses.create(model=MODEL, input="Go on.")
    assert ours == sdk_view(response)
