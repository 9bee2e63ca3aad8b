"""Relaying a stream read by read (providers/relay.py): a frame decoded to its text alone (a str, the
plain token) gives what the same frame decoded to its TextDelta gives, merged or not, in order, with
errors after what came before them and reading stopped at the vendor's last event."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Iterable

from hypothesis import given, settings
from hypothesis import strategies as st

from provider_gateway.domain import (
    FinishReason,
    ProviderFinish,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
    UsageEvent,
)
from provider_gateway.providers.relay import relay_reads

type Frame = str | list[StreamEvent]

_lists = st.lists(
    st.one_of(
        st.builds(TextDelta, st.text(min_size=1, max_size=3)),
        st.builds(ReasoningDelta, st.text(max_size=3)),
        st.builds(ToolCallDelta, st.integers(0, 1), st.text(max_size=3)),
        st.just(UsageEvent(Usage(1, 2))),
    ),
    max_size=3,
)
_frames = st.one_of(st.text(min_size=1, max_size=4), _lists)
_reads = st.lists(st.lists(_frames, max_size=6), max_size=5)


async def _reads_of(reads: list[list[Frame]]) -> AsyncGenerator[Iterable[Frame], None]:
    for read in reads:
        yield read


def _frames(read: Iterable[Frame]) -> Iterable[Frame]:
    """A read already framed: the framing decoder's part is the identity."""
    return read


def _as_events(frame: Frame) -> list[StreamEvent]:
    return [TextDelta(frame)] if isinstance(frame, str) else frame


def _relayed(reads: list[list[Frame]], *, merge: bool, events_only: bool = False) -> list[StreamEvent]:
    async def relay() -> list[StreamEvent]:
        def step(frame: Frame) -> Frame:
            return _as_events(frame) if events_only else frame

        return [event async for event in relay_reads(_reads_of(reads), _frames, step, merge=merge)]

    return asyncio.run(relay())


@settings(max_examples=300, deadline=None)
@given(_reads)
def test_a_token_decoded_as_text_relays_as_its_text_delta_would(reads: list[list[Frame]]) -> None:
    for merge in (True, False):
        assert _relayed(reads, merge=merge) == _relayed(reads, merge=merge, events_only=True)
    # Unmerged, every frame's events go on one by one, in order.
    assert _relayed(reads, merge=False) == [e for read in reads for frame in read for e in _as_events(frame)]


def test_a_read_of_tokens_is_one_text_delta_and_other_events_keep_their_place() -> None:
    reads: list[list[Frame]] = [[" a", " b", [UsageEvent(Usage(1, 2))], " c"], [" d"]]
    assert _relayed(reads, merge=True) == [
        TextDelta(" a b"),
        UsageEvent(Usage(1, 2)),
        TextDelta(" c"),
        TextDelta(" d"),
    ]


async def test_the_tokens_before_an_error_come_first_and_the_last_event_ends_the_read() -> None:
    finish = ProviderFinish(FinishReason.STOP)
    done = False

    def step(frame: Frame) -> Frame:
        nonlocal done
        if frame == "boom":
            raise ValueError("boom")
        if frame == [finish]:
            done = True
        return frame

    failing = relay_reads(_reads_of([[" a", " b", "boom", " never"]]), _frames, step, merge=True)
    seen: list[StreamEvent] = []
    try:
        async for event in failing:
            seen.append(event)
    except ValueError:
        pass
    else:
        raise AssertionError("the step's error was not raised")
    assert seen == [TextDelta(" a b")]

    ending = relay_reads(
        _reads_of([[" a", [finish], " after"], [" next read"]]),
        _frames,
        step,
        merge=True,
        finished=lambda: done,
    )
    assert [event async for event in ending] == [TextDelta(" a"), finish]
