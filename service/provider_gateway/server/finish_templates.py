"""A stream's finish event from a kept template.

Building a finish through protobuf's constructors cost about 74k instructions a stream (a 20-token
OpenAI stream's finish with its usage: each field given costs the constructor about 1k); from a
template about 54k (benchmarks/RESULTS.md, issue 15). The message is the same either way, and so
are its bytes: tests/test_convert_outbound.py compares both paths.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from provider_gateway import domain as d
from provider_gateway.server.convert import fill_struct, finish_event, finish_to_proto
from provider_gateway.v1 import provider_service_pb2 as pb


class FinishTemplates:
    """Finish events copied from kept templates, for a stream's finish: what one call's finish
    shares with the calls before it (its reason, provider, model, attempt outcome, cost source...)
    is built once, and each call copies the template and sets only what is its own (timing, ids,
    amounts, usage). Building every field through protobuf's constructor cost about 45k
    instructions a stream where the copy costs a fraction (benchmarks/RESULTS.md, issue 15).

    One template per combination of the shared values, for finishes of one attempt (nearly all);
    others are built as before. At most `limit` templates are kept, none whose texts (provider
    names, models, the vendor's raw reason) are long: memory stays bounded whatever the upstreams
    answer, and a finish without a kept template is built, never refused."""

    __slots__ = ("_kept", "_limit")

    MAX_KEPT_TEXT = 512  # characters of a template's texts, together

    def __init__(self, limit: int = 256) -> None:
        self._kept: dict[tuple[Any, ...], pb.StreamEvent] = {}
        self._limit = limit

    def event(self, finish: d.Finish, usage: d.Usage | None) -> pb.StreamEvent:
        """`finish_event(finish, usage)`, the same message."""
        template = self._template_of(finish)
        if template is None:
            return finish_event(finish, usage)
        event = pb.StreamEvent()
        event.CopyFrom(template)
        self._own(event.finish, finish)
        if usage is not None:
            self._usage(event.finish.usage, usage)
        return event

    def fill(self, message: pb.Finish, finish: d.Finish) -> None:
        """Set an answer's (empty) `message` to `finish`, as `finish_to_proto` builds it."""
        template = self._template_of(finish)
        if template is None:
            message.CopyFrom(finish_to_proto(finish))
            return
        message.CopyFrom(template.finish)
        self._own(message, finish)

    def _template_of(self, finish: d.Finish) -> pb.StreamEvent | None:
        """The kept (or a new) template of what `finish` shares; None for a finish of several
        attempts (or none), or when no template is kept for it (`_template`)."""
        if len(finish.attempts) != 1:
            return None
        attempt = finish.attempts[0]
        cost, attempt_cost = finish.cost, attempt.cost
        key = (
            finish.reason,
            finish.raw_reason,
            finish.provider,
            finish.model,
            finish.emulated,
            cost.known,
            cost.usage_source,
            attempt.provider,
            attempt.model,
            attempt.outcome,
            attempt.error,
            attempt_cost.known,
            attempt_cost.usage_source,
        )
        try:
            template = self._kept.get(key)
        except TypeError:  # a value that cannot be a key (a list where a tuple is typed): built
            return None
        return self._template(finish, key) if template is None else template

    @staticmethod
    def _own(message: pb.Finish, finish: d.Finish) -> None:
        """What is `finish`'s own into a copy of its template, which holds each of these at its
        default (absent): only a value that is not is set."""
        t = finish.timing
        if t.gateway_overhead_us or t.time_to_first_token_us or t.total_us or t.upstream_us:
            timing = message.timing
            timing.gateway_overhead_us = t.gateway_overhead_us
            timing.time_to_first_token_us = t.time_to_first_token_us
            timing.total_us = t.total_us
            timing.upstream_us = t.upstream_us
        if finish.response_id:
            message.response_id = finish.response_id
        if finish.cost.amount_micros:
            message.cost.amount_micros = finish.cost.amount_micros
        attempt = finish.attempts[0]
        if attempt.latency_us or attempt.cost.amount_micros:
            kept_attempt = message.attempts[0]
            kept_attempt.latency_us = attempt.latency_us
            kept_attempt.cost.amount_micros = attempt.cost.amount_micros

    def _usage(self, message: pb.Usage, usage: d.Usage) -> None:
        """`usage` into the finish's (empty) Usage: each figure that is not 0 (setting one costs a
        fraction of giving the constructor a dict), and the raw usage."""
        message.SetInParent()  # present even when every figure is 0
        if usage.input_tokens:
            message.input_tokens = usage.input_tokens
        if usage.output_tokens:
            message.output_tokens = usage.output_tokens
        if total := usage.total_tokens:
            message.total_tokens = total
        if usage.cache_read_tokens:
            message.cache_read_tokens = usage.cache_read_tokens
        if usage.cache_write_tokens:
            message.cache_write_tokens = usage.cache_write_tokens
        if usage.reasoning_tokens:
            message.reasoning_tokens = usage.reasoning_tokens
        if usage.estimated:
            message.estimated = True
        if usage.service_tier:
            message.service_tier = usage.service_tier[:64]  # the vendor's word, bounded
        if usage.raw:  # absent rather than empty: clients test HasField("raw")
            fill_struct(message.raw, usage.raw)

    def _template(self, finish: d.Finish, key: tuple[Any, ...]) -> pb.StreamEvent | None:
        """A new template for `key`, kept; None when none is kept (the limit is reached, or its
        texts are long): the finish is then built, at no more than it cost before."""
        texts = sum(len(part) for part in key if isinstance(part, str)) + sum(map(len, finish.emulated))
        if len(self._kept) >= self._limit or texts > self.MAX_KEPT_TEXT:
            return None
        attempt = finish.attempts[0]
        shared = dataclasses.replace(
            finish,
            timing=d.Timing(0, 0, 0, 0),
            attempts=(
                dataclasses.replace(
                    attempt, latency_us=0, cost=dataclasses.replace(attempt.cost, amount_micros=0)
                ),
            ),
            response_id="",
            cost=dataclasses.replace(finish.cost, amount_micros=0),
        )
        template = self._kept[key] = finish_event(shared, None)
        return template
