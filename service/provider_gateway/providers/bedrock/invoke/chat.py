"""The chat-shaped families: OpenAI gpt-oss, AI21 Jamba and Writer Palmyra (OpenAI Chat
Completions bodies), and Mistral AI chat completion (Mistral Large 24.07+, Pixtral Large), whose
choices carry `stop_reason` and, when streamed, whole `message` pieces instead of `delta`s.

A completion's prompt becomes one user message. gpt-oss writes its reasoning in `<reasoning>`
tags ahead of the answer when called through InvokeModel; it is relayed as reasoning.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from provider_gateway.domain import CompletionRequest, ReasoningDelta, StreamEvent, TextDelta
from provider_gateway.providers.bedrock.common import items, obj, text
from provider_gateway.providers.bedrock.invoke.base import ConverseFeatures, FamilyCodec, put

USAGE_NAMES = ("prompt_tokens", "completion_tokens")
OPEN_TAG, CLOSE_TAG = "<reasoning>", "</reasoning>"


class ChatCompletionsCodec(FamilyCodec):
    """The OpenAI Chat Completions response: choices[].message|delta and finish_reason."""

    label = "OpenAI Chat Completions"
    stop_field = "choices[].finish_reason"
    end_marker = "a chunk with finish_reason"
    stop_key = "finish_reason"
    max_tokens_field = "max_tokens"

    def __init__(self, model: str) -> None:
        super().__init__(model)
        self.reasoning = ReasoningTags()

    def request(self, request: CompletionRequest, max_tokens: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "messages": [self.user_message(request.prompt)],
            self.max_tokens_field: max_tokens,
        }
        put(body, temperature=request.temperature, top_p=request.top_p, stop=request.stop)
        return self.finish_body(body, request)

    def user_message(self, prompt: str) -> dict[str, Any]:
        return {"role": "user", "content": prompt}

    def body(self, body: Mapping[str, Any]) -> list[StreamEvent]:
        events = self._choices(body, "message")
        return events + self.reasoning.flush() + self.tools.end_all()

    def chunk(self, chunk: Mapping[str, Any]) -> list[StreamEvent]:
        if "choices" not in chunk and "usage" in chunk:  # a usage-only last chunk
            self.take_usage(obj(chunk.get("usage")), *USAGE_NAMES)
            return []
        events = self._choices(chunk, "delta")
        if self.finished:
            events += self.reasoning.flush() + self.tools.end_all()
        return events

    def _choices(self, payload: Mapping[str, Any], part: str) -> list[StreamEvent]:
        choices = [obj(c) for c in items(payload.get("choices"))]
        if not isinstance(payload.get("choices"), list) or not all(
            isinstance(c.get(part), Mapping) for c in choices
        ):
            raise self.unreadable(f"no choices[].{part}")
        self.response_id = text(payload.get("id")) or self.response_id
        self.take_usage(obj(payload.get("usage")), *USAGE_NAMES)
        events: list[StreamEvent] = []
        for choice in choices:
            message = obj(choice.get(part))
            if value := text(message.get("reasoning_content")):
                events.append(ReasoningDelta(value))
            events += self.reasoning.feed(text(message.get("content")))
            for position, call in enumerate(map(obj, items(message.get("tool_calls")))):
                events += self._tool(position, call)
            self.stop(choice.get(self.stop_key))
        self.finished = self.stop_reason is not None
        return events

    def _tool(self, position: int, call: Mapping[str, Any]) -> list[StreamEvent]:
        key = call.get("index", position)
        function = obj(call.get("function"))
        events: list[StreamEvent] = []
        if not self.tools.is_open(key):
            events += self.tools.start(key, text(call.get("id")), text(function.get("name")))
        return events + self.tools.delta(key, text(function.get("arguments")))


class GptOssCodec(ChatCompletionsCodec):
    label = "OpenAI gpt-oss"
    max_tokens_field = "max_completion_tokens"
    converse = ConverseFeatures(tools=True, reasoning="always")


class JambaCodec(ChatCompletionsCodec):
    label = "AI21 Labs Jamba"

    @classmethod
    def features(cls, name: str) -> ConverseFeatures:
        return ConverseFeatures(tools=not name.startswith("jamba-instruct"))  # Jamba 1.5 calls tools


class WriterCodec(ChatCompletionsCodec):
    label = "Writer Palmyra"
    converse = ConverseFeatures(tools=True)

    def user_message(self, prompt: str) -> dict[str, Any]:
        # As Bedrock's Palmyra X4/X5 pages show the body: the content is a {"text": ...} object.
        return {"role": "user", "content": {"text": prompt}}


class MistralChatCodec(ChatCompletionsCodec):
    label = "Mistral AI chat completion"
    stop_field = "choices[].stop_reason"
    end_marker = "a chunk with stop_reason"
    stop_key = "stop_reason"

    @classmethod
    def features(cls, name: str) -> ConverseFeatures:
        return ConverseFeatures(tools=True, vision=name.startswith("pixtral"))

    def request(self, request: CompletionRequest, max_tokens: int) -> dict[str, Any]:
        self.refuse_stop(request)  # the chat completion body documents no stop sequences
        return super().request(request, max_tokens)

    def chunk(self, chunk: Mapping[str, Any]) -> list[StreamEvent]:
        # Streamed choices carry `message` pieces; accept `delta` too, as Mistral's own API sends.
        choices = [obj(c) for c in items(chunk.get("choices"))]
        if choices and all("delta" in c and "message" not in c for c in choices):
            return super().chunk(chunk)
        events = self._choices(chunk, "message")
        if self.finished:
            events += self.reasoning.flush() + self.tools.end_all()
        return events


class ReasoningTags:
    """Splits `<reasoning>...</reasoning>` at the start of the content off as reasoning, across
    chunk boundaries; text without the tag passes through unchanged."""

    def __init__(self) -> None:
        self.mode = "start"  # "start" (undecided), "reasoning", "text"
        self.pending = ""

    def feed(self, piece: str) -> list[StreamEvent]:
        if not piece:
            return []
        if self.mode == "text":
            return [TextDelta(piece)]
        self.pending += piece
        if self.mode == "start":
            stripped = self.pending.lstrip()
            if OPEN_TAG.startswith(stripped):
                return []  # could still be the tag
            if not stripped.startswith(OPEN_TAG):
                whole, self.mode, self.pending = self.pending, "text", ""
                return [TextDelta(whole)]
            self.mode, self.pending = "reasoning", stripped[len(OPEN_TAG) :]
        return self._reasoning()

    def _reasoning(self) -> list[StreamEvent]:
        end = self.pending.find(CLOSE_TAG)
        if end >= 0:
            thought, rest = self.pending[:end], self.pending[end + len(CLOSE_TAG) :]
            self.mode, self.pending = "text", ""
            events: list[StreamEvent] = [ReasoningDelta(thought)] if thought else []
            return events + ([TextDelta(rest)] if rest else [])
        keep = len(CLOSE_TAG) - 1  # the tail may be the start of the closing tag
        thought, self.pending = self.pending[:-keep], self.pending[-keep:]
        return [ReasoningDelta(thought)] if thought else []

    def flush(self) -> list[StreamEvent]:
        rest, self.pending = self.pending, ""
        if not rest:
            return []
        return [ReasoningDelta(rest)] if self.mode == "reasoning" else [TextDelta(rest)]
