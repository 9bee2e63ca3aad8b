"""OpenAI Responses API answers to domain events: the stream's typed events, or a whole `response`.

Stream events (../shared/docs/wire-reference-2.md section 2.2), by `type`:
- `response.created` / `.in_progress`: the response's id and model;
- `response.output_item.added`: a `function_call` item starts a tool call (`call_id` is the id the
  client sees and sends back with the result);
- `response.output_text.delta`, `response.refusal.delta`: text; `.annotation.added`: RawContent;
- `response.reasoning_summary_text.delta` (and `response.reasoning_text.delta`): reasoning text,
  summary parts separated by a blank line;
- `response.function_call_arguments.delta`: the call's arguments;
- `response.output_item.done`: a `function_call` ends; a `reasoning` item closes its block with its
  state (`encrypted_content` as the signature, the item's `id`), which the next turn sends back; a
  `message` item's `phase` (commentary or final answer) is RawContent `phase` after its text;
  an item of a kind without a typed event (hosted tools) is RawContent;
- `response.completed` / `response.incomplete`: usage and finish; `response.failed` and `error`: an
  error. A stream that ends before one of these is cut, never a clean end.
A unary `response` object is read into the same events, item by item, so both normalise alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from provider_gateway.domain import (
    ChatResponse,
    FinishReason,
    ProviderFinish,
    RawContent,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    TextDeltaWithLogprobs,
    Usage,
    UsageEvent,
)
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.http.errors import error_from_response
from provider_gateway.providers.base import fold
from provider_gateway.providers.openai.codec import OPENAI_TIERS
from provider_gateway.providers.openai.logprobs import token_logprobs
from provider_gateway.providers.shapes import shape_checked
from provider_gateway.providers.vendor_wire import ToolCallAssembler, malformed, served_tier

TEXT_DELTAS = frozenset({"response.output_text.delta", "response.refusal.delta"})
REASONING_DELTAS = frozenset({"response.reasoning_summary_text.delta", "response.reasoning_text.delta"})
INCOMPLETE = {"max_output_tokens": FinishReason.LENGTH, "content_filter": FinishReason.CONTENT_FILTER}
# Error codes of failed responses and `error` events ([OAI-SDK] response_error.py), as the HTTP
# status the same failure has before the first byte; image and prompt codes are the caller's (400).
ERROR_STATUS = {"server_error": 500, "rate_limit_exceeded": 429, "vector_store_timeout": 504}


def normalise_usage(raw: Mapping[str, Any]) -> Usage:
    """`input_tokens` includes cached ones; `output_tokens` includes reasoning ones."""
    details = raw.get("input_tokens_details") or {}
    output_details = raw.get("output_tokens_details") or {}
    return Usage(
        input_tokens=int(raw.get("input_tokens") or 0),
        output_tokens=int(raw.get("output_tokens") or 0),
        cache_read_tokens=int(details.get("cached_tokens") or 0),
        cache_write_tokens=int(details.get("cache_write_tokens") or 0),
        reasoning_tokens=int(output_details.get("reasoning_tokens") or 0),
        raw=dict(raw),
    )


def response_error(provider: str, error: Any, where: str) -> GatewayError:
    """A `response.failed` error or an `error` event, worded and classed like the HTTP error."""
    error = error if isinstance(error, Mapping) else {"message": str(error)}
    code = str(error.get("code") or "")
    status = ERROR_STATUS.get(code, 400 if code else 500)
    mapped = error_from_response(provider, status, {}, orjson.dumps({"error": dict(error)}))
    mapped.message = f"{where}: {mapped.message}"
    mapped.args = (mapped.message,)
    return mapped


def _phase(item: Mapping[str, Any]) -> list[StreamEvent]:
    """A message item's `phase` (`commentary`: a preamble, e.g. before tool calls; `final_answer`),
    which some models (gpt-5.3-codex and later) label their messages with: RawContent `phase`,
    `{"phase": ...}`, after the message's text, so that a client can tell the two apart."""
    phase = item.get("phase")
    return [RawContent("phase", {"phase": phase})] if isinstance(phase, str) and phase else []


@dataclass(slots=True)
class ResponsesStreamDecoder:
    """Feed each event's parsed JSON; `finished` once a terminal event arrived."""

    provider: str = ""
    logprobs: bool = False  # asked for: text deltas and parts carry their `logprobs`
    model: str = ""
    response_id: str = ""
    finished: bool = False
    tools: ToolCallAssembler = field(default_factory=ToolCallAssembler)  # by output_index
    _with_arguments: set[int] = field(default_factory=set)  # calls whose arguments streamed
    _summary_parts: set[tuple[str, int]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.tools.provider = self.provider

    @shape_checked
    def feed(self, data: Any) -> list[StreamEvent]:
        if not isinstance(data, Mapping):
            raise malformed(self.provider, "event data is not a JSON object")
        kind = str(data.get("type") or "")
        if kind in TEXT_DELTAS:
            delta = str(data.get("delta") or "")
            if self.logprobs and (entries := token_logprobs(data.get("logprobs"))):
                return [TextDeltaWithLogprobs(delta, entries)]
            return [TextDelta(delta)] if delta else []
        if kind in REASONING_DELTAS:
            return self._reasoning(data)
        if kind == "response.function_call_arguments.delta":
            index = int(data.get("output_index") or 0)
            self._with_arguments.add(index)
            return self.tools.delta(index, str(data.get("delta") or ""))
        if kind == "response.output_item.added":
            item = data.get("item") or {}
            if item.get("type") != "function_call":
                return []
            return self._start(int(data.get("output_index") or 0), item)
        if kind == "response.output_item.done":
            return self._item_done(int(data.get("output_index") or 0), data.get("item") or {})
        if kind == "response.output_text.annotation.added":
            annotation = data.get("annotation") or {}
            return [RawContent(str(annotation.get("type") or "annotation"), dict(annotation))]
        if kind in ("response.created", "response.in_progress", "response.queued"):
            self._identify(data.get("response") or {})
            return []
        if kind in ("response.completed", "response.incomplete"):
            self.finished = True
            # The event names the status when its response object leaves it out.
            return self._end(data.get("response") or {}, kind.removeprefix("response."))
        if kind == "response.failed":
            error = (data.get("response") or {}).get("error") or {}
            raise response_error(self.provider, error, "the response failed")
        if kind == "error":
            raise response_error(self.provider, data, "error inside the stream")
        return []  # parts added/done, text done, hosted-tool progress: their content comes elsewhere

    def _identify(self, response: Mapping[str, Any]) -> None:
        self.response_id = str(response.get("id") or self.response_id)
        self.model = str(response.get("model") or self.model)

    def _reasoning(self, data: Mapping[str, Any]) -> list[StreamEvent]:
        delta = str(data.get("delta") or "")
        part = (str(data.get("item_id") or ""), int(data.get("summary_index") or 0))
        separator = "\n\n" if part[1] and part not in self._summary_parts else ""
        self._summary_parts.add(part)
        return [ReasoningDelta(separator + delta)] if delta or separator else []

    def _start(self, index: int, item: Mapping[str, Any], arguments: str = "") -> list[StreamEvent]:
        call_id = str(item.get("call_id") or item.get("id") or "")
        return self.tools.start(index, call_id, str(item.get("name") or ""), arguments)

    def _item_done(self, index: int, item: Mapping[str, Any]) -> list[StreamEvent]:
        kind = item.get("type")
        if kind == "function_call":
            arguments = str(item.get("arguments") or "")
            if not self.tools.is_open(index):  # no `added` event: the whole call at once
                return [*self._start(index, item, arguments), *self.tools.end(index)]
            if index not in self._with_arguments:  # arguments only in the finished item
                return [*self.tools.delta(index, arguments), *self.tools.end(index)]
            return self.tools.end(index)
        if kind == "reasoning":
            return [
                ReasoningDelta(
                    "", signature=str(item.get("encrypted_content") or ""), id=str(item.get("id") or "")
                )
            ]
        if kind == "message":
            return _phase(item)  # its text came as deltas
        return [RawContent(str(kind or "item"), dict(item))]

    def _end(self, response: Mapping[str, Any], said: str = "") -> list[StreamEvent]:
        """Usage and finish from the terminal `response` object (`said`: the status its event
        names). A status nobody gave is UNSPECIFIED, never an assumed `completed`."""
        self._identify(response)
        events: list[StreamEvent] = []
        if isinstance(response.get("usage"), Mapping):
            usage = normalise_usage(response["usage"])
            # The terminal response's tier is the one served (`response.created` echoes the ask).
            usage.service_tier = served_tier(response.get("service_tier"), OPENAI_TIERS)
            events.append(UsageEvent(usage))
        status = str(response.get("status") or said)
        if status == "failed":
            raise response_error(self.provider, response.get("error") or {}, "the response failed")
        raw_reason = status
        reason = FinishReason.TOOL_CALLS if self.tools.count else FinishReason.STOP
        if status == "incomplete":
            raw_reason = str((response.get("incomplete_details") or {}).get("reason") or status)
            reason = INCOMPLETE.get(raw_reason, FinishReason.OTHER)
        elif status != "completed":
            reason = FinishReason.OTHER if status else FinishReason.UNSPECIFIED
        events.append(ProviderFinish(reason, raw_reason, self.model, self.response_id))
        return events

    @shape_checked
    def response(self, body: Any) -> ChatResponse:
        """A whole `response` object (the unary answer), read into the stream's events."""
        if not isinstance(body, Mapping) or not isinstance(body.get("output"), list):
            raise GatewayError(
                ErrorKind.UNAVAILABLE,
                f"{self.provider} answered without an output list: {str(body)[:80]!r}",
                provider=self.provider,
                retryable=True,
            )
        self._identify(body)
        events: list[StreamEvent] = []
        for index, item in enumerate(body["output"]):
            events.extend(self._whole_item(index, item))
        events.extend(self._end(body))
        return fold(events)

    def _whole_item(self, index: int, item: Mapping[str, Any]) -> list[StreamEvent]:
        kind = item.get("type")
        if kind == "message":
            events: list[StreamEvent] = []
            for part in item.get("content") or []:
                text = part.get("text") if part.get("type") == "output_text" else part.get("refusal")
                entries = token_logprobs(part.get("logprobs")) if self.logprobs else ()
                if isinstance(text, str) and entries:
                    events.append(TextDeltaWithLogprobs(text, entries))
                elif isinstance(text, str) and text:
                    events.append(TextDelta(text))
                for annotation in part.get("annotations") or []:
                    events.append(RawContent(str(annotation.get("type") or "annotation"), dict(annotation)))
            return events + _phase(item)
        if kind == "reasoning":
            texts = [str(s.get("text") or "") for s in item.get("summary") or []]
            texts += [str(c.get("text") or "") for c in item.get("content") or []]
            return [
                ReasoningDelta(
                    "\n\n".join(t for t in texts if t),
                    signature=str(item.get("encrypted_content") or ""),
                    id=str(item.get("id") or ""),
                )
            ]
        return self._item_done(index, item)
