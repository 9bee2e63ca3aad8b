"""An incremental newline-delimited JSON decoder (Ollama's stream format): bytes in, values out."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson


class NdjsonError(ValueError):
    """A line that is not JSON; the message quotes a short prefix of it."""


class NdjsonDecoder:
    """Feed bytes with `feed`; `close` parses a last line that had no newline."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    @property
    def pending(self) -> bool:
        return bool(self._buffer.strip())

    def feed(self, chunk: bytes) -> Iterator[Any]:
        """The complete lines' values. Lines are split now and parsed as iterated, so the values
        before a malformed line are still delivered before its error."""
        buffer = self._buffer + chunk if self._buffer else chunk
        *lines, self._buffer = buffer.split(b"\n")
        return (_parse(line) for line in lines if line.strip())

    def close(self) -> Iterator[Any]:
        rest, self._buffer = self._buffer, b""
        return (_parse(line) for line in [rest] if line.strip())


def _parse(line: bytes) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        preview = line[:80].decode("utf-8", errors="replace")
        raise NdjsonError(f"malformed NDJSON line: {preview!r}") from None
