"""Relaying a stream read by read: the frames one upstream read completed (SSE events, NDJSON lines,
AWS event-stream messages) are decoded together and their deltas merged (wire/merge.py), so a burst
of tokens crosses the router and telemetry layers once instead of once per token. Nothing waits
for more data: a read that completes one frame relays it at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable

from provider_gateway.domain import StreamEvent, TextDelta
from provider_gateway.wire.merge import merge_deltas


def never() -> bool:
    return False


async def relay_reads[F](
    reads: AsyncGenerator[Iterable[F], None],
    step: Callable[[F], Iterable[StreamEvent] | str],
    *,
    merge: bool,
    finished: Callable[[], bool] = never,
) -> AsyncIterator[StreamEvent]:
    """Each read's frames decoded by `step`; deltas merged when `merge` ([server] coalesce_deltas).
    `step` gives a frame's events, or the frame's text alone as a str: the plain token, for which
    no event is made when the read's texts are joined into one anyway (a TextDelta per token and
    the list around it were a third of a token's decoding).
    An error raised by `step` comes after the events before it; reading stops once `finished()`
    (a vendor's last event: the rest of the body is not waited for). `reads` is closed on the way
    out: left suspended, the loop would close it later from a task of its own (asyncio's
    async-generator finalizer: a thread-safe wake-up and a task per stream)."""
    async with contextlib.aclosing(reads):
        async for read in reads:
            in_hand: list[StreamEvent] = []
            texts: list[str] = []  # texts in a row, not yet in `in_hand` (merging only)
            failed: Exception | None = None
            try:
                for frame in read:
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
            for event in merge_deltas(in_hand) if merge and len(in_hand) > 1 else in_hand:
                yield event
            if failed is not None:
                raise failed
            if finished():
                return


async def batches[F](
    chunks: AsyncIterator[bytes], feed: Callable[[bytes], Iterable[F]]
) -> AsyncGenerator[Iterable[F], None]:
    """The frames each chunk completes, `feed` being a framing decoder's; a lazy `feed` raises, in
    `relay_reads`, after the frames before its error."""
    async for chunk in chunks:
        if frames := feed(chunk):
            yield frames
