"""Amazon Nova on Bedrock: `messages-v1` bodies; the stream mirrors ConverseStream's events.

Its final message is `messageStop`; tool calls arrive as `toolUse` blocks, whole in a body and
as `contentBlockStart` + `contentBlockDelta` pieces in a stream.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from provider_gateway.domain import CompletionRequest, ReasoningDelta, StreamEvent, TextDelta
from provider_gateway.providers.bedrock.common import items, obj, text
from provider_gateway.providers.bedrock.invoke.base import ConverseFeatures, FamilyCodec, put

USAGE_NAMES = ("inputTokens", "outputTokens", "cacheReadInputTokenCount", "cacheWriteInputTokenCount")
EVENTS = (
    "messageStart",
    "contentBlockStart",
    "contentBlockDelta",
    "contentBlockStop",
    "messageStop",
    "metadata",
)


class NovaCodec(FamilyCodec):
    label = "Amazon Nova"
    stop_field = "stopReason"
    end_marker = "messageStop"

    @classmethod
    def features(cls, name: str) -> ConverseFeatures:
        # Every Nova calls tools; Micro reads no images; Nova 2 reasons with an effort.
        vision = not name.startswith("nova-micro")
        return ConverseFeatures(True, vision, "effort" if name.startswith("nova-2") else "")

    def request(self, request: CompletionRequest, max_tokens: int) -> dict[str, Any]:
        config: dict[str, Any] = {"maxTokens": max_tokens}
        put(config, temperature=request.temperature, topP=request.top_p, stopSequences=request.stop)
        body = {
            "schemaVersion": "messages-v1",
            "messages": [{"role": "user", "content": [{"text": request.prompt}]}],
            "inferenceConfig": config,
        }
        return self.finish_body(body, request)

    def body(self, body: Mapping[str, Any]) -> list[StreamEvent]:
        message = obj(obj(body.get("output")).get("message"))
        if not isinstance(message.get("content"), list):
            raise self.unreadable("no output.message.content")
        self.stop(body.get("stopReason"))
        self.take_usage(obj(body.get("usage")), *USAGE_NAMES)
        events: list[StreamEvent] = []
        for block in map(obj, items(message.get("content"))):
            if value := text(block.get("text")):
                events.append(TextDelta(value))
            elif "toolUse" in block:
                tool = obj(block["toolUse"])
                arguments = json.dumps(tool.get("input", {}))
                events += self.tools.whole(text(tool.get("toolUseId")), text(tool.get("name")), arguments)
            elif reasoning := obj(obj(block.get("reasoningContent")).get("reasoningText")):
                events.append(ReasoningDelta(text(reasoning.get("text")), text(reasoning.get("signature"))))
        return events

    def chunk(self, chunk: Mapping[str, Any]) -> list[StreamEvent]:
        if not any(name in chunk for name in EVENTS):
            raise self.unreadable("a stream chunk with none of Nova's events")
        if "contentBlockStart" in chunk:
            start = obj(chunk["contentBlockStart"])
            tool = obj(obj(start.get("start")).get("toolUse"))
            if tool:
                block = start.get("contentBlockIndex")
                return self.tools.start(block, text(tool.get("toolUseId")), text(tool.get("name")))
        elif "contentBlockDelta" in chunk:
            body = obj(chunk["contentBlockDelta"])
            return self._delta(body.get("contentBlockIndex"), obj(body.get("delta")))
        elif "contentBlockStop" in chunk:
            return self.tools.end(obj(chunk["contentBlockStop"]).get("contentBlockIndex"))
        elif "messageStop" in chunk:
            self.stop(obj(chunk["messageStop"]).get("stopReason"))
            self.finished = True
        elif "metadata" in chunk:
            self.take_usage(obj(obj(chunk["metadata"]).get("usage")), *USAGE_NAMES)
        return []

    def _delta(self, block: Any, delta: Mapping[str, Any]) -> list[StreamEvent]:
        if value := text(delta.get("text")):
            return [TextDelta(value)]
        if "toolUse" in delta:
            return self.tools.delta(block, text(obj(delta["toolUse"]).get("input")))
        reasoning = obj(delta.get("reasoningContent"))
        if value := text(reasoning.get("text")):
            return [ReasoningDelta(value)]
        return []
