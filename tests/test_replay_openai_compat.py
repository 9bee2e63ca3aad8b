"""Recorded answers of the OpenAI-compatible hosts the gateway serves through its OpenAI family
(tests/replay/openai_compat, each file named after the host's kind: `deepseek_`, `groq_`, `xai_`,
`openrouter_`, `vllm_`...), served byte for byte from a fake upstream on 127.0.0.1 through the real
gateway, and compared with what the official `openai` SDK makes of the same bytes (its
ChatCompletionStream accumulation, `create`). The hosts' own fields are extras to the SDK: their
reasoning (`reasoning_content`, `reasoning`, OpenRouter's `reasoning_details`) is read from the
accumulated message as the SDK keeps it."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import grpc
import openai
import pytest
from replay.support import (
    KEY,
    Reasoning,
    View,
    ask,
    client_retries,
    figures,
    gateway_stream,
    gateway_unary,
    replay,
    replay_gateway,
)
from replay.support import cases as replay_cases
from test_replay_openai import FINISH as OPENAI_FINISH

from provider_gateway.fakes import FakeUpstream
from provider_gateway.v1 import provider_service_pb2 as pb

VENDOR = "openai_compat"
# Each host's kind and a model it serves.
MODELS = {
    "deepseek": "deepseek-reasoner",
    "groq": "llama-3.3-70b-versatile",
    "openrouter": "anthropic/claude-sonnet-4.5",
    "vllm": "Qwen/Qwen2.5-7B-Instruct",
    "xai": "grok-3-mini",
    "together": "meta-llama/Llama-3.3-70B-Instruct-Turbo",
    "fireworks": "accounts/fireworks/models/deepseek-r1-0528",
    "gemini-openai": "gemini-3-flash-preview",
}
# Together says `eos` where the model ended its answer itself (end of sequence): STOP.
FINISH = {**OPENAI_FINISH, "eos": pb.FINISH_REASON_STOP}
# Finish reasons that say the host cut the answer short: DeepSeek's `insufficient_system_resource`
# (its inference system ran out of capacity mid-answer). The SDK hands over the text as a finished
# completion; the gateway never ends a cut answer cleanly (docs/http-providers.md): UNAVAILABLE, to
# be retried like an overloaded upstream, after the text that arrived (a stream's).
CUT_SHORT = {"insufficient_system_resource"}


def host(path: Path) -> str:
    return path.stem.split("_", 1)[0]


@pytest.fixture(scope="module")
async def upstreams() -> AsyncIterator[dict[str, tuple[FakeUpstream, Any]]]:
    """A fake and a gateway per host kind, its base_url at the fake's /v1."""
    async with AsyncExitStack() as stack:
        yield {kind: await stack.enter_async_context(replay_gateway(kind, "/v1")) for kind in MODELS}


def sdk_client(fake: FakeUpstream) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{fake.url}/v1", api_key=KEY, max_retries=0)


def sdk_reasoning(message: Any) -> list[Reasoning]:
    """The host's reasoning as the SDK keeps it (extra fields of the message): OpenRouter's
    `reasoning_details` entries (text and Claude's signature; encrypted data), else the plain
    `reasoning_content` (DeepSeek, xAI) or `reasoning` string."""
    extra = message.model_extra or {}
    details = extra.get("reasoning_details")
    if details:
        blocks = []
        for entry in details:
            if entry.get("type") == "reasoning.encrypted":
                blocks.append(Reasoning("", entry["data"], redacted=True))
            else:
                blocks.append(
                    Reasoning(entry.get("text") or entry.get("summary") or "", entry.get("signature") or "")
                )
        return blocks
    text = extra.get("reasoning_content") or extra.get("reasoning")
    if signed := google_signature(
        extra
    ):  # Gemini's signature of an answer (the gateway's reading: a block with no text)
        return [Reasoning(text or "", signed)]
    return [Reasoning(text)] if text else []


def google_signature(extra: dict[str, Any] | None) -> str:
    """Gemini's `extra_content.google.thought_signature` among a message's or call's extra fields."""
    return str(
        (((extra or {}).get("extra_content") or {}).get("google") or {}).get("thought_signature") or ""
    )


# A `<think>...</think>` block at the start of the text (after whitespace) is reasoning, the text
# after it the answer (docs/http-providers.md: on every compatible host's preset).
THINK = re.compile(r"\s*<think>(.*?)</think>(.*)", re.DOTALL)
OPENED = re.compile(r"\s*<think>(.*)", re.DOTALL)


def sdk_view(completion: Any, kind: str) -> View:
    choice = completion.choices[0]
    message = choice.message
    view = View(text=message.content or "", raw_finish_reason=choice.finish_reason)
    view.finish_reason = FINISH.get(choice.finish_reason, pb.FINISH_REASON_OTHER)
    view.reasoning = sdk_reasoning(message)
    if not view.reasoning and (block := THINK.fullmatch(view.text)):
        view.reasoning, view.text = [Reasoning(block[1])], block[2]
    elif not view.reasoning and (opened := OPENED.fullmatch(view.text)):
        # Never closed: all reasoning; given again as the text only when the model ended it itself.
        view.reasoning = [Reasoning(opened[1])]
        view.text = (
            opened[1] if view.finish_reason in (pb.FINISH_REASON_STOP, pb.FINISH_REASON_TOOL_CALLS) else ""
        )
    view.tool_calls = [
        (c.id, c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls or []
    ]
    if view.tool_calls and choice.finish_reason == "stop":
        # Gemini's `stop` after calls: TOOL_CALLS, the model waits for their results
        # (docs/http-providers.md, as the gateway documents it).
        view.finish_reason = pb.FINISH_REASON_TOOL_CALLS
    for call in message.tool_calls or []:  # Gemini 3 signs a turn's first call
        if signed := google_signature(call.model_extra):
            view.reasoning.append(Reasoning("", signed))
    usage = completion.usage
    details = usage.prompt_tokens_details
    extra = usage.model_extra or {}
    reasoning = (
        usage.completion_tokens_details.reasoning_tokens or 0 if usage.completion_tokens_details else 0
    )
    # xAI counts reasoning apart from completion_tokens (its total_tokens adds the two); the
    # proto's output_tokens includes reasoning, as OpenAI's completion_tokens does.
    output = usage.completion_tokens + (reasoning if kind == "xai" else 0)
    if kind == "gemini-openai" and not reasoning:
        # Gemini's thoughts are in its total_tokens (billed as output) but not in completion_tokens.
        reasoning = usage.total_tokens - usage.prompt_tokens - usage.completion_tokens
        output = usage.completion_tokens + reasoning
    view.usage = figures(
        input=usage.prompt_tokens,
        output=output,
        # DeepSeek's own name for cached input, the gateway's documented reading of it.
        cache_read=(details.cached_tokens if details else None) or extra.get("prompt_cache_hit_tokens") or 0,
        reasoning=reasoning,
    )
    assert view.usage["total"] == usage.total_tokens, "input + output is the host's own total"
    view.usage_raw = usage.to_dict()
    return view


async def sdk_stream(fake: FakeUpstream, kind: str) -> tuple[View, openai.APIError | None]:
    async with sdk_client(fake).chat.completions.stream(
        model=MODELS[kind], messages=[{"role": "user", "content": "Go on."}]
    ) as stream:
        try:
            return sdk_view(await stream.get_final_completion(), kind), None
        except (openai.LengthFinishReasonError, openai.ContentFilterFinishReasonError) as cut:
            return sdk_view(cut.completion, kind), None
        except openai.APIError as error:
            snapshot = stream.current_completion_snapshot
            return View(text=snapshot.choices[0].message.content or ""), error


def cases(suffix: str, *, errors: bool = False) -> list[Any]:
    return replay_cases(VENDOR, suffix, errors=errors)


@pytest.mark.parametrize("path", cases(".sse"))
async def test_stream_matches_sdk(path: Path, upstreams: dict[str, Any]) -> None:
    kind = host(path)
    fake, stub = upstreams[kind]
    fake.script("/v1/chat/completions", *[replay(path, "text/event-stream")] * 2)
    ours, error = await gateway_stream(stub, ask(f"{kind}/{MODELS[kind]}"))
    theirs, their_error = await sdk_stream(fake, kind)
    if theirs.raw_finish_reason in CUT_SHORT:
        assert error is not None, "an answer the host cut short ended cleanly"
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert client_retries(error)
        assert theirs.raw_finish_reason in (error.details() or "")
        assert ours.text == theirs.text
        assert ours.text
        # What the cut answer consumed: the usage the host reported in the chunk that cut it.
        trailers = dict(error.trailing_metadata() or ())
        assert (trailers.get("usage-source"), trailers.get("usage-input-tokens")) == ("partial", "212")
        return
    if their_error is None:
        assert error is None, error.details() if error else ""
        assert ours == theirs
        return
    # An error object mid-stream: the same text before it, then the host's words in a status.
    assert error is not None, "the stream ended cleanly where the SDK raised"
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert their_error.message in error.details()
    assert ours.text == theirs.text


@pytest.mark.parametrize("path", cases(".json"))
async def test_whole_answer_matches_sdk(path: Path, upstreams: dict[str, Any]) -> None:
    kind = host(path)
    fake, stub = upstreams[kind]
    fake.script("/v1/chat/completions", *[replay(path, "application/json")] * 2)
    try:
        ours = await gateway_unary(stub, ask(f"{kind}/{MODELS[kind]}"))
    except grpc.aio.AioRpcError as error:
        ours, failed = View(), error
    else:
        failed = None
    completion = await sdk_client(fake).chat.completions.create(
        model=MODELS[kind], messages=[{"role": "user", "content": "Go on."}]
    )
    if completion.choices[0].finish_reason in CUT_SHORT:  # a cut answer is no answer: an error
        assert failed is not None, "an answer the host cut short came back as a whole answer"
        assert failed.code() == grpc.StatusCode.UNAVAILABLE
        assert client_retries(failed)
        assert completion.choices[0].finish_reason in (failed.details() or "")
        # What the cut answer consumed, as the host reported it (an estimate would undercharge).
        usage = completion.usage
        assert usage is not None
        trailers = dict(failed.trailing_metadata() or ())
        assert (trailers.get("usage-source"), trailers.get("usage-input-tokens")) == (
            "partial",
            str(usage.prompt_tokens),
        )
        assert trailers.get("usage-output-tokens") == str(usage.completion_tokens)
        return
    assert failed is None, failed.details()
    assert ours == sdk_view(completion, kind)


# An HTTP error status as the gRPC code a client gets (docs/http-providers.md); 402 (DeepSeek's
# "Insufficient Balance", OpenRouter's insufficient credits) is an account out of credit, as
# OpenAI's 429 `insufficient_quota` is (docs/configuration.md); a 400 is the request refused
# (Groq's `tool_use_failed`, a call the model wrote that did not parse: neither retries it).
ERROR_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    402: grpc.StatusCode.RESOURCE_EXHAUSTED,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


@pytest.mark.parametrize("path", cases(".json", errors=True))
async def test_error_status_matches_sdk(path: Path, upstreams: dict[str, Any]) -> None:
    """`name.<http status>.json`: an error body answered with that status."""
    kind = host(path)
    fake, stub = upstreams[kind]
    status = int(path.suffixes[0].lstrip("."))
    fake.script("/v1/chat/completions", *[replay(path, "application/json", status)] * 2)
    ours, error = await gateway_stream(stub, ask(f"{kind}/{MODELS[kind]}"))
    with pytest.raises(openai.APIStatusError) as raised:
        await sdk_stream(fake, kind)
    assert raised.value.status_code == status
    assert error is not None
    assert error.code() == ERROR_CODES[status]
    # The host's words, except key-shaped tokens (Groq's `org_...` id), which the gateway masks
    # (http/errors.py `redact`), as for OpenAI's `org-...`.
    said = re.sub(r"\borg[-_]\w+", "***", raised.value.body["message"])  # type: ignore[index]
    assert said in error.details()
    # What the message tells its reader to see (Groq's `failed_generation`) is in it too.
    generated = raised.value.body.get("failed_generation")  # type: ignore[union-attr]
    if generated:
        assert generated in error.details()
    assert ours.text == ""
