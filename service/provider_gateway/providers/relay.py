"""Relaying a stream read by read: the frames one upstream read completed (SSE events, NDJSON lines,
AWS event-stream messages) are decoded together and their deltas merged (wire/merge.py), so a burst
of tokens crosses the router and telemetry layers once instead of once per token. Nothing waits
for more data: a read that completes one frame relays it at once.

One async generator frames, decodes and relays: at 50 concurrent streams a stream is one or two
reads, and a generator between the reads and the decoding (creating, closing and finalizing it)
cost more than its hops (benchmarks/RESULTS.md, issue 15).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterable, Iterator

from provider_gateway.domain import StreamEvent, TextDelta
from provider_gateway.wire.merge import merge_deltas


def never() -> bool:
    return False


async def relay_reads[C, F](
    chunks: AsyncIterable[C],
    feed: Callable[[C], Iterable[F]],
    step: Callable[[F], Iterable[StreamEvent] | str],
    *,
    merge: bool,
    finished: Callable[[], bool] = never,
    flush: Callable[[], Iterable[F]] | None = None,
) -> AsyncGenerator[StreamEvent, None]:
    """Each read's frames (`feed`, a framing decoder's, of the read) decoded by `step`; deltas merged
    when `merge` ([server] coalesce_deltas). `step` gives a frame's events, or the frame's text
    alone as a str: the plain token, for which no event is made when the read's texts are joined
    into one anyway (a TextDelta per token and the list around it were a third of a token's
    decoding). At the body's end, unless finished, `flush`'s frames (the framing decoder's last,
    unterminated ones) are decoded as one more read.
    An error raised by `feed` or `step` comes after the events before it; reading stops once
    `finished()` (a vendor's last event: the rest of the body is not waited for). `chunks` is an
    iterator the caller closes (an upstream stream's block): nothing is left here to finalize."""
    async for chunk in chunks:
        for event in decode_read(feed, chunk, step, merge, finished):
            yield event
        if finished():
            return
    if flush is not None:
        for event in decode_read(_flushed, flush, step, merge, finished):
            yield event


def _flushed[F](flush: Callable[[], Iterable[F]]) -> Iterable[F]:
    return flush()


def decode_read[C, F](
    feed: Callable[[C], Iterable[F]],
    chunk: C,
    step: Callable[[F], Iterable[StreamEvent] | str],
    merge: bool,
    finished: Callable[[], bool],
) -> Iterable[StreamEvent]:
    """One read's events (`relay_reads` without its loop, for an adapter whose own generator reads
    the chunks); if an error cut the read's decoding short, an iterator raising it after them."""
    in_hand: list[StreamEvent] = []
    texts: list[str] = []  # texts in a row, not yet in `in_hand` (merging only)
    failed: Exception | None = None
    try:
        for frame in feed(chunk):  # a lazy `feed` raises here, after the frames before its error
            decoded = step(frame)
            if isinstance(decoded, str):  # a token: never a vendor's last event
                if merge:
                    texts.append(decoded)
                else:
                    in_hand.append(TextDelta(decoded))
                continue
            if decoded:
                if texts:
                    in_hand.append(TextDelta("".join(texts)))
                    texts = []
                in_hand += decoded
            if finished():
                break
    except Exception as error:
        failed = error
    if texts:
        in_hand.append(TextDelta("".join(texts)))
    events = merge_deltas(in_hand) if merge and len(in_hand) > 1 else in_hand
    return events if failed is None else _then_raised(events, failed)


def _then_raised(events: list[StreamEvent], error: Exception) -> Iterator[StreamEvent]:
    yield from events
    raise error
