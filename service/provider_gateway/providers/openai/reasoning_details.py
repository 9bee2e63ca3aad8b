"""OpenRouter's `reasoning_details`, both ways: read from answers into reasoning deltas, and built
back from an assistant turn's reasoning parts for the next request.

OpenRouter relays a reasoning model's state as entries (`reasoning.text` with `text` and Claude's
`signature`, `reasoning.encrypted` with `data`, `reasoning.summary` with `summary`), each with
`id`, `format` and `index`, and wants them back unmodified on later turns: Claude refuses a
tool-use turn without its signed thinking, Gemini a function call without its thought signature.

Read: an entry's text is reasoning; its `signature` or `data` closes the block, carrying the
entry's `id`. So one block (a domain `ReasoningPart`) is what OpenRouter streams under one index:
Claude's signed text, or Gemini's text and its encrypted signature, or an OpenAI item's summary and
its encrypted content.

Sent back: each part as the entries it was read from, in order, its position in the turn as
`index` (one block per index, as OpenRouter streams them). The proto has no `format`: it is the
vendor of the model the request names (`FORMATS`; a conversation keeps its model, so that is the
model that issued the state), "unknown" for any other vendor, as OpenRouter labels such reasoning.
Parts another provider issued (issuer set and not OpenRouter, providers/issuers.py) are left out,
as the Claude and Gemini replays leave out foreign signatures; parts of unknown issuer (older
clients, reasoning without state) go, except unsigned ones to Claude, which refuses thinking
without its signature (as anthropic/replay_rules.py leaves it out). An entry id that is one of the
turn's tool-call ids is sent as the call's id is (the codec may shorten it): Gemini's signature is
tied to its call by it.
"""

from __future__ import annotations

from typing import Any

from provider_gateway.domain import Message, ReasoningDelta, ReasoningPart
from provider_gateway.providers.issuers import OPENROUTER, issued_by

TEXT = "reasoning.text"
ENCRYPTED = "reasoning.encrypted"
SUMMARY = "reasoning.summary"
UNKNOWN_FORMAT = "unknown"
# OpenRouter's `format` by the vendor prefix of its model ids (`~` marks its "latest" aliases).
CLAUDE_FORMAT = "anthropic-claude-v1"
FORMATS = (
    ("anthropic/", CLAUDE_FORMAT),
    ("google/", "google-gemini-v1"),
    ("openai/", "openai-responses-v1"),
    ("x-ai/", "xai-responses-v1"),
)
# Formats of the Responses API, whose readable reasoning is a summary of the item.
SUMMARY_FORMATS = frozenset({"openai-responses-v1", "xai-responses-v1"})


def read_details(details: Any, reasoning: Any) -> list[ReasoningDelta]:
    """A delta's (or message's) entries as reasoning deltas: text, then a delta that closes the
    block with its state. `reasoning` (the delta's plain string, which repeats the entries' text)
    is the text only when no entry has any: read from the entries, each block gets its own text."""
    events: list[ReasoningDelta] = []
    entry_text = False
    for detail in details if isinstance(details, list) else ():
        if not isinstance(detail, dict):
            continue  # no documented entry: nothing to keep
        kind = detail.get("type")
        text = detail.get("summary" if kind == SUMMARY else "text")
        if text and isinstance(text, str):
            events.append(ReasoningDelta(text))
            entry_text = True
        if kind == TEXT and (signature := detail.get("signature")) and isinstance(signature, str):
            events.append(ReasoningDelta("", signature=signature, id=_entry_id(detail)))
        elif kind == ENCRYPTED and (data := detail.get("data")) and isinstance(data, str):
            events.append(ReasoningDelta("", signature=data, redacted=True, id=_entry_id(detail)))
    if not entry_text and reasoning and isinstance(reasoning, str):
        events.insert(0, ReasoningDelta(reasoning))
    return events


def _entry_id(detail: dict[str, Any]) -> str:
    entry_id = detail.get("id")
    return entry_id if isinstance(entry_id, str) else ""


def detail_format(model: str) -> str:
    """The `format` OpenRouter gives the reasoning of `model` (an OpenRouter model id)."""
    vendor_model = model.removeprefix("~")
    return next((fmt for prefix, fmt in FORMATS if vendor_model.startswith(prefix)), UNKNOWN_FORMAT)


def sent_details(message: Message, model: str) -> list[dict[str, Any]]:
    """The `reasoning_details` of an assistant turn sent to OpenRouter asking for `model`."""
    parts = [
        p
        for p in message.content
        if isinstance(p, ReasoningPart) and (p.text or p.signature) and issued_by(p.issuer, OPENROUTER)
    ]
    fmt = detail_format(model)
    if fmt == CLAUDE_FORMAT:
        parts = [p for p in parts if p.signature]  # redacted thinking's data is its signature
    if not parts:
        return []
    entries: list[dict[str, Any]] = []
    for index, part in enumerate(parts):
        entries.extend(_part_entries(part, fmt, index))
    return entries


def _part_entries(part: ReasoningPart, fmt: str, index: int) -> list[dict[str, Any]]:
    """One block's entries: its text, then its state (encrypted data, or the text with its
    signature). The id goes where OpenRouter puts it: on the entry with the state, and in the
    Responses formats on the summary too (both are one reasoning item)."""
    place = {"format": fmt, "index": index}
    identified = place | ({"id": part.id} if part.id else {})
    if part.signature and not part.redacted:
        return [{"type": TEXT, "text": part.text, "signature": part.signature} | identified]
    if fmt in SUMMARY_FORMATS:
        readable = {"type": SUMMARY, "summary": part.text} | identified
    else:
        readable = {"type": TEXT, "text": part.text} | place
    if not part.redacted:
        return [readable]
    encrypted = {"type": ENCRYPTED, "data": part.signature} | identified
    return [readable, encrypted] if part.text else [encrypted]
