"""Merging the deltas of one batch (wire/merge.py): the text-only batch of nearly every read of a
token stream is joined at once, and gives what forming the runs gives; any other batch is merged
run by run."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from provider_gateway.domain import (
    FinishReason,
    ProviderFinish,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
    UsageEvent,
)
from provider_gateway.wire.merge import merge_deltas, merged_runs

_texts = st.builds(TextDelta, st.text(max_size=4))
_events = st.one_of(
    _texts,
    st.builds(ReasoningDelta, st.text(max_size=3), st.sampled_from(["", "sig"])),
    st.builds(ToolCallDelta, st.integers(0, 1), st.text(max_size=3)),
    st.just(ToolCallStart(0, "call_1", "f")),
    st.just(UsageEvent(Usage(1, 2))),
    st.just(ProviderFinish(FinishReason.STOP)),
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.lists(_texts, max_size=30), st.lists(_events, max_size=12)))
def test_a_batch_merges_the_same_whichever_way_it_is_read(events: list[StreamEvent]) -> None:
    merged = merge_deltas(events)
    assert merged == merged_runs(events)
    assert "".join(e.text for e in merged if isinstance(e, TextDelta)) == "".join(
        e.text for e in events if isinstance(e, TextDelta)
    )


def test_a_text_only_batch_is_one_delta_and_a_lone_event_is_passed_as_it_is() -> None:
    tokens = [TextDelta(f" tok{i}") for i in range(20)]
    assert merge_deltas(tokens) == [TextDelta("".join(t.text for t in tokens))]
    assert merge_deltas(tokens[:1])[0] is tokens[0]
    assert merge_deltas([]) == []
