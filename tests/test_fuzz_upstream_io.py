"""Property-based fuzzing of the SSE decoder and the upstream JSON/Retry-After helpers.

The decoder must never raise, and must give the same events however the bytes are split into
chunks (a TCP read can end anywhere, even inside a UTF-8 character or between CR and LF).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provider_gateway.errors import GatewayError

upstream_io = pytest.importorskip("provider_gateway.providers.upstream_io")

FUZZ = settings(max_examples=400, deadline=None, derandomize=True)
# Bytes biased towards SSE syntax so that fields, comments and line ends are all exercised.
sse_bytes = st.lists(
    st.one_of(
        st.sampled_from(
            [b"data:", b"data: ", b"event:", b"event: x", b":", b"id: 1", b"\n", b"\r", b"\r\n", b"\n\n"]
        ),
        st.text(max_size=12).map(str.encode),
        st.binary(max_size=8),
    ),
    max_size=40,
).map(b"".join)


def decode(chunks: list[bytes]) -> list[Any]:
    decoder = upstream_io.SseDecoder()
    events: list[Any] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    return events


@FUZZ
@given(sse_bytes, st.lists(st.integers(min_value=0, max_value=400), max_size=8))
def test_sse_decoder_never_raises_and_ignores_chunking(data: bytes, cuts: list[int]) -> None:
    whole = decode([data])
    points = sorted({min(c, len(data)) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    assert decode(pieces) == whole
    assert decode([data[i : i + 1] for i in range(len(data))]) == whole


@FUZZ
@given(st.one_of(st.text(max_size=40), st.binary(max_size=40).map(lambda b: b.decode("latin-1"))))
def test_json_event_raises_only_gateway_errors(data: str) -> None:
    error: GatewayError | None = None
    try:
        upstream_io.decode_json_event(data, "fuzz")
    except GatewayError as exc:
        error = exc
    assert error is None or "malformed" in str(error)


@FUZZ
@given(
    st.dictionaries(st.sampled_from(["retry-after", "retry-after-ms", "x"]), st.text(max_size=30), max_size=3)
)
def test_retry_after_never_raises(headers: dict[str, str]) -> None:
    value = upstream_io.retry_after_seconds(headers, now=0.0)
    assert value is None or value >= 0
