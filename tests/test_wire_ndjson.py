"""The NDJSON decoder: one value per line, any split of the input, clear errors."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provider_gateway.wire.ndjson import NdjsonDecoder, NdjsonError


def decode(chunks: list[bytes]) -> list[Any]:
    decoder = NdjsonDecoder()
    return [*(v for chunk in chunks for v in decoder.feed(chunk)), *decoder.close()]


def test_lines_blank_lines_crlf_and_last_line_without_newline() -> None:
    assert decode([b'{"a":1}\r\n\n{"b":"\xc3\xa9"}\n{"done":true}']) == [{"a": 1}, {"b": "é"}, {"done": True}]


def test_malformed_line_raises_with_a_preview() -> None:
    with pytest.raises(NdjsonError, match="malformed NDJSON line"):
        decode([b'{"a":1}\n{"b":\n'])


def test_cut_mid_value_is_pending_then_fails_on_close() -> None:
    decoder = NdjsonDecoder()
    assert list(decoder.feed(b'{"a":1}\n{"message":{"con')) == [{"a": 1}]
    assert decoder.pending
    with pytest.raises(NdjsonError):
        list(decoder.close())


def test_values_before_a_malformed_line_are_delivered_first() -> None:
    values = NdjsonDecoder().feed(b'{"a":1}\n{bad\n{"c":3}\n')
    assert next(values) == {"a": 1}
    with pytest.raises(NdjsonError):
        next(values)


_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8
)  # JSON has no lone surrogates
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(values=st.lists(_json, max_size=10), cuts=st.lists(st.integers(min_value=0), max_size=10))
def test_any_split_gives_the_same_values(values: list[Any], cuts: list[int]) -> None:
    body = b"".join(orjson.dumps(v) + b"\n" for v in values)
    points = sorted({c % (len(body) + 1) for c in cuts})
    chunks = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    assert decode(chunks) == values
