"""Mistral's chat answers as Mistral documents them (docs.mistral.ai, reasoning and chat pages; the
`mistralai` SDK's `CompletionChunk`, `ChatCompletionResponse`, `ThinkChunk`, `ReferenceChunk`).

What differs from OpenAI's bodies: content may be a list of chunks (`thinking` chunks holding
`text` chunks, `text`, `reference`...), a reasoning stream sends its thinking as chunk lists and
its answer as plain strings, tool calls arrive whole with 9-character ids (arguments a string or
an object), usage comes unasked on the last chunk, and there is no `system_fingerprint`.
`serve` answers the gateway's requests: models named `magistral-*` (or asked for reasoning) think
first, others greet.
"""

from __future__ import annotations

from typing import Any

from provider_gateway.fakes.chat_completions import CREATED
from provider_gateway.fakes.server import RecordedRequest, Reply

THINKING = ("The user greets me.", " A short, friendly answer", " is best.")
ANSWER = ("Hello", "! How can", " I help?")
SIGNATURE = "sig-mistral-fake-1"


def thinking_chunk(*texts: str, signature: str | None = None) -> dict[str, Any]:
    chunk: dict[str, Any] = {"type": "thinking", "thinking": [{"type": "text", "text": t} for t in texts]}
    if signature is not None:
        chunk["signature"] = signature
    return chunk


def usage(prompt: int, completion: int, **extra: Any) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    } | extra


def chunk(model: str, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return {
        "id": "cmpl-fake",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "choices": [choice],
    } | extra


def completion(model: str, content: Any, finish: str = "stop", **message: Any) -> dict[str, Any]:
    return {
        "id": "cmpl-fake",
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content} | message,
                "finish_reason": finish,
            }
        ],
        "usage": usage(12, 40, prompt_tokens_details={"cached_tokens": 0}),
    }


def thinking_stream(model: str) -> list[dict[str, Any]]:
    """A Magistral/adjustable-reasoning stream: thinking as chunk lists, then the answer as strings,
    usage on the finishing chunk."""
    return [
        chunk(model, {"role": "assistant", "content": ""}),
        *(chunk(model, {"content": [thinking_chunk(t)]}) for t in THINKING),
        chunk(model, {"content": [thinking_chunk(signature=SIGNATURE)]}),
        *(chunk(model, {"content": t}) for t in ANSWER),
        chunk(model, {"content": ""}, "stop", usage=usage(12, 40)),
    ]


def thinking_completion(model: str) -> dict[str, Any]:
    """The same answer unary: one thinking chunk (with its signature) and one text chunk."""
    content = [
        thinking_chunk("".join(THINKING), signature=SIGNATURE),
        {"type": "text", "text": "".join(ANSWER)},
    ]
    return completion(model, content)


def serve(request: RecordedRequest) -> Reply:
    """The gateway's requests to `/v1/chat/completions` (key checked as Mistral does: 401)."""
    if "authorization" not in request.headers:
        return Reply.error(401, {"detail": "Unauthorized"})
    body = request.json()
    model = str(body.get("model", "mistral-small-latest"))
    thinks = model.startswith("magistral") or body.get("reasoning_effort") not in (None, "none")
    if body.get("stream"):
        if thinks:
            return Reply.sse(thinking_stream(model))
        words = [chunk(model, {"content": t}) for t in ANSWER]
        return Reply.sse([*words, chunk(model, {"content": ""}, "stop", usage=usage(12, 6))])
    return Reply.json(thinking_completion(model) if thinks else completion(model, "".join(ANSWER)))
