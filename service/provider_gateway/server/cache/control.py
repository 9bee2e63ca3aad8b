"""The caller's say, per request: HTTP's `cache-control` request directives, as gRPC metadata."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

HEADER = "cache-control"
# Response initial metadata: whether the answer came from the cache.
STATUS_HEADER = "x-gateway-cache"
HIT = ((STATUS_HEADER, "hit"),)
MISS = ((STATUS_HEADER, "miss"),)


class Directives(NamedTuple):
    read: bool  # may be answered from the cache
    store: bool  # its answer may be kept


DEFAULT = Directives(read=True, store=True)


def directives(metadata: Sequence[tuple[str, str | bytes]] | None) -> Directives:
    """`no-cache`: do not answer from the cache, but keep the fresh answer; `no-store`: neither.
    Other directives (max-age, ...) are ignored; so are their cases and spaces, as in HTTP."""
    read = store = True
    for name, value in metadata or ():
        if name != HEADER:
            continue
        text = value.decode(errors="replace") if isinstance(value, bytes) else value
        for directive in text.lower().split(","):
            word = directive.strip()
            if word == "no-cache":
                read = False
            elif word == "no-store":
                read = store = False
    return DEFAULT if read and store else Directives(read, store)
