"""Tool-call ids for vendors that send none (Gemini without `functionCall.id`, Ollama's /api/chat,
OpenAI-compatible servers without `tool_calls[].id`).

A made-up id must differ from every id of the conversation it will be replayed in: an agent loop
sends all its earlier calls back, and a request holding two calls with one id is refused (a result
could not say which call it answers). A counter restarting with every answer repeats itself in the
next turn, so each answer draws a random tag once, at its first made-up id, and numbers its calls
after it: `name-<tag>_<n>` (Gemini, Ollama) or `call_<tag>_<n>` (OpenAI family). The tag holds no
"-": Gemini's codec reads a function's name back from the part before the last "-".
"""

from __future__ import annotations

import re
import secrets

# 48 random bits: two answers of one conversation (hundreds of turns at most) share a tag with a
# chance far below one in a million.
_TAG_BYTES = 6
# The forms above, and the counter-only `name-0` of earlier gateway versions, which clients still
# replay from stored conversations (their `call_0` is not told apart from a host's `call_4162774`).
_MADE_UP = re.compile(rf"(?:-|^call_)[0-9a-f]{{{2 * _TAG_BYTES}}}_[0-9]+$|-[0-9]+$")


def answer_tag() -> str:
    """A new answer's tag (hex: letters and digits, valid in every vendor's tool ids)."""
    return secrets.token_hex(_TAG_BYTES)


def is_made_up(call_id: str) -> bool:
    """Whether an id has the form of one the gateway made up (the vendor issued none)."""
    return _MADE_UP.search(call_id) is not None
