"""The outbound conversion leaves a field at its default out of the constructor (issue 15: each
field given costs the constructor more than testing it): the answer a client receives must be the
message that setting every field gives, byte for byte. The reference here sets every field of
every message, defaults included, the plain way."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provider_gateway import domain as d
from provider_gateway.server import convert
from provider_gateway.server.finish_templates import FinishTemplates
from provider_gateway.v1 import provider_service_pb2 as pb

SETTINGS = settings(
    max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
# Defaults as often as not: the fields left out are exactly those at their default.
counts = st.one_of(st.just(0), st.integers(0, 2**40))
texts = st.one_of(st.just(""), st.text(max_size=6))
costs = st.builds(d.Cost, counts, st.booleans(), st.sampled_from(["", "provider", "estimated", "none"]))
raw_usage = st.dictionaries(
    st.text(max_size=4),
    st.one_of(
        counts, st.text(max_size=3), st.booleans(), st.dictionaries(st.text(max_size=3), counts, max_size=2)
    ),
    max_size=4,
)


def usages_of(raw: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[d.Usage]:
    return st.builds(
        d.Usage,
        input_tokens=counts,
        output_tokens=counts,
        cache_read_tokens=counts,
        cache_write_tokens=counts,
        reasoning_tokens=counts,
        raw=raw,
        estimated=st.booleans(),
    )


usages = usages_of(raw_usage)
attempts = st.builds(d.Attempt, texts, texts, texts, texts, counts, costs)
finishes = st.builds(
    d.Finish,
    st.sampled_from(list(d.FinishReason)),
    texts,
    texts,
    texts,
    st.builds(d.Timing, counts, counts, counts, counts),
    st.lists(attempts, max_size=3).map(tuple),
    texts,
    costs,
    st.lists(st.text(max_size=5), max_size=2).map(tuple),
)
responses = st.builds(
    d.ChatResponse,
    text=texts,
    reasoning=texts,
    reasoning_signature=texts,
    tool_calls=st.lists(st.builds(d.ToolCall, texts, texts, texts), max_size=2),
    usage=usages,
)


def cost(value: d.Cost) -> pb.Cost:
    return pb.Cost(
        amount_micros=value.amount_micros, currency="USD", known=value.known, usage_source=value.usage_source
    )


def usage(value: d.Usage) -> pb.Usage:
    message = pb.Usage(
        input_tokens=value.input_tokens,
        output_tokens=value.output_tokens,
        cache_read_tokens=value.cache_read_tokens,
        cache_write_tokens=value.cache_write_tokens,
        reasoning_tokens=value.reasoning_tokens,
        total_tokens=value.total_tokens,
        estimated=value.estimated,
    )
    if value.raw:
        message.raw.update(value.raw)
    return message


def finish(value: d.Finish) -> pb.Finish:
    t = value.timing
    message = pb.Finish(
        reason=convert.FINISH[value.reason],
        raw_finish_reason=value.raw_reason,
        provider=value.provider,
        model=value.model,
        response_id=value.response_id,
        emulated=list(value.emulated),
    )
    message.timing.CopyFrom(
        pb.Timing(
            gateway_overhead_us=t.gateway_overhead_us,
            time_to_first_token_us=t.time_to_first_token_us,
            total_us=t.total_us,
            upstream_us=t.upstream_us,
        )
    )
    for a in value.attempts:
        message.attempts.add(
            provider=a.provider, model=a.model, outcome=a.outcome, error=a.error, latency_us=a.latency_us
        ).cost.CopyFrom(cost(a.cost))
    message.cost.CopyFrom(cost(value.cost))
    return message


def same(got: Any, want: Any) -> None:
    assert got == want
    assert got.SerializeToString(deterministic=True) == want.SerializeToString(deterministic=True)


@SETTINGS
@given(responses, finishes)
def test_chat_response_is_every_field_set(response: d.ChatResponse, end: d.Finish) -> None:
    want = pb.ChatResponse(
        text=response.text,
        reasoning=response.reasoning,
        reasoning_signature=response.reasoning_signature,
        tool_calls=[convert.tool_call_to_proto(c) for c in response.tool_calls],
    )
    want.usage.CopyFrom(usage(response.usage))
    want.finish.CopyFrom(finish(end))
    templates = FinishTemplates()
    # Built, then from a new template, then from the kept one (server/finish_templates.py).
    built, *copied = [convert.chat_response_to_proto(response, end, t) for t in (None, templates, templates)]
    for got in (built, *copied):
        same(got, want)
        assert got.SerializeToString() == built.SerializeToString()  # what grpc sends
        for parent, field in ((got, "usage"), (got, "finish"), (got.finish, "timing"), (got.finish, "cost")):
            assert parent.HasField(field), field


@SETTINGS
@given(finishes, st.one_of(st.none(), usages))
def test_finish_event_is_every_field_set(end: d.Finish, used: d.Usage | None) -> None:
    want = pb.StreamEvent(finish=finish(end))
    if used is not None:
        want.finish.usage.CopyFrom(usage(used))
    got = convert.finish_event(end, used)
    same(got, want)
    assert got.finish.HasField("usage") is (used is not None)


@SETTINGS
@given(usages, finishes)
def test_completion_usage_and_cost_are_every_field_set(used: d.Usage, end: d.Finish) -> None:
    want = pb.CompleteResponse(text="x")
    want.usage.CopyFrom(usage(used))
    want.finish.CopyFrom(finish(end))
    templates = FinishTemplates()
    for t in (None, templates, templates):
        same(convert.completion_response_to_proto(d.CompletionResponse(text="x", usage=used), end, t), want)
    same(convert.usage_to_proto(used), usage(used))
    same(convert.cost_to_proto(end.cost), cost(end.cost))
    same(convert.event_to_proto(d.UsageEvent(used)), pb.StreamEvent(usage=usage(used)))


# A stream's finish from a kept template (server/finish_templates.py): the template holds what
# finishes share, each call sets its own values. Runs of finishes share templates (few providers,
# models and outcomes), so a value one call set must never show in the next.
shared_texts = st.sampled_from(["", "openai", "gpt-4o-mini"])
shared_costs = st.builds(d.Cost, counts, st.booleans(), st.sampled_from(["", "provider", "estimated"]))
numbers_usage = st.dictionaries(
    st.sampled_from(["prompt_tokens", "completion_tokens", "total_tokens", "", "é", "x" * 70]),
    st.one_of(
        counts,
        st.floats(allow_nan=False),
        st.dictionaries(st.sampled_from(["cached_tokens", "k"]), counts, max_size=2),
    ),
    max_size=4,
)
stream_usages = usages_of(st.one_of(numbers_usage, raw_usage))
stream_finishes = st.builds(
    d.Finish,
    st.sampled_from([d.FinishReason.STOP, d.FinishReason.LENGTH]),
    st.sampled_from(["", "stop"]),
    shared_texts,
    shared_texts,
    st.builds(d.Timing, counts, counts, counts, counts),
    st.lists(
        st.builds(d.Attempt, shared_texts, shared_texts, st.just("ok"), texts, counts, shared_costs),
        min_size=1,
        max_size=2,
    ).map(tuple),
    texts,
    shared_costs,
    st.sampled_from([(), ("stop",)]),
)


@SETTINGS
@given(st.lists(st.tuples(stream_finishes, st.one_of(st.none(), stream_usages)), min_size=1, max_size=6))
def test_a_finish_from_a_template_is_the_built_one(runs: list[tuple[d.Finish, d.Usage | None]]) -> None:
    templates = FinishTemplates(limit=3)  # a small limit: finishes past it are built
    for end, used in runs:
        got = templates.event(end, used)
        want = convert.finish_event(end, used)
        same(got, want)
        assert got.SerializeToString() == want.SerializeToString()  # what grpc sends
        assert got.finish.HasField("usage") is (used is not None)


def one_attempt(model: str, emulated: Any = ()) -> d.Finish:
    cost = d.Cost(5, True, "provider")
    attempt = d.Attempt("openai", model, "ok", "", 7, cost)
    return d.Finish(
        d.FinishReason.STOP, "stop", "openai", model, d.Timing(1, 2, 3, 4), (attempt,), "id", cost, emulated
    )


def test_templates_stay_bounded_and_a_finish_past_them_is_built_the_same() -> None:
    """Upstreams name models and raw reasons: at most `limit` templates are kept, none of long
    texts, and a finish without one is the built message all the same."""
    templates = FinishTemplates(limit=2)
    for model in ["a", "b", "c", "x" * 600]:
        end = one_attempt(model)
        same(templates.event(end, None), convert.finish_event(end, None))
        same(templates.event(end, None), convert.finish_event(end, None))
    assert len(templates._kept) == 2  # "a" and "b"
    end = one_attempt("m", emulated=["stop"])  # a list where the domain types a tuple: no template
    same(FinishTemplates().event(end, None), convert.finish_event(end, None))


def test_the_templates_know_every_field_of_a_finish() -> None:
    """A template is keyed by what finishes share and filled with what is each call's own: a field
    added to these types and in neither would be copied from the first finish into the next ones.
    Adding one means placing it in `FinishTemplates` (its key, or `_own`), then here."""
    import dataclasses

    def names(kind: type) -> set[str]:
        return {f.name for f in dataclasses.fields(kind)}

    assert names(d.Finish) == {
        "reason", "raw_reason", "provider", "model", "timing", "attempts", "response_id", "cost", "emulated"
    }  # fmt: skip
    assert names(d.Attempt) == {"provider", "model", "outcome", "error", "latency_us", "cost"}
    assert names(d.Cost) == {"amount_micros", "known", "usage_source"}
    assert names(d.Timing) == {"gateway_overhead_us", "time_to_first_token_us", "total_us", "upstream_us"}
