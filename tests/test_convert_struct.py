"""fill_struct sets a provider's raw usage (and raw content) into a Struct at about half the CPU of
protobuf's Struct.update: whatever the JSON data, the Struct is the one update makes, and what
update refuses, fill_struct refuses with the same error."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.struct_pb2 import Struct
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provider_gateway import domain as d
from provider_gateway.server import convert

keys = st.text(max_size=4)
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**53), 2**53),
        st.floats(allow_nan=False),
        st.text(max_size=5),
    ),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(keys, children, max_size=3)),
    max_leaves=15,
)
objects = st.dictionaries(keys, json_values, max_size=5)
SETTINGS = settings(
    max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


def updated(value: dict[str, Any]) -> Struct:
    struct = Struct()
    struct.update(value)
    return struct


def filled(value: dict[str, Any]) -> Struct:
    struct = Struct()
    convert.fill_struct(struct, value)
    return struct


@SETTINGS
@given(objects)
def test_fill_struct_makes_the_struct_update_makes(value: dict[str, Any]) -> None:
    assert filled(value) == updated(value)
    assert filled(value).SerializeToString(deterministic=True) == updated(value).SerializeToString(
        deterministic=True
    )


@pytest.mark.parametrize("value", [{"n": 10**400}, {"x": object()}, {"d": {"x": {1, 2}}}])
def test_what_update_refuses_fill_struct_refuses_alike(value: dict[str, Any]) -> None:
    refusal: type[BaseException] | None = None
    try:
        updated(value)
    except (OverflowError, ValueError, TypeError) as exc:
        refusal = type(exc)
    assert refusal is not None
    with pytest.raises(refusal):
        filled(value)


@SETTINGS
@given(objects)
def test_raw_usage_reaches_every_answer_as_given(raw: dict[str, Any]) -> None:
    usage = d.Usage(input_tokens=3, output_tokens=4, raw=raw)
    cost = d.Cost(1, True, "provider")
    finish = d.Finish(d.FinishReason.STOP, "stop", "p", "m", d.Timing(1, 2, 3, 4), (), cost=cost)
    answers = [
        convert.usage_to_proto(usage),
        convert.chat_response_to_proto(d.ChatResponse(text="t", usage=usage), finish).usage,
        convert.completion_response_to_proto(d.CompletionResponse(text="t", usage=usage), finish).usage,
        convert.event_to_proto(d.UsageEvent(usage)).usage,
    ]
    for answer in answers:
        assert answer.HasField("raw") == bool(raw)  # absent, not an empty Struct, when there is none
        assert answer.raw == updated(raw)
        assert (answer.input_tokens, answer.output_tokens, answer.total_tokens) == (3, 4, 7)
