"""Text that protobuf can carry: lone halves of UTF-16 surrogate pairs made well-formed.

An upstream's JSON may escape half of a surrogate pair in one string (`"\\ud83d"`), the other
half in the next delta (wire/json_text.py reads it as the SDKs do). Python keeps such a string;
protobuf refuses to encode it (UnicodeEncodeError), which would fail the whole call. At the edge,
only once a conversion has failed, the answer's strings are mended: halves side by side in one
string become their character (deltas in hand together are joined before, and a first half that
ends a stream's text or reasoning delta waits for what follows: server/coalesce.py), and a half alone
becomes U+FFFD, as any decoder shows a broken character. Nothing else changes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from provider_gateway.wire.json_text import well_formed_text


def mended[T](value: T) -> T:
    """`value` (a domain event or answer, and what it holds) with every string well-formed."""
    return _mended(value)  # type: ignore[no-any-return]


def _mended(value: Any) -> Any:
    if type(value) is str:
        return well_formed_text(value)
    if isinstance(value, list | tuple):
        return type(value)(_mended(item) for item in value)
    if isinstance(value, dict):
        return {_mended(key): _mended(item) for key, item in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: _mended(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
        return dataclasses.replace(value, **changes)
    return value
