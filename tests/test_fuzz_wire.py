"""Property-based fuzzing of the shared wire decoders (SSE and NDJSON): arbitrary bytes, split
anywhere, never raise anything but the documented error, and give the same result whatever the
chunking (a TCP read can end inside a UTF-8 character or between CR and LF)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sse = pytest.importorskip("provider_gateway.wire.sse")
ndjson = pytest.importorskip("provider_gateway.wire.ndjson")

FUZZ = settings(max_examples=300, deadline=None, derandomize=True)
cuts = st.lists(st.integers(min_value=0, max_value=400), max_size=8)


def pieces(data: bytes, points: list[int]) -> list[bytes]:
    marks = sorted({min(p, len(data)) for p in points})
    return [data[a:b] for a, b in zip([0, *marks], [*marks, len(data)], strict=True)]


def syntax(tokens: list[bytes]) -> st.SearchStrategy[bytes]:
    return st.lists(
        st.one_of(st.sampled_from(tokens), st.text(max_size=10).map(str.encode), st.binary(max_size=6)),
        max_size=40,
    ).map(b"".join)


sse_bytes = syntax(
    [
        b"data:",
        b"data: ",
        b"event: x",
        b"id: 7",
        b"id: a\0b",
        b"retry: 10",
        b"retry: x",
        b":",
        b"\xef\xbb\xbf",
        b"\n",
        b"\r",
        b"\r\n",
        b"\n\n",
        "é".encode(),
    ]
)
ndjson_bytes = syntax([b"{", b"}", b"[", b"]", b'"a"', b":", b",", b"1", b"null", b"\n", b"\r\n", b" "])


def sse_decode(chunks: list[bytes]) -> list[Any]:
    decoder = sse.SseDecoder()
    events = [event for chunk in chunks for event in decoder.feed(chunk)]
    return [*events, *decoder.close()]


@FUZZ
@given(sse_bytes, cuts)
def test_sse_never_raises_and_ignores_chunking(data: bytes, points: list[int]) -> None:
    whole = sse_decode([data])
    assert sse_decode(pieces(data, points)) == whole
    assert sse_decode([data[i : i + 1] for i in range(len(data))]) == whole


def ndjson_decode(chunks: list[bytes]) -> tuple[list[Any], bool]:
    """The values, and whether a NdjsonError ended the stream (anything else escapes the test)."""
    decoder = ndjson.NdjsonDecoder()
    values: list[Any] = []
    try:
        for chunk in chunks:
            values.extend(decoder.feed(chunk))
        values.extend(decoder.close())
    except ndjson.NdjsonError:
        return values, True
    return values, False


@FUZZ
@given(ndjson_bytes, cuts)
def test_ndjson_raises_only_ndjson_error_and_ignores_chunking(data: bytes, points: list[int]) -> None:
    whole, whole_failed = ndjson_decode([data])
    split, split_failed = ndjson_decode(pieces(data, points))
    assert split_failed == whole_failed
    if not whole_failed:
        assert split == whole


def outcome(decode: Any, chunks: list[bytes]) -> Any:
    """The decoded values, or the decoder's own error type when it refused the input."""
    try:
        return decode(chunks)
    except (sse.SseError, ndjson.NdjsonError) as error:
        return type(error)


@FUZZ
@given(sse_bytes, cuts, st.integers(min_value=1, max_value=24))
def test_sse_size_bound_holds_whatever_the_chunking(data: bytes, points: list[int], bound: int) -> None:
    def decode(chunks: list[bytes]) -> list[Any]:
        decoder = sse.SseDecoder(max_event_bytes=bound)
        events = [event for chunk in chunks for event in decoder.feed(chunk)]
        return [*events, *decoder.close()]

    whole = outcome(decode, [data])
    assert outcome(decode, pieces(data, points)) == whole
    assert outcome(decode, [data[i : i + 1] for i in range(len(data))]) == whole
    if whole is not sse.SseError:
        # The bound is on the bytes received; an invalid byte decodes to U+FFFD, 3 bytes in UTF-8.
        assert all(len(event.data.encode()) - 2 * event.data.count("\ufffd") <= bound for event in whole)


@FUZZ
@given(ndjson_bytes, cuts, st.integers(min_value=1, max_value=24))
def test_ndjson_line_bound_holds_whatever_the_chunking(data: bytes, points: list[int], bound: int) -> None:
    def decode(chunks: list[bytes]) -> tuple[list[Any], bool]:
        decoder = ndjson.NdjsonDecoder(max_line_bytes=bound)
        values: list[Any] = []
        for chunk in chunks:
            values.extend(decoder.feed(chunk))
        return [*values, *decoder.close()], False

    whole = outcome(decode, [data])
    assert outcome(decode, pieces(data, points)) == whole
    if any(len(line) > bound for line in data.split(b"\n")):
        assert whole is ndjson.NdjsonError


# One-byte reads against a 64 KiB bound: a megabyte of single-byte feeds took 16 s of the suite.
@pytest.mark.parametrize(("chunk_size", "bound"), [(1, 64 * 1024), (4096, 1024 * 1024), (65536, 1024 * 1024)])
def test_one_endless_line_is_refused_at_the_bound(chunk_size: int, bound: int) -> None:
    """A broken upstream's single line of twice the bound: refused once the line passes the bound,
    not buffered."""
    sse_decoder, ndjson_decoder = sse.SseDecoder(max_event_bytes=bound), ndjson.NdjsonDecoder(bound)
    line = b"data: " + b"x" * (2 * bound)
    chunks = [line[i : i + chunk_size] for i in range(0, min(len(line), bound + 2 * chunk_size), chunk_size)]
    with pytest.raises(sse.SseError, match=f"longer than {bound} bytes"):
        [sse_decoder.feed(chunk) for chunk in chunks]
    with pytest.raises(ndjson.NdjsonError, match=f"longer than {bound} bytes"):
        [list(ndjson_decoder.feed(chunk)) for chunk in chunks]
