"""Tool-call ids as Anthropic and Bedrock Converse take them back.

Both refuse a `tool_use` / `toolUse` id outside `^[a-zA-Z0-9_-]+$` (Bedrock also caps it at 64
characters), yet a history may hold ids another host minted: Kimi K2's `functions.get:0`, a
fallback's `call.1`... Such ids are rewritten by a pure function of the id, so a call and its
result (sent in different turns) keep matching, and two ids never merge into one.
"""

from __future__ import annotations

import hashlib
import re

MAX_TOOL_ID = 64  # Bedrock's documented limit; Anthropic documents none, so the same is used there
_VALID = re.compile(rf"[a-zA-Z0-9_-]{{1,{MAX_TOOL_ID}}}")
_INVALID_CHARACTER = re.compile(r"[^a-zA-Z0-9_-]")
_HASH_CHARACTERS = 12  # 48 bits of the original id: collisions need ~16 million distinct ids


def word_tool_id(call_id: str) -> str:
    """`call_id` when it is valid; else its valid characters (others as `_`) and a short hash."""
    if _VALID.fullmatch(call_id):
        return call_id
    return hashed_tool_id(call_id, _INVALID_CHARACTER.sub("_", call_id), MAX_TOOL_ID)


def hashed_tool_id(call_id: str, readable: str, limit: int) -> str:
    """An id of at most `limit` characters for `call_id`: `readable` (what of it a host takes), cut
    to leave room, and a short hash of the whole original, which keeps distinct ids distinct."""
    digest = hashlib.sha256(call_id.encode()).hexdigest()[:_HASH_CHARACTERS]
    readable = readable[: limit - _HASH_CHARACTERS - 1]
    return f"{readable}_{digest}" if readable else f"id_{digest}"
