"""Token log-probabilities joined to the text they score, for the codecs of every provider that
gives them: a chunk's entries go on its text, so text and entries stay in step however the
deltas are later joined or split (wire/merge.py, server/split_deltas.py)."""

from __future__ import annotations

from provider_gateway.domain import StreamEvent, TextDelta, TextDeltaWithLogprobs, TokenLogprob


def with_logprobs(events: list[StreamEvent], entries: tuple[TokenLogprob, ...]) -> list[StreamEvent]:
    """`events` with `entries` on the last text delta (the chunk's entries in order, after every
    text before them); on an empty text delta of their own when the chunk has no text (tokens the
    provider scored but sent no text for), never dropped."""
    if not entries:
        return events
    for position in range(len(events) - 1, -1, -1):
        event = events[position]
        if isinstance(event, TextDelta):
            events[position] = TextDeltaWithLogprobs(event.text, _joined(event, entries))
            return events
    events.append(TextDeltaWithLogprobs("", entries))
    return events


def _joined(event: TextDelta, entries: tuple[TokenLogprob, ...]) -> tuple[TokenLogprob, ...]:
    return event.logprobs + entries if isinstance(event, TextDeltaWithLogprobs) else entries
