"""OpenAI's token log-probabilities, as Chat Completions (`choices[].logprobs.content[]`) and the
Responses API (`output_text` parts' and `response.output_text.delta` events' `logprobs`) both
send them: `{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}`, `bytes` a list of
the token's UTF-8 byte values or null ([OAI-SDK] `types/chat/chat_completion_token_logprob.py`,
`types/responses/response_output_text.py`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from provider_gateway.domain import ChatRequest, TokenLogprob
from provider_gateway.providers.structured_output import unhonoured


def token_logprobs(entries: Any) -> tuple[TokenLogprob, ...]:
    """A list of OpenAI's token entries (None or absent: none)."""
    return tuple(_entry(entry, _top(entry.get("top_logprobs"))) for entry in entries or ())


def _top(alternatives: Any) -> tuple[TokenLogprob, ...]:
    return tuple(_entry(alternative, ()) for alternative in alternatives or ())


def _entry(entry: Mapping[str, Any], top: tuple[TokenLogprob, ...]) -> TokenLogprob:
    utf8 = entry.get("bytes")
    return TokenLogprob(
        str(entry["token"]), float(entry["logprob"]), None if utf8 is None else bytes(utf8), top
    )


def refuse_on_reasoning_models(request: ChatRequest, reasoning_model: bool) -> None:
    """OpenAI's reasoning models (o-series, gpt-5) give no logprobs: refused, never sent unheard."""
    if request.logprobs is not None and reasoning_model:
        raise unhonoured("logprobs", "OpenAI", request.model, "reasoning models give no logprobs")
