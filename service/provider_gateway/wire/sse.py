"""An incremental Server-Sent Events decoder, per the WHATWG `text/event-stream` rules.

Bytes go in as they arrive, complete events come out as soon as their blank line arrives, so a
token is forwarded the moment its event is complete. Lines end in `\\n`, `\\r\\n` or `\\r`; a `\\r` at
the end of a chunk is held back until the next byte shows whether a `\\n` follows. Lines are decoded
as UTF-8 only once complete, so a multi-byte character split across chunks is never damaged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LINE_END = re.compile(rb"\r\n|\r|\n")
_BOM = "\ufeff"


@dataclass(slots=True, frozen=True)
class SseEvent:
    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None


class SseDecoder:
    """Feed bytes with `feed`, call `close` at the end of the body."""

    __slots__ = ("_buffer", "_data", "_event", "_first_line", "_id", "_retry")

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None  # the last event id persists across events, as the spec says
        self._retry: int | None = None
        self._first_line = True

    @property
    def pending(self) -> bool:
        """True when a partial event is buffered: the body ended (or was cut) mid-event."""
        return bool(self._buffer or self._data or self._event)

    def feed(self, chunk: bytes) -> list[SseEvent]:
        buffer = self._buffer + chunk if self._buffer else chunk
        events: list[SseEvent] = []
        start = 0
        for match in _LINE_END.finditer(buffer):
            if match.group() == b"\r" and match.end() == len(buffer):
                break  # maybe the first half of a CRLF split across chunks
            self._line(buffer[start : match.start()], events)
            start = match.end()
        self._buffer = buffer[start:]
        return events

    def close(self) -> list[SseEvent]:
        """End of body. A trailing `\\r` ends its line; an event without its blank line is dropped."""
        events: list[SseEvent] = []
        if self._buffer.endswith(b"\r"):
            self._line(self._buffer[:-1], events)
            self._buffer = b""
        return events

    def _line(self, raw: bytes, events: list[SseEvent]) -> None:
        line = raw.decode("utf-8", errors="replace")
        if self._first_line:
            self._first_line = False
            line = line.removeprefix(_BOM)
        if not line:
            self._dispatch(events)
            return
        if line.startswith(":"):
            return  # a comment (keep-alive)
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)

    def _dispatch(self, events: list[SseEvent]) -> None:
        if self._data:
            events.append(SseEvent("\n".join(self._data), self._event or "message", self._id, self._retry))
        self._data = []
        self._event = ""
