"""Default behaviour of each kind of fake upstream: a plausible answer in the vendor's format.

Used by `provider-gateway fake-upstream <kind>` so a person can point the gateway at a fake and
try a provider by hand; tests script exact replies on top. Add a kind with a line in `KINDS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from provider_gateway.fakes import chat_completions as cc
from provider_gateway.fakes import logprobs as lp
from provider_gateway.fakes import mistral as mistral_wire
from provider_gateway.fakes import openai_responses
from provider_gateway.fakes.server import FakeUpstream, RecordedRequest, Reply

GREETING = ["Hello", " from", " the", " fake", " upstream", "."]


def _openai_chat(request: RecordedRequest) -> Reply:
    if "authorization" not in request.headers and "api-key" not in request.headers:
        return Reply.error(401, {"error": {"message": "missing API key", "type": "invalid_request_error"}})
    body = request.json()
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        return Reply.error(
            400, {"error": {"message": "'messages' is required", "type": "invalid_request_error"}}
        )
    model = str(body.get("model", "fake"))
    usage = cc.usage(9, len(GREETING))
    top = int(body.get("top_logprobs") or 0)
    scored = bool(body.get("logprobs"))  # each word is one token

    def logprobs(words: list[str | bytes], start: int) -> dict[str, Any] | None:
        return cc.content_logprobs(lp.openai_entries(words, top, start)) if scored else None

    if not body.get("stream"):
        answer = cc.message("".join(GREETING))
        return Reply.json(cc.completion(model, answer, "stop", usage, logprobs=logprobs([*GREETING], 0)))
    events: list[Any] = [cc.chunk(model, {"role": "assistant", "content": "", "refusal": None})]
    events += [
        cc.chunk(model, {"content": word}, logprobs=logprobs([word], i)) for i, word in enumerate(GREETING)
    ]
    events.append(cc.chunk(model, {}, "stop"))
    if (body.get("stream_options") or {}).get("include_usage"):
        events.append(cc.usage_chunk(model, usage))
    reply = Reply.sse(events)
    reply.chunk_delay_s = 0.05
    return reply


def _openai_models(request: RecordedRequest) -> Reply:
    return Reply.json(
        {"object": "list", "data": [{"id": "fake-model", "object": "model", "owned_by": "fake"}]}
    )


def _openai_post(request: RecordedRequest) -> Reply:
    if request.path.endswith("/chat/completions"):
        return _openai_chat(request)
    if request.path.endswith("/responses"):
        return openai_responses.serve(request)
    return _unknown(request)


def openai(fake: FakeUpstream) -> None:
    """OpenAI Chat Completions and the compatible family (any base path; Azure's deployments too),
    and the Responses API (`/v1/responses`, Azure's `/openai/v1/responses`)."""
    fake.on("POST", "*", _openai_post)
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


def mistral(fake: FakeUpstream) -> None:
    """Mistral's chat API with its content chunks (`fakes.mistral`); models as OpenAI lists them."""
    fake.on(
        "POST", "*", lambda r: mistral_wire.serve(r) if r.path.endswith("/chat/completions") else _unknown(r)
    )
    fake.on("GET", "*", lambda r: _openai_models(r) if r.path.endswith("/models") else _unknown(r))


# Azure speaks the OpenAI format (any base path, so Azure's deployment paths work too).
KINDS: dict[str, Callable[[FakeUpstream], None]] = {
    "openai": openai,
    "azure": openai,
    "mistral": mistral,
    "ollama": ollama,
}


def build(kind: str) -> FakeUpstream:
    fake = FakeUpstream()
    KINDS[kind](fake)
    return fake


# Where a provider's base_url should point on the fake (the vendors' own base paths).
BASE_PATHS = {"openai": "/v1", "mistral": "/v1"}
