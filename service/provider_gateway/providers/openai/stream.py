"""Chat Completions answers to domain events: stream chunks one at a time, or a unary body whole.

Both go through `ChatStreamParser`, so a `chat.completion` body is normalised exactly as the
chunks of a stream are (usage with cache and reasoning tokens, tool calls, finish, a leading `<think>`
block, content chunks): a unary message is read as one chunk whose delta is the message.
The common message (string content, tool calls, usage: `plain_message`) is decoded straight into
the ChatResponse by the same methods, without the events and their fold.
The host's differences come from its wire (`codec.ChatWire` and subclasses).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from provider_gateway.domain import (
    ChatResponse,
    FinishReason,
    ProviderFinish,
    RawContent,
    ReasoningDelta,
    ReasoningPart,
    StreamEvent,
    TextDelta,
    ToolCallEnd,
    Usage,
    UsageEvent,
)
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.providers.base import fold
from provider_gateway.providers.logprobs import with_logprobs
from provider_gateway.providers.open_calls import ended_call
from provider_gateway.providers.openai.codec import ChatWire, stream_error
from provider_gateway.providers.openai.logprobs import token_logprobs
from provider_gateway.providers.openai.reasoning_details import read_details
from provider_gateway.providers.openai.tool_calls import ChatToolCalls
from provider_gateway.providers.shapes import SHAPE_ERRORS, shape_checked
from provider_gateway.wire import json_text
from provider_gateway.wire.sse import SseEvent
from provider_gateway.wire.think import ThinkSplitter, may_open

FINISH_REASONS = {
    "stop": FinishReason.STOP,
    "length": FinishReason.LENGTH,
    "tool_calls": FinishReason.TOOL_CALLS,
    "function_call": FinishReason.TOOL_CALLS,
    "content_filter": FinishReason.CONTENT_FILTER,
    "model_length": FinishReason.LENGTH,  # Mistral
    "eos": FinishReason.STOP,  # Together: end of sequence, the model ended the answer itself
}


# Finishes where the model ended its answer itself (not cut off by a limit, a filter or the host).
_ANSWERED = (FinishReason.STOP, FinishReason.TOOL_CALLS)


# A delta with only these is plain text (or, with only a role, nothing): `_delta` reads more fields.
_PLAIN_DELTA_FIELDS = frozenset(("content", "role"))


# The message fields `plain_message` reads (`_delta` reads reasoning fields too).
_PLAIN_MESSAGE_FIELDS = frozenset(("role", "content", "refusal", "annotations", "tool_calls"))


def plain_message(body: dict[str, Any], think_tags: bool) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The (choice, message) of the unary answer nearly every call gets: no error, one choice,
    index 0, a `message` of `_PLAIN_MESSAGE_FIELDS` whose content and refusal are strings or null,
    and (with `think_tags`) text that cannot open a `<think>` block. None for any other body
    (`body["choices"]` is a list). Type checks and lookups only: no JSON shape makes it raise."""
    choices = body["choices"]
    if body.get("error") or len(choices) != 1:
        return None
    choice = choices[0]
    if not isinstance(choice, dict) or choice.get("index", 0) != 0 or choice.get("delta"):
        return None
    message = choice.get("message")
    if not isinstance(message, dict) or not message.keys() <= _PLAIN_MESSAGE_FIELDS:
        return None
    content, refusal = message.get("content"), message.get("refusal")
    if not isinstance(content, str | None) or not isinstance(refusal, str | None):
        return None
    if think_tags and may_open((content or "") + (refusal or "")):
        return None
    return choice, message


def event_chunk(frame: bytes | SseEvent, provider: str) -> dict[str, Any] | None:
    """The chunk a stream event's data holds; None for `[DONE]`. Data as bytes (a plain event's:
    `SseDecoder.payloads`) is decoded as `SseDecoder.feed` decodes it ("replace"). The adapter
    parses such bytes before it calls this: when they are a JSON object, it is the object their
    decoded text gives here (tests check), and no text is made."""
    data = frame.decode("utf-8", "replace") if isinstance(frame, bytes) else frame.data
    if data.strip() == "[DONE]":
        return None
    try:
        value = json_text.loads(data)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise GatewayError(
            ErrorKind.UNAVAILABLE,
            f"malformed event from {provider}: {data[:80]!r}",
            provider=provider,
            retryable=True,
        )
    return value


class ChatStreamParser:
    """Chunks in (parsed JSON), domain events out; `close` ends open tool calls and reports.

    With `logprobs` (the request asked for them) every chunk is read by `feed`, which puts each
    choice's `logprobs` entries on its text; `stream_text`'s plain-token path, which reads no
    logprobs, is for the streams of every other request. A leading `<think>` block then stays in
    the text (no split), since the entries score its tokens too and must match the text.

    `prompt_opens_think`: the model's chat template opened a `<think>` block in the prompt, so its
    output is reasoning up to the first `</think>` (wire/think.py), on any host; when the model
    ends the answer itself (`_ANSWERED`) without closing the block, that output is the text too."""

    def __init__(
        self, provider: str, wire: ChatWire, *, logprobs: bool = False, prompt_opens_think: bool = False
    ) -> None:
        self.provider = provider
        self.wire = wire
        self.logprobs = logprobs
        self.prompt_opens_think = prompt_opens_think and not logprobs
        split = (wire.preset.think_tags or prompt_opens_think) and not logprobs
        self._think = ThinkSplitter(prompt_opened=self.prompt_opens_think) if split else None
        self._calls = ChatToolCalls(wire)
        self.usage: Usage | None = None
        self.finish_reason = ""
        self.model = ""
        self.response_id = ""
        self.output_chars = 0
        # A finish that reports a failure (`ChatWire.check_finish`) once part of the answer went
        # out, raised by `close`: the chunk that says it may carry the last text, which the client
        # gets first, as the SDK reads it. Before that it is raised at once: the router fails over.
        self.failure: GatewayError | None = None
        self._spoke = False  # `feed` returned events (the plain path counts its text in output_chars)

    def stream_chunk(self, chunk: dict[str, Any]) -> list[StreamEvent]:
        """A streamed chunk's events (`stream_text`'s, a plain text as its TextDelta)."""
        decoded = self.stream_text(chunk)
        return [TextDelta(decoded)] if isinstance(decoded, str) else decoded

    def stream_text(self, chunk: dict[str, Any]) -> str | list[StreamEvent]:
        """A streamed chunk's events, or its text alone (a non-empty str) when it is the plain
        text delta of nearly every chunk: one choice, index 0, whose delta holds only string
        `content` and/or `role`, no finish, usage nor error, and no think tags to split.

        That chunk is read by a few lookups that cannot raise, written out here rather than
        called (with `_identify` and `_text` likewise): this is the per-token cost of every
        stream. Any other chunk goes to `feed`, which reads every field under its shape check;
        tests check that both read every chunk the same."""
        if chunk.get("usage") or chunk.get("error"):
            return self.feed(chunk)
        try:
            # Raises for anything but one choice that is an object with a "delta" (a dict here:
            # JSON has no other type that takes a str key).
            (choice,) = chunk["choices"]
            delta = choice["delta"]
            plain = (
                not choice.get("finish_reason")
                and choice.get("index", 0) == 0
                and type(delta) is dict
                and delta
                # Its keys are among _PLAIN_DELTA_FIELDS: counted (`keys() <=` cost twice as much).
                and len(delta) == ("content" in delta) + ("role" in delta)
            )
        except (TypeError, ValueError, KeyError, AttributeError):
            plain = False
        if not plain or ((text := delta.get("content")) is not None and not isinstance(text, str)):
            return self.feed(chunk)
        if model := chunk.get("model"):  # stored only when named, as `_identify` does
            self.model = model
        if response_id := chunk.get("id"):
            self.response_id = response_id
        if not text:
            return []
        self.output_chars += len(text)
        return list(self._think.feed(text)) if self._think else text

    @shape_checked
    def feed(self, chunk: dict[str, Any]) -> list[StreamEvent]:
        if chunk.get("error"):
            raise stream_error(self.provider, chunk["error"])
        self._identify(chunk)
        if chunk.get("usage"):  # before a finish that fails (`_finish`): kept as partial usage
            self.usage = self.wire.usage(chunk["usage"])
            self.usage.service_tier = self.wire.service_tier(chunk)
        events: list[StreamEvent] = []
        silent = not self.output_chars and not self._spoke  # nothing of the answer went out yet
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue  # n > 1 is not part of the gateway's contract
            delta = self._delta(choice.get("delta") or choice.get("message") or {})
            if self.logprobs and (scored := choice.get("logprobs")):
                # The content's tokens, then a refusal's (`_delta` appends its text in that order).
                entries = token_logprobs(scored.get("content")) + token_logprobs(scored.get("refusal"))
                delta = with_logprobs(delta, entries)
            events.extend(delta)
            if choice.get("finish_reason"):
                try:
                    events.extend(self._finish(choice["finish_reason"]))
                except GatewayError as failure:
                    if silent:  # dropped with its chunk: the router may still fail over whole
                        raise
                    self.failure = failure
        if events:
            self._spoke = True
        return events

    def _finish(self, reason: Any) -> list[StreamEvent]:
        """A choice's finish: a failure the host reports raises; open tool calls end."""
        self.finish_reason = str(reason)
        self.wire.check_finish(self.finish_reason, self.provider)
        return self._calls.end()

    def _identify(self, chunk: dict[str, Any]) -> None:
        """The answer's model and id, as the latest chunk naming them says."""
        self.model = chunk.get("model") or self.model
        self.response_id = chunk.get("id") or self.response_id

    def _delta(self, delta: dict[str, Any]) -> list[StreamEvent]:
        """Every field a delta may carry (a field read here is not one of `_PLAIN_DELTA_FIELDS`)."""
        events: list[StreamEvent] = []
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if details := delta.get("reasoning_details"):  # OpenRouter: its blocks' text and state
            events.extend(read_details(details, reasoning))
            said = bool(events)  # text or state: either way the host reasons in a field of its own
        elif said := isinstance(reasoning, str) and bool(reasoning):
            events.append(ReasoningDelta(reasoning))
        if said and self._think is not None:
            self._think.reasoning_elsewhere()
        for event in self.wire.content(delta.get("content"), self.provider):
            events.extend(self._text(event.text) if isinstance(event, TextDelta) else [event])
        refusal = delta.get("refusal")  # OpenAI: a refusal instead of the content, as text
        if isinstance(refusal, str) and refusal:
            events.extend(self._text(refusal))
        events.extend(self._annotations(delta.get("annotations")))
        audio = delta.get("audio")  # spoken output (`modalities: ["audio"]`): no typed event
        if audio:
            events.append(RawContent("audio", dict(audio)))
        # Gemini 3 signs an answer without calls on the message (its last delta), as the `gemini`
        # kind's signed text part: a reasoning delta that closes a block, as for a signed call.
        extra = delta.get("extra_content")
        if extra and (signature := (extra.get("google") or {}).get("thought_signature")):
            events.append(ReasoningDelta("", signature=str(signature)))
        for position, fragment in enumerate(delta.get("tool_calls") or []):
            events.extend(self._tool_fragment(fragment, position == 0))
        return events

    @staticmethod
    def _annotations(notes: Any) -> list[RawContent]:
        """url_citation of search models and the like: no typed event, passed on as they are."""
        return [RawContent(str(note.get("type") or "annotation"), dict(note)) for note in notes or []]

    def _text(self, text: str) -> list[StreamEvent]:
        self.output_chars += len(text)
        return list(self._think.feed(text)) if self._think else [TextDelta(text)]

    def _tool_fragment(self, fragment: dict[str, Any], first_in_list: bool) -> list[StreamEvent]:
        """A `tool_calls` entry (`ChatToolCalls`: by its index, or without one as Gemini sends).
        Gemini signs a call (`extra_content.google.thought_signature`): the signature comes
        first, as a reasoning delta that closes a block, as the `gemini` kind reads
        `thoughtSignature`, so the client can send it back with the call."""
        index = fragment.get("index")
        function = fragment.get("function") or {}
        arguments = self.wire.arguments(function.get("arguments"))
        self.output_chars += len(arguments)
        events = self._calls.fragment(
            None if index is None else int(index),
            first_in_list,
            str(fragment.get("id") or ""),
            str(function.get("name") or ""),
            arguments,
        )
        extra = fragment.get("extra_content")
        if extra and (signature := (extra.get("google") or {}).get("thought_signature")):
            events.insert(0, ReasoningDelta("", signature=str(signature)))
        return events

    @shape_checked
    def close(self, estimated_usage: Usage | None = None) -> list[StreamEvent]:
        if self.failure is not None:
            raise self.failure
        answered = FINISH_REASONS.get(self.finish_reason) in _ANSWERED
        events: list[StreamEvent] = list(self._think.close(answered=answered)) if self._think else []
        events.extend(self._calls.end())
        usage = self.usage or estimated_usage
        if usage is not None:
            events.append(UsageEvent(usage))
        events.append(self._provider_finish())
        return events

    def _provider_finish(self) -> ProviderFinish:
        """The finish as the client gets it (the raw reason as the host said it).

        `stop` after tool calls is TOOL_CALLS (the model waits for their results: Gemini's
        OpenAI-compatible endpoint says `stop`). No finish_reason at all before `[DONE]` is
        UNSPECIFIED, not a clean STOP: whether the answer is whole is unknown (the SDK's
        finish_reason is None), as Bedrock's answer without a stop reason is."""
        if not self.finish_reason:
            reason = FinishReason.UNSPECIFIED
        else:
            reason = FINISH_REASONS.get(self.finish_reason, FinishReason.OTHER)
        if reason is FinishReason.STOP and self._calls:
            reason = FinishReason.TOOL_CALLS
        return ProviderFinish(reason, self.finish_reason, self.model, self.response_id)

    @shape_checked
    def response(self, body: Any, estimate: Callable[[int], Usage]) -> ChatResponse:
        """A whole `chat.completion` body; `estimate(output_chars)` when it reports no usage.

        The common body (`plain_message`) is decoded directly (`_message_response`): the events
        and their fold were most of this function's cost, on every unary call. Any other body, and
        a plain one whose values have the wrong shape, is read by `folded_response`, whose shape
        error names the step that failed, as it always has."""
        if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
            if isinstance(body, dict) and body.get("error"):
                raise stream_error(self.provider, body["error"])
            raise GatewayError(
                ErrorKind.UNAVAILABLE,
                f"{self.provider} answered without choices: {str(body)[:80]!r}",
                provider=self.provider,
                retryable=True,
            )
        # Text that starts inside a block is reasoning: never the plain (all-text) message.
        skip_plain = self.logprobs or self.prompt_opens_think
        plain = None if skip_plain else plain_message(body, self._think is not None)
        if plain is not None:
            try:
                return self._message_response(body, *plain, estimate)
            except SHAPE_ERRORS:
                return ChatStreamParser(self.provider, self.wire).folded_response(body, estimate)
        return self.folded_response(body, estimate)

    def folded_response(self, body: dict[str, Any], estimate: Callable[[int], Usage]) -> ChatResponse:
        """Any body with `choices`: read as one chunk, and its events folded."""
        events = self.feed(body)
        events.extend(self.close(None if self.usage is not None else estimate(self.output_chars)))
        return fold(events)

    def _message_response(
        self,
        body: dict[str, Any],
        choice: dict[str, Any],
        message: dict[str, Any],
        estimate: Callable[[int], Usage],
    ) -> ChatResponse:
        """What `folded_response` gives for a `plain_message`, by the same steps in the same order
        (`feed`, `_delta`, `close`), collected into the response instead of emitted as events."""
        self._identify(body)
        text = (message.get("content") or "") + (message.get("refusal") or "")  # as `_text` joins
        self.output_chars += len(text)
        notes = self._annotations(message.get("annotations"))
        signed: list[ReasoningPart] = []  # Gemini's thought signatures, as `fold` makes them parts
        for position, fragment in enumerate(message.get("tool_calls") or []):
            events = self._tool_fragment(fragment, position == 0)
            if events and type(first := events[0]) is ReasoningDelta:  # where a signature goes
                signed.append(ReasoningPart("", first.signature))
        if body.get("usage"):  # before a finish that fails (`_finish`), as `feed` reads them
            self.usage = self.wire.usage(body["usage"])
            self.usage.service_tier = self.wire.service_tier(body)
        ends = self._finish(choice["finish_reason"]) if choice.get("finish_reason") else []
        ends += self._calls.end()
        return ChatResponse(
            text=text,
            reasoning_signature=signed[-1].signature if signed else "",
            reasoning_parts=signed,
            tool_calls=[ended_call(end.call) for end in ends if isinstance(end, ToolCallEnd)],
            raw_content=notes,
            usage=self.usage or estimate(self.output_chars),
            finish=self._provider_finish(),
        )
