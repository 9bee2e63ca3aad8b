"""Mistral's chat wire: the family base where Mistral's API agrees, its own rules where it differs.

As Mistral documents the API (docs.mistral.ai; the `mistralai` SDK's models are the oracle):
- `content` of deltas and messages may be a list of chunks: `thinking` (itself a list of `text`
  and `reference` chunks, with an optional `signature` to replay) is reasoning, `text` is text, and
  the other documented chunks (`reference`, `image_url`, `document_url`, `file`, `input_audio`,
  `tool_reference`) have no typed event, so they reach the client as RawContent;
- tool-call ids are exactly 9 alphanumerics: ids sent are mapped to that form (stably), answers'
  ids pass as they are, a missing one is made in that form;
- tool arguments may be a JSON object instead of a string;
- `reasoning_effort` (`none`...`high`) turns adjustable reasoning on; Magistral models take
  `prompt_mode = "reasoning"` (their reasoning system prompt) when reasoning is asked for;
- multi-turn reasoning goes back as `thinking` chunks in the assistant's content (Mistral: dropping
  the trace across turns degrades the model);
- usage may add `num_cached_tokens` or `prompt_token_details` for cache hits;
- finish reason `error` is a failed generation, not an end;
- unknown fields are rejected (422), so the user message's `name` is not sent.
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Mapping
from typing import Any

import orjson

from provider_gateway.domain import (
    ChatRequest,
    Message,
    RawContent,
    ReasoningDelta,
    ReasoningPart,
    StreamEvent,
    TextDelta,
    TextPart,
    Usage,
)
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.providers.issuers import MISTRAL, issued_by
from provider_gateway.providers.openai.codec import ChatWire, normalise_usage
from provider_gateway.providers.openai.content import chunk_type, decode_content, undecodable

_ALNUM = string.ascii_letters + string.digits
# Documented chunk types with no typed event: passed on whole as RawContent.
RAW_CHUNKS = frozenset({"reference", "image_url", "document_url", "file", "input_audio", "tool_reference"})


def short_tool_id(call_id: str) -> str:
    """Mistral's rule: exactly 9 alphanumerics. Valid ids pass; others map to a stable hash."""
    if len(call_id) == 9 and call_id.isascii() and call_id.isalnum():
        return call_id
    digest = int.from_bytes(hashlib.sha256(call_id.encode()).digest()[:8], "big")
    out = []
    for _ in range(9):
        digest, digit = divmod(digest, len(_ALNUM))
        out.append(_ALNUM[digit])
    return "".join(out)


def is_magistral(model: str) -> bool:
    return model.rsplit("/", 1)[-1].startswith("magistral")


class MistralWire(ChatWire):
    # --- request -------------------------------------------------------------------------------

    def sampling(self, request: ChatRequest, body: dict[str, Any]) -> None:
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        reasoning = request.reasoning
        if reasoning and (reasoning.enabled or reasoning.effort):
            if is_magistral(request.model):
                body["prompt_mode"] = "reasoning"  # native reasoning: its system prompt
            else:
                body["reasoning_effort"] = reasoning.effort or "high"

    def assistant_content(self, message: Message) -> Any:
        """Text alone as a string; with reasoning, chunks: `thinking` blocks, then the text. A block
        another vendor issued (after a fallback) is left out, as every replay leaves out foreign
        signatures (providers/issuers.py)."""
        chunks: list[dict[str, Any]] = []
        for part in message.content:
            if (
                isinstance(part, ReasoningPart)
                and (part.text or part.signature)
                and not part.id
                and issued_by(part.issuer, MISTRAL)
            ):
                thinking: dict[str, Any] = {
                    "type": "thinking",
                    "thinking": [{"type": "text", "text": part.text}],
                }
                if part.signature and not part.redacted:
                    thinking["signature"] = part.signature
                chunks.append(thinking)
            elif isinstance(part, TextPart) and part.text:
                chunks.append({"type": "text", "text": part.text})
        if not any(c["type"] == "thinking" for c in chunks):
            return message.text or None
        return chunks

    def user(self, message: Message) -> dict[str, Any] | None:
        entry = super().user(message)
        if entry is not None:
            entry.pop("name", None)
        return entry

    def tool_id(self, call_id: str) -> str:
        return short_tool_id(call_id)

    # --- answers -------------------------------------------------------------------------------

    def content(self, value: Any, provider: str) -> list[StreamEvent]:
        return decode_content(value, provider, self._chunk)

    def _chunk(self, chunk: Mapping[str, Any], kind: str, provider: str) -> list[StreamEvent]:
        if kind == "text":
            text = chunk.get("text")
            if not isinstance(text, str):
                raise undecodable(provider, "a text chunk without text")
            return [TextDelta(text)] if text else []
        if kind == "thinking":
            return self._thinking(chunk, provider)
        if kind in RAW_CHUNKS:
            return [RawContent(kind, dict(chunk))]
        raise undecodable(provider, f"a content chunk of type {kind!r}")

    def _thinking(self, chunk: Mapping[str, Any], provider: str) -> list[StreamEvent]:
        inner = chunk.get("thinking")
        if isinstance(inner, str):  # not in the schema, but unambiguous
            inner = [{"type": "text", "text": inner}]
        if not isinstance(inner, list):
            raise undecodable(provider, "a thinking chunk whose `thinking` is not a list")
        events: list[StreamEvent] = []
        for part in inner:
            kind = chunk_type(part, provider)
            if kind == "text" and isinstance(part.get("text"), str):
                if part["text"]:
                    events.append(ReasoningDelta(part["text"]))
            elif kind in RAW_CHUNKS:
                events.append(RawContent(kind, dict(part)))
            else:
                raise undecodable(provider, f"a thinking chunk holding a {kind!r} chunk")
        signature = chunk.get("signature")
        if isinstance(signature, str) and signature:
            events.append(ReasoningDelta("", signature=signature))
        return events

    def arguments(self, value: Any) -> str:
        if isinstance(value, dict | list):  # the SDK allows an object: the client gets JSON text
            return orjson.dumps(value).decode()
        return value if isinstance(value, str) else ""

    def answer_tool_id(self, call_id: str, made_up: str) -> str:
        # Mistral's own ids (9 characters) pass as they are; for a missing one ("null" is the SDK's
        # default) the client gets an id of the form Mistral takes back.
        return call_id if call_id and call_id != "null" else short_tool_id(made_up)

    def usage(self, raw: dict[str, Any]) -> Usage:
        usage = normalise_usage(raw)
        if not usage.cache_read_tokens:
            details = raw.get("prompt_token_details") or {}  # sic: both spellings are documented
            usage.cache_read_tokens = int(details.get("cached_tokens") or raw.get("num_cached_tokens") or 0)
        return usage

    def check_finish(self, reason: str, provider: str) -> None:
        if reason == "error":
            raise GatewayError(
                ErrorKind.UNAVAILABLE,
                "mistral reported an error while generating (finish_reason error)",
                provider=provider,
                retryable=True,
            )
