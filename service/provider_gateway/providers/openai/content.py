"""The family's rule for message content that is not a string: decoded by documented chunk
types, or the stream fails with an error that names the type. Never dropped.

OpenAI documents two content parts in assistant messages: `text` and `refusal`. A host that
answers with other chunk types (Mistral's `thinking`, `reference`...) has a wire of its own that
knows them (`mistral.py`); a type nobody documents is an error, since the client would otherwise get
an answer with a piece silently missing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from provider_gateway.domain import StreamEvent, TextDelta
from provider_gateway.errors import ErrorKind, GatewayError


def undecodable(provider: str, what: str) -> GatewayError:
    """Content the gateway cannot represent: not retried (the same host answers the same way)."""
    return GatewayError(
        ErrorKind.UNAVAILABLE,
        f"{provider or 'the upstream'} answered with {what}, which the gateway cannot decode for this "
        "provider kind; nothing was dropped, the answer was stopped instead",
        provider=provider,
        retryable=False,
    )


def chunk_type(chunk: Any, provider: str) -> str:
    if not isinstance(chunk, Mapping) or not isinstance(chunk.get("type"), str):
        raise undecodable(provider, f"a content chunk without a type ({str(chunk)[:60]!r})")
    return str(chunk["type"])


def decode_content(
    value: Any, provider: str, chunk: Callable[[Mapping[str, Any], str, str], list[StreamEvent]]
) -> list[StreamEvent]:
    """A string is text; a list is decoded chunk by chunk by `chunk(chunk, type, provider)`;
    anything else (an object, a number) is undecodable."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [TextDelta(value)]
    if not isinstance(value, list):
        raise undecodable(provider, f"content of JSON type {type(value).__name__}")
    events: list[StreamEvent] = []
    for item in value:
        events.extend(chunk(item, chunk_type(item, provider), provider))
    return events


def family_chunk(chunk: Mapping[str, Any], kind: str, provider: str) -> list[StreamEvent]:
    """OpenAI's documented assistant content parts: `text` and `refusal` (as text)."""
    text = chunk.get("text") if kind == "text" else chunk.get("refusal") if kind == "refusal" else None
    if not isinstance(text, str):
        raise undecodable(provider, f"a content chunk of type {kind!r}")
    return [TextDelta(text)] if text else []
