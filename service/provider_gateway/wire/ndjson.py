"""An incremental newline-delimited JSON decoder (Ollama's stream format): bytes in, values out.

Work is linear in the bytes fed (only new bytes are scanned for a newline), and a line longer than
`max_line_bytes` raises NdjsonError, so an upstream that never ends its line costs bounded memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from provider_gateway.wire import json_text

MAX_LINE_BYTES = 8 * 1024 * 1024  # far above any real line; Ollama sends a token per line


class NdjsonError(ValueError):
    """A line that is not JSON (the message quotes a short prefix of it), or one that is too long."""


class NdjsonDecoder:
    """Feed bytes with `feed`; `close` parses a last line that had no newline."""

    __slots__ = ("_buffer", "_max")

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._max = max_line_bytes
        self._buffer = bytearray()  # the current partial line

    @property
    def pending(self) -> bool:
        return bool(self._buffer.strip())

    def feed(self, chunk: bytes) -> Iterator[Any]:
        """The complete lines' values. Lines are split now and parsed as iterated, so the values
        before a malformed line are still delivered before its error."""
        end = chunk.rfind(b"\n")
        if end < 0:  # no line ends here: keep the bytes, scan them once
            self._buffer += chunk
            lines: list[bytes] = []
        else:
            lines = (bytes(self._buffer) + chunk[:end] if self._buffer else chunk[:end]).split(b"\n")
            self._buffer[:] = chunk[end + 1 :]
        return self._values(lines, rest_too_long=len(self._buffer) > self._max)

    def _values(self, lines: list[bytes], rest_too_long: bool) -> Iterator[Any]:
        for line in lines:
            if len(line) > self._max:
                raise NdjsonError(f"an NDJSON line longer than {self._max} bytes")
            if line.strip():
                yield _parse(line)
        if rest_too_long:
            raise NdjsonError(f"an NDJSON line longer than {self._max} bytes")

    def close(self) -> Iterator[Any]:
        rest = bytes(self._buffer)
        self._buffer.clear()
        return (_parse(line) for line in [rest] if line.strip())


def _parse(line: bytes) -> Any:
    try:
        return json_text.loads(line)
    except orjson.JSONDecodeError:
        preview = line[:80].decode("utf-8", errors="replace")
        raise NdjsonError(f"malformed NDJSON line: {preview!r}") from None
