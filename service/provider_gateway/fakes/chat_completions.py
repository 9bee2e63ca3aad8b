"""Chat Completions bodies exactly as OpenAI documents them (the `openai` SDK's `ChatCompletion` and
`ChatCompletionChunk` types), for the OpenAI-family fakes and tests: the unary `chat.completion`
object and the stream's `chat.completion.chunk`s, with every field the API sends (nulls included),
so that the SDK, reading the same bytes, is a fair oracle for the gateway.
"""

from __future__ import annotations

from typing import Any

CREATED = 1_767_225_600  # a fixed time: replies are reproducible byte for byte


def message(
    content: Any = None, *, tool_calls: list[dict[str, Any]] | None = None, **extra: Any
) -> dict[str, Any]:
    """An assistant `message` of a unary answer (`refusal` and `annotations` as the API sends)."""
    entry: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None, "annotations": []}
    if tool_calls:
        entry["tool_calls"] = tool_calls
    return entry | extra


def tool_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def usage(
    prompt: int, completion: int, *, cached: int = 0, reasoning: int = 0, **extra: Any
) -> dict[str, Any]:
    """OpenAI's usage object: cached tokens are a part of prompt_tokens, reasoning of completion."""
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    } | extra


def completion(
    model: str,
    entry: dict[str, Any],
    finish: str,
    usage_object: dict[str, Any] | None,
    *,
    response_id: str = "chatcmpl-fake",
    logprobs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A whole `chat.completion` (the non-streaming answer); `logprobs`: the choice's, when asked
    (`{"content": [entries], "refusal": null}`)."""
    body: dict[str, Any] = {
        "id": response_id,
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [{"index": 0, "message": entry, "logprobs": logprobs, "finish_reason": finish}],
        "service_tier": "default",
        "system_fingerprint": "fp_fake",
    }
    if usage_object is not None:
        body["usage"] = usage_object
    return body


def chunk(
    model: str,
    delta: dict[str, Any],
    finish: str | None = None,
    *,
    response_id: str = "chatcmpl-fake",
    logprobs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One `chat.completion.chunk` of a stream; `logprobs`: the choice's entries for this chunk's
    tokens, when asked (null otherwise, as OpenAI sends)."""
    return {
        "id": response_id,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}],
    }


def content_logprobs(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """A choice's `logprobs` object: the content tokens' entries, no refusal."""
    return {"content": entries, "refusal": None}


def usage_chunk(
    model: str, usage_object: dict[str, Any], *, response_id: str = "chatcmpl-fake"
) -> dict[str, Any]:
    """The last chunk with `stream_options.include_usage`: no choices, the usage."""
    return {
        "id": response_id,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [],
        "usage": usage_object,
    }
