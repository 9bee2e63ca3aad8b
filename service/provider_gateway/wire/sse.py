"""An incremental Server-Sent Events decoder, per the WHATWG `text/event-stream` rules.

Bytes go in as they arrive, complete events come out as soon as their blank line arrives, so a
token is forwarded the moment its event is complete. Lines end in `\\n`, `\\r\\n` or `\\r`; a `\\r` at
the end of a chunk is held back until the next byte shows whether a `\\n` follows. Lines are decoded
as UTF-8 only once complete, so a multi-byte character split across chunks is never damaged.

Work is linear in the bytes fed: a partial line is kept in a growing buffer and only the new bytes
are scanned. A line, or an event's data, bigger than `max_event_bytes` raises SseError, the
decoder's one error, whatever the chunking: a broken upstream sending one endless line costs
bounded memory instead of filling it.

The whole one-line `data: ` events a read starts with (a token stream's usual read) are split at
their blank lines in one pass (`_plain_events`), giving the events the line-by-line rules give;
anything else in a read is taken line by line. `payloads` hands a JSON codec those events' data
as bytes, undecoded.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

_LINE_END = re.compile(rb"\r\n|\r|\n")
_BOM = "\ufeff"
# Bytes tested as ints: `b"\r" in data` first tries its operand as an int, and builds and clears
# a TypeError (~100 ns) before it searches; `13 in data` searches at once.
CR, LF = 13, 10
MAX_EVENT_BYTES = 8 * 1024 * 1024  # far above any real event; vendors send tokens, not megabytes


class SseError(ValueError):
    """The stream broke the decoder's bound: a line or an event larger than `max_event_bytes`."""


# Not frozen: a frozen dataclass sets each field through object.__setattr__, which makes building
# one, once per event of every stream, several times dearer; events are passed on, never kept.
@dataclass(slots=True)
class SseEvent:
    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None


class SseDecoder:
    """Feed bytes with `feed`, call `close` at the end of the body."""

    __slots__ = (
        "_buffer",
        "_data",
        "_data_bytes",
        "_event",
        "_first_line",
        "_id",
        "_max",
        "_retry",
        "_scanned",
    )

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._max = max_event_bytes
        self._buffer = bytearray()  # the current partial line
        self._scanned = 0  # bytes of `_buffer` already known to hold no line end
        self._data: list[str] = []
        self._data_bytes = 0
        self._event = ""
        self._id: str | None = None  # the last event id persists across events, as the spec says
        self._retry: int | None = None
        self._first_line = True

    @property
    def pending(self) -> bool:
        """True when a partial event is buffered: the body ended (or was cut) mid-event."""
        return bool(self._buffer or self._data or self._event)

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """The events completed by `chunk`; raises SseError when a line or event outgrows the bound."""
        plain = self._plain_events(chunk)
        if plain is None:
            named = self._named_events(chunk)
            if named is None:
                return self._lines(chunk)
            events, rest = named
            return events + self._lines(rest) if rest else events
        datas, rest = plain
        events = [
            SseEvent(data.decode("utf-8", "replace"), "message", self._id, self._retry) for data in datas
        ]
        if rest:
            events += self._lines(rest)
        return events

    def payloads(self, chunk: bytes) -> Sequence[bytes | SseEvent]:
        """`feed` for a codec that reads only an event's data as JSON: each event of a read of
        plain events (`_plain_events`, nearly every read of a token stream) is its data's bytes,
        not decoded (orjson takes bytes: no str and no SseEvent per token); any other event is
        `feed`'s SseEvent. Decoded as UTF-8 ("replace"), those bytes are `feed`'s `data`."""
        plain = self._plain_events(chunk)
        if plain is None:
            return self._lines(chunk)
        datas, rest = plain
        return [*datas, *self._lines(rest)] if rest else datas

    def _plain_events(self, chunk: bytes) -> tuple[list[bytes], bytes] | None:
        """The data of the plain events a read fed between events starts with, and the rest of the
        read (the start of the next event, if any, for `_lines`); None for any other read. Plain:
        one `data: ` line each (one space after the colon), all line ends `\\n` or all `\\r\\n`.
        A read that is one such event is sliced at once; several are split in one pass at the
        blank line and `data: ` between them. The events are those the line-by-line rules give:
        every line starts `data: ` (so is not a BOM, a comment or another field), the only line
        ends are the separators' (counted), and the whole events are within the bound, so no line
        or event among them can outgrow it."""
        if chunk[:6] != b"data: " or self._buffer or self._data or self._event:
            return None
        if chunk[-2:] == b"\n\n" and len(chunk) <= self._max:  # one event and nothing more, mostly
            data = chunk[6:-2]
            if LF not in data and CR not in data:
                self._first_line = False
                return [data], b""
        crlf = CR in chunk
        blank = b"\r\n\r\n" if crlf else b"\n\n"
        whole = chunk.rfind(blank) + len(blank)  # past the last blank line
        if whole < len(blank) or whole > self._max:
            return None
        datas = chunk[6 : whole - len(blank)].split(blank + b"data: ")
        ends = 2 * len(datas)
        if chunk.count(b"\n", 0, whole) != ends or (crlf and chunk.count(b"\r", 0, whole) != ends):
            return None
        self._first_line = False
        return datas, chunk[whole:]

    def _named_events(self, chunk: bytes) -> tuple[list[SseEvent], bytes] | None:
        """`_plain_events` for events of an `event: ` line and a `data: ` line each, `\n` line
        ends (Anthropic's, Cohere's, the Responses API's): the whole ones a read fed between events
        starts with, and the rest of the read; None for any other read. Each two-line block is
        such an event only if its lines start so (so no line is a BOM, a comment or another field)
        and neither holds a line end; the whole events are within the bound."""
        if chunk[:7] != b"event: " or self._buffer or self._data or self._event or CR in chunk:
            return None
        whole = chunk.rfind(b"\n\n") + 2  # past the last blank line
        if whole < 2 or whole > self._max:
            return None
        events: list[SseEvent] = []
        for block in chunk[: whole - 2].split(b"\n\n"):
            head, _, data = block.partition(b"\n")
            if not (head.startswith(b"event: ") and data.startswith(b"data: ")) or LF in data:
                return None
            name = head[7:].decode("utf-8", "replace")
            events.append(
                SseEvent(data[6:].decode("utf-8", "replace"), name or "message", self._id, self._retry)
            )
        self._first_line = False
        return events, chunk[whole:]

    def _lines(self, chunk: bytes) -> list[SseEvent]:
        """`feed` line by line: any read, in any state."""
        if self._buffer:
            self._buffer += chunk
            buffer: bytes | bytearray = self._buffer
        else:
            buffer = chunk  # the common case: no copy of the chunk
        events: list[SseEvent] = []
        start = 0
        if CR in buffer:
            for match in _LINE_END.finditer(buffer, self._scanned):
                if match.group() == b"\r" and match.end() == len(buffer):
                    break  # maybe the first half of a CRLF split across chunks
                self._line(buffer, start, match.start(), events)
                start = match.end()
        else:  # the common case, `\n` line ends only: no regex match objects
            end = buffer.find(b"\n", self._scanned)
            while end >= 0:
                self._line(buffer, start, end, events)
                start = end + 1
                end = buffer.find(b"\n", start)
        if buffer is self._buffer:
            del self._buffer[:start]
        elif start < len(buffer):
            self._buffer += buffer[start:]
        if not self._buffer:  # the common case: the chunk ended on a line end
            self._scanned = 0
            return events
        # Rescan only the last byte next time: it may be a `\r` held back.
        self._scanned = len(self._buffer) - 1
        if len(self._buffer) - self._buffer.endswith(b"\r") > self._max:
            raise SseError(f"a line longer than {self._max} bytes")
        return events

    def close(self) -> list[SseEvent]:
        """End of body: it ends the last line, as the official SDKs' decoders take it, and the last
        event, which the spec (and those SDKs) would drop for want of its blank line. The SDKs need
        no terminal event; the gateway does, to tell a finished stream from a cut one, and vendors
        do end on `data: {"type":"message_stop"}` or `data: [DONE]` with no blank line. A cut
        mid-line still fails: its data is not the JSON the codec wants, or the terminal event
        never came."""
        events: list[SseEvent] = []
        if self._buffer:
            self._line(self._buffer, 0, len(self._buffer) - self._buffer.endswith(b"\r"), events)
            self._buffer.clear()
            self._scanned = 0
        self._dispatch(events)
        return events

    def _line(self, buffer: bytes | bytearray, start: int, end: int, events: list[SseEvent]) -> None:
        """The line `buffer[start:end]` (its line end excluded)."""
        if end - start > self._max:
            raise SseError(f"a line longer than {self._max} bytes")
        if not self._first_line and buffer.startswith(b"data:", start, end):
            # Nearly every line of a token stream: decoded without the generic split below.
            begin = start + 6 if buffer.startswith(b" ", start + 5, end) else start + 5
            self._add_data(buffer[begin:end].decode("utf-8", errors="replace"), end - start)
            return
        if start == end and not self._first_line:
            self._dispatch(events)  # the blank line that ends an event
            return
        line = buffer[start:end].decode("utf-8", errors="replace")
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
            self._add_data(value, end - start)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)

    def _add_data(self, value: str, size: int) -> None:
        self._data.append(value)
        self._data_bytes += size
        if self._data_bytes > self._max:
            raise SseError(f"an event larger than {self._max} bytes")

    def _dispatch(self, events: list[SseEvent]) -> None:
        if self._data:
            events.append(SseEvent("\n".join(self._data), self._event or "message", self._id, self._retry))
        self._data = []
        self._data_bytes = 0
        self._event = ""
