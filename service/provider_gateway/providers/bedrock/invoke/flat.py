"""The prompt-completion families with flat bodies: Titan Text, Meta Llama, Mistral text
completion and DeepSeek-R1. Each stream chunk is a piece of the body; the stop field stays null
until the last chunk, whose value ends the stream.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from provider_gateway.domain import CompletionRequest, StreamEvent, TextDelta
from provider_gateway.providers.bedrock.common import count, items, obj, text
from provider_gateway.providers.bedrock.invoke.base import ConverseFeatures, FamilyCodec, put

TITAN_COUNTS = ("inputTextTokenCount", "totalOutputTextTokenCount", "tokenCount")


class TitanCodec(FamilyCodec):
    label = "Amazon Titan Text"
    stop_field = "completionReason"
    end_marker = "a chunk with completionReason"
    converse = ConverseFeatures()  # Titan Text: no tool use, no images, no reasoning

    def request(self, request: CompletionRequest, max_tokens: int) -> dict[str, Any]:
        config: dict[str, Any] = {"maxTokenCount": max_tokens}
        put(config, temperature=request.temperature, topP=request.top_p, stopSequences=request.stop)
        return self.finish_body({"inputText": request.prompt, "textGenerationConfig": config}, request)

    def body(self, body: Mapping[str, Any]) -> list[StreamEvent]:
        results = items(body.get("results"))
        if not results:
            raise self.unreadable("no results")
        self._usage(body)
        events: list[StreamEvent] = []
        for result in map(obj, results):
            events += self.chunk(result)
        return events

    def chunk(self, chunk: Mapping[str, Any]) -> list[StreamEvent]:
        if "outputText" not in chunk and "completionReason" not in chunk:
            raise self.unreadable("no outputText")
        self._usage(chunk)
        self.stop(chunk.get("completionReason"))
        self.finished = self.stop_reason is not None
        value = text(chunk.get("outputText"))
        return [TextDelta(value)] if value else []

    def _usage(self, part: Mapping[str, Any]) -> None:
        self.raw_usage.update({k: part[k] for k in TITAN_COUNTS if part.get(k) is not None})
        if value := count(part.get("inputTextTokenCount")):
            self.model_usage["input"] = value
        if value := count(part.get("totalOutputTextTokenCount")) or count(part.get("tokenCount")):
            self.model_usage["output"] = value


class LlamaCodec(FamilyCodec):
    """Llama 2, 3 and 4 share the body; the prompt is sent as given, so a caller who wants the
    instruction template (`<|begin_of_text|>...` for Llama 3) writes it into the prompt."""

    label = "Meta Llama"
    stop_field = "stop_reason"
    end_marker = "a chunk with stop_reason"
    max_tokens_limit = 2048  # max_gen_len: "Maximum 2048" on the Llama page

    @classmethod
    def features(cls, name: str) -> ConverseFeatures:
        # Tool use from Llama 3.1 on (not Llama 2 or 3.0); images on Llama 3.2 11B/90B and Llama 4.
        tools = name.startswith(("llama3-1", "llama3-2", "llama3-3", "llama4"))
        vision = name.startswith(("llama3-2-11b", "llama3-2-90b", "llama4"))
        return ConverseFeatures(tools=tools, vision=vision)

    def request(self, request: CompletionRequest, max_tokens: int) -> dict[str, Any]:
        self.refuse_stop(request)
        body: dict[str, Any] = {"prompt": request.prompt, "max_gen_len": max_tokens}
        put(body, temperature=request.temperature, top_p=request.top_p)
        return self.finish_body(body, request)

    def body(self, body: Mapping[str, Any]) -> list[StreamEvent]:
        return self.chunk(body)

    def chunk(self, chunk: Mapping[str, Any]) -> list[StreamEvent]:
        if "generation" not in chunk:
            raise self.unreadable("no generation")
        self.take_usage(chunk, "prompt_token_count", "generation_token_count")
        self.stop(chunk.get("stop_reason"))
        self.finished = self.stop_reason is not None
        value = text(chunk.get("generation"))
        return [TextDelta(value)] if value else []


class ChoicesTextCodec(FamilyCodec):
    """`prompt` + `max_tokens` bodies whose answer is a list (`outputs` or `choices`) of
    {text, stop_reason}."""

    list_field = ""

    def request(self, request: CompletionRequest, max_tokens: int) -> dict[str, Any]:
        body: dict[str, Any] = {"prompt": request.prompt, "max_tokens": max_tokens}
        put(body, temperature=request.temperature, top_p=request.top_p, stop=request.stop)
        return self.finish_body(body, request)

    def body(self, body: Mapping[str, Any]) -> list[StreamEvent]:
        return self.chunk(body)

    def chunk(self, chunk: Mapping[str, Any]) -> list[StreamEvent]:
        entries = [obj(e) for e in items(chunk.get(self.list_field))]
        if not entries or not all("text" in e for e in entries):
            raise self.unreadable(f"no {self.list_field}[].text")
        events: list[StreamEvent] = []
        for entry in entries:
            if value := text(entry.get("text")):
                events.append(TextDelta(value))
            self.stop(entry.get("stop_reason"))
        self.finished = self.stop_reason is not None
        return events


class MistralTextCodec(ChoicesTextCodec):
    """Mistral 7B, Mixtral 8x7B, Mistral Large (24.02) and Small (24.02): text completion."""

    label = "Mistral AI text completion"
    stop_field = "outputs[].stop_reason"
    end_marker = "a chunk with stop_reason"
    list_field = "outputs"

    @classmethod
    def features(cls, name: str) -> ConverseFeatures:
        # Mistral Large and Small (24.02) call tools; Mistral 7B and Mixtral 8x7B do not.
        return ConverseFeatures(tools=name.startswith(("mistral-large", "mistral-small")))


class DeepSeekCodec(ChoicesTextCodec):
    """DeepSeek-R1: text completion; the reasoning is part of the text, as the model writes it."""

    label = "DeepSeek-R1"
    stop_field = "choices[].stop_reason"
    end_marker = "a chunk with stop_reason"
    list_field = "choices"
    converse = ConverseFeatures(reasoning="always")  # no tool use; reasons unasked
