"""JSON from upstreams, read as the vendors' Python SDKs read it.

orjson (fast, and bounded at 1024 levels of nesting) refuses a string escape holding half of a
UTF-16 surrogate pair (`"\\ud83d"`), which Python's json module, and so the official SDKs, accept:
a server written in a UTF-16 language that cuts a string between the two halves of an emoji sends
one. Only such a document is read again with the json module; anything else orjson refuses stays
refused, with orjson's error. The edge makes the lone halves well-formed (server/well_formed.py).
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def loads(data: bytes | str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if "surrogate" not in str(exc):
            raise
        try:
            return json.loads(data)
        except (ValueError, RecursionError):
            raise exc from None
