"""JSON from upstreams, read as the vendors' Python SDKs read it, and text protobuf can carry.

orjson (fast, and bounded at 1024 levels of nesting) refuses a string escape holding half of a
UTF-16 surrogate pair (`"\\ud83d"`), which Python's json module, and so the official SDKs, accept:
a server written in a UTF-16 language that cuts a string between the two halves of an emoji sends
one. Only such a document is read again with the json module, strictly as UTF-8 and without
NaN or Infinity; anything else orjson refuses (invalid UTF-8 bytes included) stays refused, with
orjson's error. The strings read keep the lone halves; protobuf, OpenTelemetry and orjson refuse
to encode them, so what is sent on is made well-formed first (`well_formed_text`, and at the gRPC
edge server/well_formed.py).
"""

from __future__ import annotations

import json
from typing import Any

import orjson

# orjson's messages for an escape that holds half of a surrogate pair.
_HALF_ESCAPE = ("low surrogate", "high surrogate")


def loads(data: bytes | str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        message = str(exc)
        # A str that already holds a lone half (text read here before) is refused as not UTF-8.
        held = isinstance(data, str) and "surrogates not allowed" in message
        if not held and not any(part in message for part in _HALF_ESCAPE):
            raise
        try:
            text = data.decode("utf-8") if isinstance(data, bytes) else data
            return json.loads(text, parse_constant=_no_constant)
        except (ValueError, RecursionError):
            raise exc from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # as orjson refuses it


def well_formed_text(text: str) -> str:
    """`text` with each surrogate pair joined and each lone half replaced by U+FFFD."""
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def well_formed_json(value: Any) -> Any:
    """A JSON value (dicts, lists, strings, numbers) with every string well-formed."""
    if type(value) is str:
        return well_formed_text(value)
    if isinstance(value, list | tuple):
        return [well_formed_json(item) for item in value]
    if isinstance(value, dict):
        return {well_formed_json(key): well_formed_json(item) for key, item in value.items()}
    return value


def dumps(value: Any) -> bytes:
    """orjson's encoding of `value`; its strings made well-formed first if one holds a lone half."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return orjson.dumps(well_formed_json(value))
