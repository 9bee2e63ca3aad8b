"""The two upstream decoders against plain references: the HTTP/1.1 chunked body (http/h1_wire.py)
and Server-Sent Events (wire/sse.py), each written here as the simplest whole-input reading of the
rules in the module's docstring. Their fast paths (whole chunks, whole one-line `data:` events, one
per read or several) must give what the references give, for valid and broken inputs, however
the bytes are split into reads."""

from __future__ import annotations

import re

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from provider_gateway.http.h1_wire import (
    _COMMON_NAMES,
    _SMALL_SIZES,
    DONE,
    MAX_CHUNK_LINE,
    MAX_HEAD_BYTES,
    ResponseParser,
    _chunk_size,
    _common_head,
    _read_head,
)
from provider_gateway.wire.sse import SseDecoder, SseError, SseEvent

PROPERTY = settings(max_examples=400, deadline=None, derandomize=True)
cuts = st.lists(st.integers(min_value=0, max_value=600), max_size=8)


def pieces(data: bytes, points: list[int]) -> list[bytes]:
    marks = sorted({min(p, len(data)) for p in points})
    return [data[a:b] for a, b in zip([0, *marks], [*marks, len(data)], strict=True)]


# HTTP/1.1 chunked bodies

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
_SIZE_LINE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?")

Outcome = tuple[str, bytes, bool]  # "done" / "waiting" / "error", the body so far, reusable


def reference_chunked(body: bytes) -> Outcome:
    """The body as RFC 9112 section 7.1 frames it, read from a whole buffer."""
    out: list[bytes] = []
    at = 0
    while True:
        end = body.find(b"\r\n", at)
        if end < 0 or end - at > MAX_CHUNK_LINE:
            if len(body) - at > MAX_CHUNK_LINE:
                return "error", b"", True
            return "waiting", b"".join(out), True
        size_line = _SIZE_LINE.fullmatch(body[at:end])
        if size_line is None:
            return "error", b"", True
        size, at = int(size_line.group(1), 16), end + 2
        if not size:
            break
        out.append(body[at : at + size])
        after = body[at + size : at + size + 2]
        if not b"\r\n".startswith(after):
            return "error", b"", True
        if len(body) < at + size + 2:
            return "waiting", b"".join(out), True
        at += size + 2
    left = MAX_HEAD_BYTES  # the trailer section's bound
    while True:
        end = body.find(b"\r\n", at)
        if end < 0:
            return ("error", b"", True) if len(body) - at > left else ("waiting", b"".join(out), True)
        left -= end - at + 2
        if left < 0:
            return "error", b"", True
        if end == at:  # the empty line that ends the trailers: bytes after it spoil the connection
            return "done", b"".join(out), end + 2 == len(body)
        at = end + 2


def parsed(reads: list[bytes]) -> Outcome:
    parser = ResponseParser()
    try:
        for read in reads:
            parser.feed(read)
    except httpx.RemoteProtocolError:
        return "error", b"", True
    state = "done" if parser.state == DONE else "waiting"
    return state, b"".join(parser.body), parser.reusable


extension = st.sampled_from([b"", b";a=b", b" ;x", b"\t;", b";" + b"e" * 1030])


@st.composite
def chunk(draw: st.DrawFn) -> bytes:
    data = draw(st.one_of(st.binary(max_size=24), st.sampled_from([b"data: {}\n\n", b"\r\n", b"0\r\n\r\n"])))
    digits = b"0" * draw(st.integers(0, 2)) + f"{len(data):x}".encode()
    if draw(st.booleans()):
        digits = digits.upper()
    return digits + draw(extension) + b"\r\n" + data + b"\r\n"


odd_pieces = st.sampled_from(
    [
        b"0\r\n",
        b"\r\n",
        b"x-trailer: 1\r\n",
        b"+5\r\n",
        b"0x5\r\n",
        b" 5\r\n",
        b"5 \r\n",
        b"-0\r\n",
        b"1_0\r\n",
        b"1" * 17 + b"\r\n",
        b"\r",
        b"\n",
        b"5\r\nabc\r\n",
        b"3\r\nabcd\r\n",
        b"x" * (MAX_CHUNK_LINE + 1),
        b"t: " + b"v" * MAX_HEAD_BYTES + b"\r\n",
    ]
)
valid_bodies = st.tuples(
    st.lists(chunk(), max_size=6), st.sampled_from([b"", b"t: 1\r\n", b"a: 1\r\nb: 2\r\n"])
).map(lambda parts: b"".join(parts[0]) + b"0\r\n" + parts[1] + b"\r\n")
mixed_bodies = st.lists(st.one_of(chunk(), odd_pieces, st.binary(max_size=8)), max_size=10).map(b"".join)


@PROPERTY
@given(st.one_of(valid_bodies, mixed_bodies, valid_bodies.map(lambda body: body + b"HTTP")), cuts)
def test_the_chunked_body_is_the_references_however_it_is_split(body: bytes, points: list[int]) -> None:
    expected = reference_chunked(body)
    raw = HEAD + body
    assert parsed([raw]) == expected
    assert parsed(pieces(raw, [len(HEAD) + p for p in points])) == expected
    assert parsed(pieces(raw, points)) == expected
    if len(raw) < 400:
        assert parsed([raw[i : i + 1] for i in range(len(raw))]) == expected


def test_the_reference_itself_reads_valid_waiting_and_broken_bodies() -> None:
    assert reference_chunked(b"5\r\nhello\r\n1;x\r\n \r\n0\r\nt: 1\r\n\r\n") == ("done", b"hello ", True)
    assert reference_chunked(b"5\r\nhello\r\n0\r\n\r\nHTTP") == ("done", b"hello", False)
    assert reference_chunked(b"5\r\nhel") == ("waiting", b"hel", True)
    assert reference_chunked(b"5\r\nhello\r") == ("waiting", b"hello", True)
    assert reference_chunked(b"5\r\nhellox") == ("error", b"", True)
    assert reference_chunked(b"0x5\r\nhello\r\n") == ("error", b"", True)


TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
field_names = st.one_of(st.binary(max_size=8), st.text("-aZ9_ .!\té\x7f", max_size=8).map(str.encode))


@PROPERTY
@given(field_names.filter(lambda name: not set(name) & set(b":\r\n\0")))
def test_a_field_name_is_accepted_exactly_when_it_is_a_token(name: bytes) -> None:
    """RFC 9110 section 5.1: a field name is a token, one or more tchar (common names take a
    shortcut past the regular expression: it must accept no more and no less)."""
    parser = ResponseParser()
    try:
        parser.feed(b"HTTP/1.1 200 OK\r\n" + name + b": 0\r\ncontent-length: 0\r\n\r\n")
    except httpx.RemoteProtocolError:
        accepted = False
    else:
        accepted = parser.state == DONE
    assert accepted == (bool(name) and set(name) <= TCHAR)


status_lines = st.one_of(
    st.sampled_from(
        [b"HTTP/1.1 200 OK", b"HTTP/1.0 404 Not Found", b"HTTP/1.1 429", b"HTTP/1.1 503 SERVICE UNAVAILABLE"]
    ),
    st.sampled_from([b"HTTP/1.1 200 Fine", b"HTTP/1.1 200 OK ", b"HTTP/1.2 200 OK", b"HTTP/1.1 2OO OK", b""]),
    st.builds(
        lambda code, phrase: b"HTTP/1.1 %d " % code + phrase, st.integers(0, 999), st.binary(max_size=6)
    ),
)
head_names = st.one_of(st.sampled_from(sorted(_COMMON_NAMES)).map(str.encode), field_names)
head_values = st.one_of(st.text(" \tabc-=;,0é\x7f", max_size=12).map(str.encode), st.binary(max_size=8))
head_lines = st.one_of(
    st.builds(
        lambda name, ows, value: name + b":" + ows + value,
        head_names,
        st.sampled_from([b"", b" ", b"\t "]),
        head_values,
    ),
    st.binary(max_size=10),  # no colon, an obs-fold, a bare CR or LF, a NUL...
)


@PROPERTY
@given(status_lines, st.lists(head_lines, max_size=12))
def test_the_common_heads_reading_agrees_with_the_general_one(status: bytes, lines: list[bytes]) -> None:
    """`_common_head` reads a head exactly as `_read_head` does, or leaves it to it: it passes no
    head the general reading refuses."""
    head = b"\r\n".join([status, *lines])
    common = _common_head(head)
    try:
        general = _read_head(head)
    except httpx.RemoteProtocolError:
        assert common is None
        return
    if common is not None:
        assert common[:2] == general[:2]
        assert list(common[2].items()) == list(general[2].items())


def test_the_common_heads_reading_takes_the_heads_servers_send() -> None:
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
        b"x-ratelimit-remaining-requests: 99\r\nX-Odd_Name: \xc3\xa9 \r\nDate: Mon, 07 Dec 2026 01:55:01 GMT"
    )
    assert _common_head(head) is not None
    assert _common_head(head) == _read_head(head)


# Server-Sent Events

_LINE_END = re.compile(rb"\r\n|\r|\n")


def reference_sse(data: bytes, bound: int) -> list[SseEvent] | type[SseError]:
    """The WHATWG event-stream rules over a whole body, as the decoder's docstrings state them: the
    body's end ends its last line and its last event; a line, or an event's data lines, over
    `bound` bytes is SseError."""
    lines = _LINE_END.split(data)
    if not lines[-1]:
        lines.pop()  # the body ended on a line end: no line after it
    events: list[SseEvent] = []
    values: list[str] = []
    size, kind, last_id, retry = 0, "", None, None
    for number, raw in enumerate([*lines, b""]):
        if len(raw) > bound:
            return SseError
        line = raw.decode("utf-8", "replace")
        if not number:
            line = line.removeprefix("\ufeff")
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if not line:
            if values:
                events.append(SseEvent("\n".join(values), kind or "message", last_id, retry))
            values, size, kind = [], 0, ""
        elif name == "data":
            values.append(value)
            size += len(raw)
            if size > bound:
                return SseError
        elif name == "event":
            kind = value
        elif name == "id" and "\0" not in value:
            last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            retry = int(value)
    return events


def decoded(reads: list[bytes], bound: int) -> list[SseEvent] | type[SseError]:
    decoder = SseDecoder(max_event_bytes=bound)
    try:
        return [event for read in reads for event in decoder.feed(read)] + decoder.close()
    except SseError:
        return SseError


sse_lines = st.one_of(
    st.sampled_from(
        [
            b'data: {"a":1}',
            b"data:x",
            b"data: ",
            b"data:",
            b"data:  two spaces",
            b"data: \xc3\xa9\xff",
            b"data",
            b"event: delta",
            b"id: 7",
            b"id: a\0b",
            b"retry: 15",
            b"retry: 1x",
            b": keep-alive",
            b"\xef\xbb\xbfdata: bom",
            b"",
        ]
    ),
    st.binary(max_size=6),
)
line_ends = st.sampled_from([b"\n", b"\r\n", b"\r"])
# Whole events of one `data:` line, as a token stream sends them, one per read or several: the fast paths.
token_events = st.lists(
    st.tuples(
        st.sampled_from([b"data: tok", b'data:{"k":"\xe2\x82\xac"}', b"data: [DONE]", b"data:"]), line_ends
    ),
    min_size=1,
    max_size=6,
).map(lambda events: [line + end + end for line, end in events])
any_lines = st.lists(st.tuples(sse_lines, line_ends), max_size=12).map(
    lambda lines: [a + b for a, b in lines]
)


@PROPERTY
@given(
    st.one_of(
        token_events, any_lines, st.tuples(any_lines, token_events).map(lambda parts: parts[0] + parts[1])
    ),
    cuts,
    st.booleans(),
    st.sampled_from([4, 9, 16, 64, 1 << 20]),
)
def test_the_events_are_the_references_however_the_body_is_split(
    parts: list[bytes], points: list[int], cut_tail: bool, bound: int
) -> None:
    body = b"".join(parts)
    if cut_tail and body:
        body = body[:-1]  # no blank line at the end, or only half of a CRLF
    expected = reference_sse(body, bound)
    assert decoded([body], bound) == expected
    assert decoded(parts, bound) == expected  # one read per line or event
    assert decoded(pieces(body, points), bound) == expected
    assert decoded([body[i : i + 1] for i in range(len(body))], bound) == expected


def test_the_sse_reference_itself() -> None:
    body = b"\xef\xbb\xbfid: 7\r\ndata: a\rdata:b\n\nevent: x\ndata\n\n: c\ndata: last"
    assert reference_sse(body, 64) == [
        SseEvent("a\nb", "message", "7"),
        SseEvent("", "x", "7"),
        SseEvent("last", "message", "7"),
    ]
    assert reference_sse(b"data: 123456\n\n", 10) == SseError


def test_the_chunk_sizes_looked_up_are_those_parsed() -> None:
    """`_chunked` looks the common chunk-size lines up instead of parsing them: the same sizes."""
    assert len(_SMALL_SIZES) == 4096
    assert all(_chunk_size(line) == size for line, size in _SMALL_SIZES.items())
