"""Whole answers as dataclasses: `ChatResult` from a unary call or accumulated from a stream.

The protobuf answer stays reachable as `.raw` (None for a result built from stream events).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from provider_gateway_client.events import (
    Event,
    Finished,
    RawContent,
    Reasoning,
    Text,
    ToolCallArguments,
    ToolCallFinished,
    ToolCallStarted,
    UsageReport,
    finished,
    raw_content,
    usage_report,
)
from provider_gateway_client.v1 import provider_service_pb2 as pb


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call the model made. `incomplete`: the arguments were cut (max_tokens) or are not valid
    JSON; `arguments` is then `{}` and `arguments_json` holds what arrived: do not run the tool."""

    id: str
    name: str
    arguments: dict[str, Any]
    arguments_json: str = ""
    incomplete: bool = False

    @classmethod
    def parse(cls, id: str, name: str, arguments_json: str, incomplete: bool = False) -> ToolCall:
        try:
            arguments = json.loads(arguments_json) if arguments_json and not incomplete else {}
        except ValueError:
            arguments, incomplete = {}, True
        if not isinstance(arguments, dict):
            arguments, incomplete = {}, True
        return cls(id, name, arguments, arguments_json, incomplete)

    def to_pb(self) -> pb.ToolCall:
        return pb.ToolCall(id=self.id, name=self.name, arguments_json=self.arguments_json)


@dataclass(frozen=True, slots=True)
class ChatResult:
    """A whole answer (also what `complete` returns, with no reasoning or tool calls)."""

    text: str
    reasoning: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    usage: UsageReport | None = None
    finish: Finished | None = None
    reasoning_parts: tuple[pb.Reasoning, ...] = ()
    logprobs: tuple[pb.TokenLogprob, ...] = ()  # of the text's tokens, when the request asked
    raw_content: tuple[RawContent, ...] = ()  # what the provider sent that has no field of its own
    raw: pb.ChatResponse | pb.CompleteResponse | None = field(default=None, compare=False, repr=False)

    def message(self) -> pb.Message:
        """This answer as the assistant turn of the next request: reasoning blocks (which some
        providers need back), text, then tool calls."""
        parts = [pb.ContentPart(reasoning=r) for r in self.reasoning_parts]
        if self.text:
            parts.append(pb.ContentPart(text=self.text))
        parts.extend(pb.ContentPart(tool_call=c.to_pb()) for c in self.tool_calls)
        return pb.Message(role=pb.ROLE_ASSISTANT, content=parts)


def tool_result(call: ToolCall, content: str, *, is_error: bool = False) -> pb.Message:
    """The tool turn answering `call`: `conversation.append(tool_result(call, json.dumps(out)))`."""
    result = pb.ToolResult(tool_call_id=call.id, name=call.name, content=content, is_error=is_error)
    return pb.Message(role=pb.ROLE_TOOL, content=[pb.ContentPart(tool_result=result)])


def chat_result(response: pb.ChatResponse | pb.CompleteResponse) -> ChatResult:
    usage = usage_report(response.usage) if response.HasField("usage") else None
    finish = finished(response.finish) if response.HasField("finish") else None
    if isinstance(response, pb.CompleteResponse):
        return ChatResult(
            response.text, usage=usage, finish=finish, logprobs=tuple(response.logprobs), raw=response
        )
    calls = tuple(ToolCall.parse(c.id, c.name, c.arguments_json, c.incomplete) for c in response.tool_calls)
    return ChatResult(
        response.text,
        response.reasoning,
        calls,
        usage,
        finish,
        tuple(response.reasoning_parts),
        tuple(response.logprobs),
        tuple(raw_content(c) for c in response.raw_content),
        raw=response,
    )


class Accumulator:
    """Builds the ChatResult of a stream event by event (what `stream.final()` returns)."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.logprobs: list[pb.TokenLogprob] = []
        self.reasoning: list[str] = []
        self.block: list[str] = []  # reasoning text since the last block-closing delta
        self.parts: list[pb.Reasoning] = []
        self.arguments: dict[int, list[str]] = {}
        self.calls: dict[int, ToolCall] = {}
        self.usage: UsageReport | None = None
        self.raw_content: list[RawContent] = []
        self.finish: Finished | None = None

    def add(self, event: Event) -> None:
        match event:
            case Text(text=text, logprobs=logprobs):
                self.text.append(text)
                self.logprobs.extend(logprobs)
            case Reasoning(text=text):
                self.reasoning.append(text)
                self.block.append(text)
                if event.closes_block:  # as the gateway folds a unary answer's reasoning_parts
                    block = "".join(self.block)
                    self.parts.append(
                        pb.Reasoning(
                            text=block,
                            signature=event.signature,
                            redacted=event.redacted,
                            id=event.id,
                            issuer=event.issuer,
                        )
                    )
                    self.block = []
            case ToolCallStarted(index=index):
                self.arguments[index] = []
            case ToolCallArguments(index=index, delta=delta):
                self.arguments.setdefault(index, []).append(delta)
            case ToolCallFinished(index=index, id=id, name=name, arguments_json=whole, incomplete=cut):
                # The end carries the whole arguments; the joined deltas are the fallback.
                joined = whole or "".join(self.arguments.get(index, ()))
                self.calls[index] = ToolCall.parse(id, name, joined, cut)
            case UsageReport():
                self.usage = event  # the last report counts
            case RawContent():
                self.raw_content.append(event)
            case Finished():
                self.finish = event

    def result(self) -> ChatResult:
        parts = list(self.parts)
        if self.block and "".join(self.block):
            parts.append(pb.Reasoning(text="".join(self.block)))
        return ChatResult(
            "".join(self.text),
            "".join(self.reasoning),
            tuple(self.calls[i] for i in sorted(self.calls)),
            self.usage,
            self.finish,
            tuple(parts),
            tuple(self.logprobs),
            tuple(self.raw_content),
        )
