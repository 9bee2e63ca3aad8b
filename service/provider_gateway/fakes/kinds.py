"""Default behaviour of each kind of fake upstream: a plausible answer in the vendor's format.

Used by `provider-gateway fake-upstream <kind>` so a person can point the gateway at a fake and
try a provider by hand; tests script exact replies on top. Add a kind with a line in `KINDS`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from provider_gateway.fakes.server import FakeUpstream, RecordedRequest, Reply

GREETING = ["Hello", " from", " the", " fake", " upstream", "."]


def _openai_chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _openai_chat(request: RecordedRequest) -> Reply:
    if "authorization" not in request.headers and "api-key" not in request.headers:
        return Reply.error(401, {"error": {"message": "missing API key", "type": "invalid_request_error"}})
    body = request.json()
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        return Reply.error(
            400, {"error": {"message": "'messages' is required", "type": "invalid_request_error"}}
        )
    model = str(body.get("model", "fake"))
    usage = {"prompt_tokens": 9, "completion_tokens": len(GREETING), "total_tokens": 9 + len(GREETING)}
    if not body.get("stream"):
        return Reply.json(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "".join(GREETING)},
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            }
        )
    events: list[Any] = [_openai_chunk(model, {"role": "assistant", "content": ""})]
    events += [_openai_chunk(model, {"content": word}) for word in GREETING]
    events.append(_openai_chunk(model, {}, "stop"))
    if (body.get("stream_options") or {}).get("include_usage"):
        events.append({"id": "chatcmpl-fake", "model": model, "choices": [], "usage": usage})
    reply = Reply.sse(events)
    reply.chunk_delay_s = 0.05
    return reply


def _openai_models(request: RecordedRequest) -> Reply:
    return Reply.json(
        {"object": "list", "data": [{"id": "fake-model", "object": "model", "owned_by": "fake"}]}
    )


def openai(fake: FakeUpstream) -> None:
    """OpenAI Chat Completions and the compatible family (any base path; Azure's deployments too)."""
    fake.on("POST", "*", lambda r: _openai_chat(r) if r.path.endswith("/chat/completions") else _unknown(r))
    fake.on("GET", "*", lambda r: _openai_models(r) if r.path.endswith("/models") else _unknown(r))


def _unknown(request: RecordedRequest) -> Reply:
    return Reply.error(404, {"error": {"message": f"no such path {request.path}"}})


def _ollama_chat(request: RecordedRequest) -> Reply:
    body = request.json()
    model = str(body.get("model", ""))
    if model != "llama3.2" and not model.startswith("fake"):
        return Reply.error(404, {"error": f"model '{model}' not found, try pulling it first"})
    done = {
        "model": model,
        "created_at": "2026-01-01T00:00:00Z",
        "message": {"role": "assistant", "content": ""},
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": 9,
        "eval_count": len(GREETING),
    }
    lines: list[Any] = [
        {"model": model, "message": {"role": "assistant", "content": w}, "done": False} for w in GREETING
    ]
    if body.get("stream", True) is False:
        return Reply.json(done | {"message": {"role": "assistant", "content": "".join(GREETING)}})
    reply = Reply.ndjson([*lines, done])
    reply.chunk_delay_s = 0.05
    return reply


def ollama(fake: FakeUpstream) -> None:
    """Ollama's native API: /api/chat (NDJSON), /api/tags, /api/version."""
    fake.on("POST", "/api/chat", _ollama_chat)
    fake.on(
        "GET",
        "/api/tags",
        lambda r: Reply.json({"models": [{"name": "llama3.2:latest", "model": "llama3.2:latest"}]}),
    )
    fake.on("GET", "/api/version", lambda r: Reply.json({"version": "0.0.0-fake"}))


# Azure and Mistral speak the OpenAI format (any base path, so Azure's deployment paths work too).
KINDS: dict[str, Callable[[FakeUpstream], None]] = {
    "openai": openai,
    "azure": openai,
    "mistral": openai,
    "ollama": ollama,
}


def build(kind: str) -> FakeUpstream:
    fake = FakeUpstream()
    KINDS[kind](fake)
    return fake


# Where a provider's base_url should point on the fake (the vendors' own base paths).
BASE_PATHS = {"openai": "/v1", "mistral": "/v1"}
