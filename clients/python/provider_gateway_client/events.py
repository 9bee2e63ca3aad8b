"""Typed stream events: plain frozen dataclasses instead of the `StreamEvent` oneof.

`typed_event(pb_event)` converts one protobuf event; the clients' `chat_stream` and
`complete_stream` yield these, so `match` statements and type checkers see what arrived. A message
may hold a batch of events (`StreamOptions.batch_events`, which the clients ask for): `unbatched()`
gives its events, and the streams yield each as if it had come alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from google.protobuf import json_format

from provider_gateway_client.v1 import provider_service_pb2 as pb


@dataclass(frozen=True, slots=True)
class Text:
    """A piece of the answer text; with `logprobs` asked in the request, the log-probabilities of
    the tokens it is made of, in order (`TokenLogprob`: token, logprob, bytes, top_logprobs)."""

    text: str
    logprobs: tuple[pb.TokenLogprob, ...] = ()


@dataclass(frozen=True, slots=True)
class Reasoning:
    """A piece of the model's reasoning. A piece with `signature`, `redacted` or `id` closes a block
    (the provider's opaque state, which the next turn sends back): `redacted` marks a block the
    provider gave only encrypted (`text` empty, `signature` its data), `id` is the provider's item id,
    `issuer` who issued that state (sent back with it: a provider leaves out another vendor's)."""

    text: str
    signature: str = ""
    redacted: bool = False
    id: str = ""
    issuer: str = ""

    @property
    def closes_block(self) -> bool:
        return bool(self.signature or self.redacted or self.id)


@dataclass(frozen=True, slots=True)
class ToolCallStarted:
    index: int
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class ToolCallArguments:
    """A fragment of a tool call's JSON arguments; fragments of one index concatenate."""

    index: int
    delta: str


@dataclass(frozen=True, slots=True)
class ToolCallFinished:
    """The end of a tool call; every `ToolCallStarted` gets one. `incomplete`: the arguments are
    not whole (cut by max_tokens, or not valid JSON) and hold what arrived; do not run the tool."""

    index: int
    id: str
    name: str
    arguments_json: str
    incomplete: bool = False

    def arguments(self) -> Any:
        return json.loads(self.arguments_json or "{}")


@dataclass(frozen=True, slots=True)
class UsageReport:
    """Token usage; `input_tokens` includes cache read and write tokens."""

    input_tokens: int
    output_tokens: int
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    total_tokens: int = 0
    estimated: bool = False
    service_tier: str = ""  # the tier the provider served it on ("" when it named none)


@dataclass(frozen=True, slots=True)
class RawContent:
    """Content the provider sent that has no field of its own (e.g. Mistral's `reference` chunks),
    as it sent it: `type` is the provider's name for it, `raw` its JSON."""

    type: str
    raw: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AttemptReport:
    """One provider the gateway tried: `outcome` is "ok" or the failure's status name, `error` what
    went wrong, `cost_usd_micros` what it cost (None when unknown; failed attempts can cost too)."""

    provider: str
    model: str
    outcome: str
    error: str = ""
    latency_us: int = 0
    cost_usd_micros: int | None = None


@dataclass(frozen=True, slots=True)
class Finished:
    """The last event: why the answer ended, who answered, and the gateway's timing in microseconds."""

    # "stop", "length", "tool_calls", "content_filter", "other", "unspecified" (the provider gave
    # none), or "unknown_<n>" for a value newer than this client.
    reason: str
    provider: str
    model: str
    response_id: str = ""
    raw_reason: str = ""
    gateway_overhead_us: int = 0
    time_to_first_token_us: int = 0
    total_us: int = 0
    attempts: tuple[tuple[str, str, str], ...] = ()  # (provider, model, outcome) in order
    # What the request cost by the gateway's price table, in micro-USD; None when unknown (a model
    # without a price), which is never the same as 0.
    cost_usd_micros: int | None = None
    # The request fields the provider could not honour natively and the gateway emulated (named
    # as in ChatRequest, e.g. "response_format"); empty when all were honoured natively.
    emulated: tuple[str, ...] = ()
    upstream_us: int = 0  # time spent waiting on providers
    cost_currency: str = ""  # ISO 4217 code of the cost ("USD")
    # Where the priced usage came from: "provider", "partial", "estimated" or "none".
    cost_usage_source: str = ""
    attempt_reports: tuple[AttemptReport, ...] = ()  # `attempts` with error, latency and cost


Event = (
    Text
    | Reasoning
    | ToolCallStarted
    | ToolCallArguments
    | ToolCallFinished
    | UsageReport
    | RawContent
    | Finished
)


def finish_reason(reason: int) -> str:
    """`FINISH_REASON_TOOL_CALLS` -> `tool_calls`; a value newer than this client -> `unknown_7`
    (proto3 enums are open: a newer gateway may add reasons, which must not fail the call)."""
    if reason not in pb.FinishReason.values():
        return f"unknown_{reason}"
    return pb.FinishReason.Name(reason).removeprefix("FINISH_REASON_").lower()


def cost_micros(cost: pb.Cost) -> int | None:
    return cost.amount_micros if cost.known else None


def raw_content(content: pb.RawContent) -> RawContent:
    return RawContent(content.type, json_format.MessageToDict(content.raw))


def usage_report(usage: pb.Usage) -> UsageReport:
    return UsageReport(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        total_tokens=usage.total_tokens,
        estimated=usage.estimated,
        service_tier=usage.service_tier,
    )


def finished(finish: pb.Finish) -> Finished:
    return Finished(
        reason=finish_reason(finish.reason),
        provider=finish.provider,
        model=finish.model,
        response_id=finish.response_id,
        raw_reason=finish.raw_finish_reason,
        gateway_overhead_us=finish.timing.gateway_overhead_us,
        time_to_first_token_us=finish.timing.time_to_first_token_us,
        total_us=finish.timing.total_us,
        attempts=tuple((a.provider, a.model, a.outcome) for a in finish.attempts),
        cost_usd_micros=cost_micros(finish.cost),
        emulated=tuple(finish.emulated),
        upstream_us=finish.timing.upstream_us,
        cost_currency=finish.cost.currency,
        cost_usage_source=finish.cost.usage_source,
        attempt_reports=tuple(
            AttemptReport(a.provider, a.model, a.outcome, a.error, a.latency_us, cost_micros(a.cost))
            for a in finish.attempts
        ),
    )


def unbatched(event: pb.StreamEvent) -> Sequence[pb.StreamEvent]:
    """The events one message holds, in order: a batch's (`StreamOptions.batch_events`), else itself."""
    if event.WhichOneof("event") != "batch":
        return (event,)
    # The proto never nests batches; flattening one anyway reads it as the messages it stands for.
    return [inner for held in event.batch.events for inner in unbatched(held)]


def typed_event(event: pb.StreamEvent) -> Event | None:
    """The typed form of one event; None for a kind this client does not know (newer servers may add
    some) and for a batch, which holds several: read those with `unbatched()`."""
    kind = event.WhichOneof("event")
    if kind == "text_delta":
        delta = event.text_delta
        return Text(delta.text, tuple(delta.logprobs)) if delta.logprobs else Text(delta.text)
    if kind == "reasoning_delta":
        delta = event.reasoning_delta
        return Reasoning(delta.text, delta.signature, delta.redacted, delta.id, delta.issuer)
    if kind == "tool_call_start":
        start = event.tool_call_start
        return ToolCallStarted(start.index, start.id, start.name)
    if kind == "tool_call_delta":
        return ToolCallArguments(event.tool_call_delta.index, event.tool_call_delta.arguments_delta)
    if kind == "tool_call_end":
        end = event.tool_call_end
        call = end.call
        return ToolCallFinished(end.index, call.id, call.name, call.arguments_json, call.incomplete)
    if kind == "usage":
        return usage_report(event.usage)
    if kind == "raw_content":
        return raw_content(event.raw_content)
    if kind == "finish":
        return finished(event.finish)
    return None


class TypedEvents:
    """One attempt's protobuf messages in typed form, a batch's events one by one as if each had
    come alone (`StreamOptions.batch_events`). The usage comes as a `UsageReport` before the
    `Finished` either way: from `usage` events, or, when the stream sent none (the streams of this
    client ask for `usage_in_finish`), from the finish's own `usage`."""

    __slots__ = ("_arguments", "_usage_seen")

    def __init__(self) -> None:
        self._usage_seen = False
        # Each tool call's argument fragments: an end too large for the gateway's send limit comes
        # with `arguments_json` empty (proto ToolCallEnd), and its typed event is filled from them.
        self._arguments: dict[int, list[str]] = {}

    def of(self, message: pb.StreamEvent) -> tuple[Event, ...]:
        """The typed events of one message, in order."""
        typed = typed_event(message)
        if typed is not None:
            return self._completed(message, typed)
        if message.WhichOneof("event") != "batch":
            return ()  # a kind this client does not know
        # Checked only here, so that a message of one event costs nothing more; nested batches
        # (which the proto rules out) would read as the messages they stand for.
        held: list[Event] = []
        for event in message.batch.events:
            held.extend(self.of(event))
        return tuple(held)

    def _completed(self, event: pb.StreamEvent, typed: Event) -> tuple[Event, ...]:
        """`typed` as the caller gets it, after what earlier events told (fragments, usage)."""
        if isinstance(typed, ToolCallArguments):
            self._arguments.setdefault(typed.index, []).append(typed.delta)
        elif isinstance(typed, ToolCallFinished):
            fragments = self._arguments.pop(typed.index, ())
            if not typed.arguments_json and fragments:
                typed = replace(typed, arguments_json="".join(fragments))
        elif isinstance(typed, UsageReport):
            self._usage_seen = True
        elif isinstance(typed, Finished) and not self._usage_seen and event.finish.HasField("usage"):
            return usage_report(event.finish.usage), typed
        return (typed,)


def text_of(events: Iterable[Event | pb.StreamEvent]) -> str:
    """The answer text of a sequence of events (typed, or protobuf messages, batches included)."""
    parts = []
    for event in events:
        if isinstance(event, Text):
            parts.append(event.text)
        elif isinstance(event, pb.StreamEvent):
            parts.extend(e.text_delta.text for e in unbatched(event) if e.WhichOneof("event") == "text_delta")
    return "".join(parts)
