"""The SSE decoder: the spec's line and field rules, and the same events for any split of the input."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from anthropic._streaming import SSEDecoder as AnthropicSseDecoder
from hypothesis import given, settings
from hypothesis import strategies as st
from openai._streaming import SSEDecoder as OpenAISseDecoder

from provider_gateway.wire.sse import SseDecoder, SseError, SseEvent


def decode(chunks: list[bytes]) -> list[SseEvent]:
    decoder = SseDecoder()
    events = [e for chunk in chunks for e in decoder.feed(chunk)]
    return events + decoder.close()


def test_fields_comments_and_multiline_data() -> None:
    body = (
        b"\xef\xbb\xbf: keep-alive\n"
        b"event: content_block_delta\nid: 7\nretry: 1500\ndata: first\ndata:second\n\n"
        b'data: {"a": 1}\n\n'
        b"event: ping\n\n"  # no data: not dispatched
        b"data\n\n"  # a field with no colon: empty data
    )
    assert decode([body]) == [
        SseEvent("first\nsecond", "content_block_delta", "7", 1500),
        SseEvent('{"a": 1}', "message", "7", 1500),
        SseEvent("", "message", "7", 1500),
    ]


def test_every_line_ending_style() -> None:
    for end in (b"\n", b"\r\n", b"\r"):
        body = b"data: one" + end + end + b"data: two" + end + end
        assert [e.data for e in decode([body])] == ["one", "two"], end


def test_crlf_split_between_chunks_is_one_line_end() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: x\r") == []
    assert decoder.feed(b"\n\r") == []
    assert decoder.feed(b"\n") == [SseEvent("x")]


def test_event_is_emitted_as_soon_as_its_blank_line_arrives() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: a\n") == []
    assert decoder.feed(b"\n") == [SseEvent("a")]
    assert not decoder.pending


def test_the_end_of_the_body_ends_the_last_line_and_its_event() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: complete\n\ndata: last") == [SseEvent("complete")]
    assert decoder.pending
    assert decoder.close() == [SseEvent("last")]
    dataless = SseDecoder()
    assert dataless.feed(b"data: a\n\nevent: ping\n") == [SseEvent("a")]
    assert dataless.close() == []  # no data, no event: as with a blank line


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    assert decode([b"data: \xff\n\n"]) == [SseEvent("\ufffd")]


def test_bad_retry_and_nul_id_are_ignored() -> None:
    assert decode([b"retry: 1a\nid: a\x00b\ndata: x\n\n"]) == [SseEvent("x")]


_line = st.one_of(
    st.sampled_from(["data: é€😀", "data:x", "event: e", "id: 1", ": c", "retry: 10", "", "data"]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=12),
)


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(_line, max_size=25),
    end=st.sampled_from(["\n", "\r\n", "\r"]),
    cuts=st.lists(st.integers(min_value=0), max_size=12),
)
def test_any_split_gives_the_same_events(lines: list[str], end: str, cuts: list[int]) -> None:
    body = (end.join(lines) + end + end).encode()
    points = sorted({c % (len(body) + 1) for c in cuts})
    chunks = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    assert decode(chunks) == decode([body])
    assert decode(chunks) == decode([body[i : i + 1] for i in range(len(body))])


# Bodies whose last event has data but no blank line: vendors' `message_stop` and `[DONE]` endings.
UNTERMINATED = [
    b"data: a\n\ndata: b\n",
    b"data: a\n\ndata: b",
    b"data: a\r\n\r\ndata: b\r\n",
    b"data: a\r\rdata: b\r",
    b"event: e\ndata: a\n\nid: 7\nevent: f\ndata: b\ndata: c\n",
    b'event: message_stop\ndata: {"type":"message_stop"}',
    b"data: a\n\n: keep-alive\ndata: [DONE]\n",
]


@pytest.mark.parametrize("body", UNTERMINATED)
def test_the_sdks_read_the_same_events_and_the_same_last_one(body: bytes) -> None:
    """The official SDKs' decoders as the oracle: the same events; at the end of the body they
    hold the same last event (Anthropic's decoder gives it up on one more blank line) and drop it,
    where the gateway dispatches it."""
    ours = [(e.event, e.data, e.id) for e in decode([body])]
    openai_sdk = [(e.event or "message", e.data, e.id) for e in OpenAISseDecoder().iter_bytes(iter([body]))]
    sdk = AnthropicSseDecoder()
    anthropic_sdk = [(e.event or "message", e.data, e.id) for e in sdk.iter_bytes(iter([body]))]
    held = sdk.decode("")
    assert held is not None
    assert ours == [*anthropic_sdk, (held.event or "message", held.data, held.id)]
    assert ours[:-1] == openai_sdk


# Events as vendors send them (one `data:` line) and, among them, every other shape the rules know.
_data_line = st.one_of(
    st.sampled_from(
        [b"data: [DONE]", b"data:x", b"data: ", b"data:", b"data:  two", b"data: \xff\xfe", b"data: \xc3"]
    ),
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=8
    ).map(lambda text: b"data: " + text.encode()),
)
# ... and lines that hide other line ends in a body's style (a lone CR, a CR before its LF).
_other_line = st.sampled_from(
    [
        b": keep-alive",
        b"event: e",
        b"id: 7",
        b"retry: 10",
        b"data",
        b"\xef\xbb\xbfdata: bom",
        b"data: a\rdata: b",
        b"data: c\r",
    ]
)
# An `event:` line before one `data:` line (Anthropic's, Cohere's, the Responses API's events) and
# its near misses.
_event_line = st.one_of(
    st.sampled_from([b"event: ", b"event:x", b"event:  two", b"event: \xff", b"event: a:b", b"event"]),
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=8
    ).map(lambda text: b"event: " + text.encode()),
)
_named_event = st.tuples(_event_line, st.lists(_data_line, min_size=1, max_size=2)).map(
    lambda lines: [lines[0], *lines[1]]
)
_event = st.one_of(
    st.lists(_data_line, min_size=1, max_size=1),
    st.lists(_data_line, min_size=2, max_size=3),  # multi-line data
    st.lists(st.one_of(_data_line, _other_line), min_size=1, max_size=3),
)


def _cut_mostly_between_events(
    events: list[list[bytes]], end: bytes, event_cuts: list[int], byte_cuts: list[int]
) -> tuple[bytes, list[bytes]]:
    """The body of `events` (each a list of lines) and its reads, cut at event boundaries
    (`event_cuts`) and anywhere (`byte_cuts`)."""
    framed = [end.join(lines) + end + end for lines in events]
    body = b"".join(framed)
    boundaries = [len(b"".join(framed[:i])) for i in range(len(framed) + 1)]
    points = sorted(
        {boundaries[c % len(boundaries)] for c in event_cuts} | {c % (len(body) + 1) for c in byte_cuts}
    )
    return body, [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]


def _split_events(test: Callable[..., None]) -> Callable[..., None]:
    """Hypothesis gives `test` events (`_event`), their line end, where the body is cut into reads
    (`_cut_mostly_between_events`) and the decoder's bound."""
    return settings(max_examples=400, deadline=None)(
        given(
            events=st.lists(_event, max_size=12),
            end=st.sampled_from([b"\n", b"\r\n", b"\r"]),
            event_cuts=st.lists(st.integers(min_value=0), max_size=6),
            byte_cuts=st.lists(st.integers(min_value=0), max_size=2),
            bound=st.sampled_from([8, 24, 1024]),
        )(test)
    )


@_split_events
def test_reads_of_whole_events_give_the_same_events_as_line_by_line(
    events: list[list[bytes]], end: bytes, event_cuts: list[int], byte_cuts: list[int], bound: int
) -> None:
    """Reads cut mostly between events, as a token stream's reads are: whole one-line `data:`
    events are split at their blank lines in one pass, the rest goes line by line. Reads of one
    byte never hold a whole event, so they are the line-by-line reference. A read over the bound
    fails as it does line by line."""
    body, reads = _cut_mostly_between_events(events, end, event_cuts, byte_cuts)

    def decode(chunks: list[bytes]) -> list[SseEvent] | type[SseError]:
        decoder = SseDecoder(max_event_bytes=bound)
        try:
            return [e for chunk in chunks for e in decoder.feed(chunk)] + decoder.close()
        except SseError:
            return SseError

    assert decode(reads) == decode([body[i : i + 1] for i in range(len(body))])


def test_whole_events_keep_the_last_id_and_retry_and_an_event_pending_before_them() -> None:
    assert decode([b"data: a\rdata: b\r\n\r\n", b"data: c\r\r\n\r\n"]) == [SseEvent("a\nb"), SseEvent("c")]
    decoder = SseDecoder()
    assert decoder.feed(b"id: 7\nretry: 5\n\n") == []
    assert decoder.feed(b"data: a\n\ndata: b\n\n") == [
        SseEvent("a", "message", "7", 5),
        SseEvent("b", "message", "7", 5),
    ]
    assert decoder.feed(b"event: delta\n") == []
    assert decoder.feed(b"data: c\n\ndata: d\n\n") == [
        SseEvent("c", "delta", "7", 5),
        SseEvent("d", "message", "7", 5),
    ]
    assert decoder.feed(b"data: e\n") == []
    assert decoder.feed(b"data: f\n\ndata: g\n\ndata: h") == [
        SseEvent("e\nf", "message", "7", 5),
        SseEvent("g", "message", "7", 5),
    ]
    assert decoder.feed(b"\n\ndata: i\r\n\r\ndata: j\r") == [
        SseEvent("h", "message", "7", 5),
        SseEvent("i", "message", "7", 5),
    ]
    assert decoder.feed(b"\n\r\ndata: k\r\n\r\n") == [
        SseEvent("j", "message", "7", 5),
        SseEvent("k", "message", "7", 5),
    ]


@settings(max_examples=300, deadline=None)
@given(
    events=st.lists(st.one_of(_named_event, _named_event, _event), max_size=8),
    event_cuts=st.lists(st.integers(min_value=0), max_size=6),
    byte_cuts=st.lists(st.integers(min_value=0), max_size=2),
)
def test_reads_of_whole_named_events_give_the_same_events_as_line_by_line(
    events: list[list[bytes]], event_cuts: list[int], byte_cuts: list[int]
) -> None:
    """Whole `event:` + `data:` events at the start of a read are split in one pass too
    (`_named_events`): the events line by line gives, whatever else the read holds."""
    body, reads = _cut_mostly_between_events(events, b"\n", event_cuts, byte_cuts)

    def decode(chunks: list[bytes]) -> list[SseEvent]:
        decoder = SseDecoder()
        return [e for chunk in chunks for e in decoder.feed(chunk)] + decoder.close()

    assert decode(reads) == decode([body[i : i + 1] for i in range(len(body))])


def test_whole_named_events_keep_the_last_id_and_retry_and_their_names() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"id: 7\nretry: 5\n\n") == []
    assert decoder.feed(b"event: a\ndata: x\n\nevent: \ndata: y\n\nevent: c\ndata: z\n\nevent: d") == [
        SseEvent("x", "a", "7", 5),
        SseEvent("y", "message", "7", 5),
        SseEvent("z", "c", "7", 5),
    ]
    assert decoder.feed(b"\ndata: w\n\n") == [SseEvent("w", "d", "7", 5)]
    # Not such events: a CR ends a line too; a read that continues a line or an event.
    assert decoder.feed(b"event: a\ndata: x\rdata: y\n\n") == [SseEvent("x\ny", "a", "7", 5)]
    assert decoder.feed(b"data: v") == []
    assert decoder.feed(b"event: a\ndata: u\n\n") == [SseEvent("vevent: a\nu", "message", "7", 5)]
    assert decoder.feed(b"data: t\n") == []
    assert decoder.feed(b"event: b\ndata: s\n\n") == [SseEvent("t\ns", "b", "7", 5)]


@_split_events
def test_payloads_are_the_events_feed_gives_with_plain_data_undecoded(
    events: list[list[bytes]], end: bytes, event_cuts: list[int], byte_cuts: list[int], bound: int
) -> None:
    """`payloads` (the OpenAI codec's reading) against `feed`, read for read: the same events, a
    plain one's data as its bytes (a `message` event whose data they are, decoded as `feed`
    decodes), the same SseError where `feed` raises one, and the same end."""
    _, reads = _cut_mostly_between_events(events, end, event_cuts, byte_cuts)
    fed, paid = SseDecoder(max_event_bytes=bound), SseDecoder(max_event_bytes=bound)
    for read in reads:
        try:
            expected = fed.feed(read)
        except SseError:
            with pytest.raises(SseError):
                paid.payloads(read)
            return
        got = paid.payloads(read)
        assert len(got) == len(expected)
        for frame, event in zip(got, expected, strict=True):
            if isinstance(frame, bytes):
                assert (event.event, event.data) == ("message", frame.decode("utf-8", "replace"))
            else:
                assert frame == event
    assert paid.pending == fed.pending
    assert paid.close() == fed.close()


def test_payloads_of_a_read_of_plain_events_are_their_data_bytes() -> None:
    decoder = SseDecoder()
    assert decoder.payloads(b'data: {"a":1}\n\n') == [b'{"a":1}']
    assert decoder.payloads(b"data: caf\xc3\xa9\n\ndata: \xff\n\ndata: [DONE]\n\ndata: x") == [
        b"caf\xc3\xa9",
        b"\xff",
        b"[DONE]",
    ]
    assert decoder.payloads(b"\r\n\r\ndata: y\r\n\r\ndata:z\r\n\r\n") == [
        SseEvent("x"),
        SseEvent("y"),
        SseEvent("z"),
    ]
    assert decoder.payloads(b"data: a\r\n\r\ndata: b\r\n\r\n") == [b"a", b"b"]
    assert decoder.payloads(b"event: e\ndata: c\n\n") == [SseEvent("c", "e")]
