"""Cohere on Bedrock: Command (legacy `prompt` -> `generations`) and Command R / R+ (`message`
+ `chat_history` -> `text`, `finish_reason`, `tool_calls`). Both streams end with a chunk whose
`is_finished` is true (Command R's is the `stream-end` event, carrying the whole response).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from provider_gateway.domain import CompletionRequest, StreamEvent, TextDelta
from provider_gateway.providers.bedrock.common import items, obj, text
from provider_gateway.providers.bedrock.invoke.base import ConverseFeatures, FamilyCodec, put

BILLED = ("input_tokens", "output_tokens")


class CohereCommandCodec(FamilyCodec):
    label = "Cohere Command"
    stop_field = "generations[].finish_reason"
    end_marker = "a chunk with is_finished true"
    stream_flag = "stream"  # "Required to support streaming", as the Command page says

    def request(self, request: CompletionRequest, max_tokens: int) -> dict[str, Any]:
        body: dict[str, Any] = {"prompt": request.prompt, "max_tokens": max_tokens}
        put(body, temperature=request.temperature, p=request.top_p, stop_sequences=request.stop)
        return self.finish_body(body, request)

    def body(self, body: Mapping[str, Any]) -> list[StreamEvent]:
        generations = [obj(g) for g in items(body.get("generations"))]
        if not generations or not all("text" in g for g in generations):
            raise self.unreadable("no generations[].text")
        self.response_id = text(body.get("id"))
        events: list[StreamEvent] = []
        for generation in generations:
            if value := text(generation.get("text")):
                events.append(TextDelta(value))
            self.stop(generation.get("finish_reason"))
        return events

    def chunk(self, chunk: Mapping[str, Any]) -> list[StreamEvent]:
        if "generations" in chunk:
            return self.body(chunk)
        if "event_type" in chunk or ("text" not in chunk and "is_finished" not in chunk):
            raise self.unreadable("no text and no is_finished (an event_type is Command R's stream)")
        self.stop(chunk.get("finish_reason"))
        if chunk.get("is_finished") is True:
            self.finished = True
            self.stop_reason = self.stop_reason or "COMPLETE"  # legacy streams may omit the reason
            return []
        value = text(chunk.get("text"))
        return [TextDelta(value)] if value else []


class CohereChatCodec(FamilyCodec):
    label = "Cohere Command R"
    converse = ConverseFeatures(tools=True)
    stop_field = "finish_reason"
    end_marker = "the stream-end event"

    def __init__(self, model: str) -> None:
        super().__init__(model)
        self.tools_seen = False

    def request(self, request: CompletionRequest, max_tokens: int) -> dict[str, Any]:
        body: dict[str, Any] = {"message": request.prompt, "chat_history": [], "max_tokens": max_tokens}
        put(body, temperature=request.temperature, p=request.top_p, stop_sequences=request.stop)
        return self.finish_body(body, request)

    def body(self, body: Mapping[str, Any]) -> list[StreamEvent]:
        if "text" not in body or "finish_reason" not in body:
            raise self.unreadable("no text and finish_reason")
        self.response_id = text(body.get("generation_id")) or text(body.get("response_id"))
        self.stop(body.get("finish_reason"))
        self.take_usage(obj(obj(body.get("meta")).get("billed_units")), *BILLED)
        events: list[StreamEvent] = [TextDelta(value)] if (value := text(body.get("text"))) else []
        for position, call in enumerate(map(obj, items(body.get("tool_calls")))):
            # Cohere's v1 tool calls have no id: number them within the response.
            arguments = json.dumps(call.get("parameters", {}))
            events += self.tools.whole(
                f"{self.response_id or 'call'}-{position}", text(call.get("name")), arguments
            )
        return events

    def chunk(self, chunk: Mapping[str, Any]) -> list[StreamEvent]:
        kind = text(chunk.get("event_type"))
        if not kind:
            raise self.unreadable("a stream chunk without event_type")
        if kind == "stream-end" or chunk.get("is_finished") is True:
            self.finished = True
            self.stop(chunk.get("finish_reason"))
            response = obj(chunk.get("response"))
            self.take_usage(obj(obj(response.get("meta")).get("billed_units")), *BILLED)
            if not self.tools_seen:
                # Tool calls arrive whole in `tool-calls-generation`, or only in the final response.
                return self._tool_calls(response)
            return []
        if kind == "stream-start":
            self.response_id = text(chunk.get("generation_id"))
        elif kind == "text-generation":
            value = text(chunk.get("text"))
            return [TextDelta(value)] if value else []
        elif kind == "tool-calls-generation":
            return self._tool_calls(chunk)
        return []

    def _tool_calls(self, payload: Mapping[str, Any]) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        for position, call in enumerate(map(obj, items(payload.get("tool_calls")))):
            self.tools_seen = True
            arguments = json.dumps(call.get("parameters", {}))
            events += self.tools.whole(
                f"{self.response_id or 'call'}-{position}", text(call.get("name")), arguments
            )
        return events
