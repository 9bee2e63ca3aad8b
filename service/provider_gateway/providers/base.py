"""The provider protocol (the seed's `AiProvider` trait) and what most adapters share.

An adapter implements `chat_stream` and `complete_stream`; `BaseProvider` derives the unary calls
by accumulating the stream, so every provider answers both ways with the same content. Where the
vendor has a non-streaming endpoint, the adapter overrides `chat` to call it once, and its codec
reads the whole body into the stream's events and folds them (`fold`), so that both paths share
one normalisation (the OpenAI family's `ChatStreamParser.response` decodes its common body directly,
by the same steps, and folds every other one).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Coroutine, Iterable
from typing import Any, Protocol, runtime_checkable

from provider_gateway.domain import (
    Capabilities,
    ChatRequest,
    ChatResponse,
    CompletionRequest,
    CompletionResponse,
    CountTokensRequest,
    EmbedRequest,
    EmbedResult,
    HealthStatus,
    Message,
    ModelInfo,
    ProviderFinish,
    RawContent,
    ReasoningDelta,
    ReasoningPart,
    StreamEvent,
    TextDelta,
    TextDeltaWithLogprobs,
    TokenCount,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallPart,
    ToolCallStart,
    ToolResultPart,
    UsageEvent,
)
from provider_gateway.errors import unimplemented
from provider_gateway.providers.open_calls import OpenCalls


@runtime_checkable
class Provider(Protocol):
    """Everything the router needs from a provider adapter."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...

    def capabilities(self) -> Capabilities: ...

    async def health_check(self) -> HealthStatus: ...

    async def chat(self, request: ChatRequest) -> ChatResponse: ...

    def chat_stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]: ...

    async def complete(self, request: CompletionRequest) -> CompletionResponse: ...

    def complete_stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]: ...

    async def list_models(self) -> list[ModelInfo]: ...

    async def count_tokens(self, request: CountTokensRequest) -> TokenCount: ...

    async def embed(self, request: EmbedRequest) -> EmbedResult: ...

    async def aclose(self) -> None: ...


class ResponseBuilder:
    """Folds events into a whole response: what `accumulate` does for streams, and what a codec
    does with the events of a unary body (one vocabulary, one normalisation for both)."""

    __slots__ = ("_calls", "_reasoning", "_text", "response")

    def __init__(self) -> None:
        self.response = ChatResponse()
        self._text: list[str] = []
        self._reasoning: list[str] = []  # the open block's text
        self._calls = OpenCalls()  # a call started and never ended is kept, marked incomplete

    def add(self, event: StreamEvent) -> None:
        if type(event) is TextDelta:  # most events: one type test settles them (no tool-call event)
            self._text.append(event.text)
            return
        response = self.response
        if type(event) is TextDeltaWithLogprobs:
            self._text.append(event.text)
            response.logprobs.extend(event.logprobs)
            return
        event = self._calls.see(event)
        if isinstance(event, ReasoningDelta):
            self._reasoning.append(event.text)
            if event.closes_block:
                self._close_block(event)
        elif isinstance(event, ToolCallEnd):
            response.tool_calls.append(event.call)
        elif isinstance(event, RawContent):
            response.raw_content.append(event)
        elif isinstance(event, UsageEvent):
            response.usage = event.usage
        elif isinstance(event, ProviderFinish):
            response.finish = event

    def _close_block(self, event: ReasoningDelta) -> None:
        text, self._reasoning = "".join(self._reasoning), []
        part = ReasoningPart(text, event.signature, redacted=event.redacted, id=event.id)
        self.response.reasoning_parts.append(part)
        if event.signature and not event.redacted:
            self.response.reasoning_signature = event.signature

    def build(self) -> ChatResponse:
        response = self.response
        response.tool_calls.extend(end.call for end in self._calls.close())
        if any(self._reasoning):  # a last block without state (DeepSeek, <think> tags)
            response.reasoning_parts.append(ReasoningPart("".join(self._reasoning)))
            self._reasoning = []
        response.text = "".join(self._text)
        response.reasoning = "".join(p.text for p in response.reasoning_parts)
        return response


def fold(events: Iterable[StreamEvent]) -> ChatResponse:
    builder = ResponseBuilder()
    for event in events:
        builder.add(event)
    return builder.build()


def completion_of(response: ChatResponse) -> CompletionResponse:
    return CompletionResponse(text=response.text, usage=response.usage, finish=response.finish)


async def accumulate(events: AsyncIterator[StreamEvent]) -> ChatResponse:
    """Fold a provider's stream into a whole response (the unary call's answer)."""
    builder = ResponseBuilder()
    async for event in events:
        builder.add(event)
    return builder.build()


def replay(response: ChatResponse) -> list[StreamEvent]:
    """A whole response as the events that `accumulate` folds back into it."""
    events: list[StreamEvent] = []
    parts = response.reasoning_parts
    if not parts and (response.reasoning or response.reasoning_signature):  # built by hand
        parts = [ReasoningPart(response.reasoning, response.reasoning_signature)]
    events.extend(ReasoningDelta(p.text, p.signature, p.redacted, p.id) for p in parts)
    if response.logprobs:
        events.append(TextDeltaWithLogprobs(response.text, tuple(response.logprobs)))
    elif response.text:
        events.append(TextDelta(response.text))
    for index, call in enumerate(response.tool_calls):
        events.append(ToolCallStart(index, call.id, call.name))
        if call.arguments_json:
            events.append(ToolCallDelta(index, call.arguments_json))
        events.append(ToolCallEnd(index, call))
    events.extend(response.raw_content)
    events.append(UsageEvent(response.usage))
    if response.finish is not None:
        events.append(response.finish)
    return events


def has_content(response: ChatResponse) -> bool:
    """Whether `replay(response)` has a content event: a unary answer with one is its first token."""
    return bool(
        response.text
        or response.reasoning_parts
        or response.reasoning
        or response.reasoning_signature
        or response.tool_calls
        or response.raw_content
    )


def relayed_answer(response: ChatResponse) -> ChatResponse:
    """A unary answer as the router hands it on: what folding its `replay` gives (the stream's
    normalisation: a call whose arguments are not JSON marked incomplete, reasoning blocks without
    state joined). An answer without tool calls or reasoning (text, raw content: nearly every one)
    comes back from that round trip equal, so it is passed on as it is rather than replayed and
    folded on every call (tests/test_unary_attempt.py holds both ways to the same answer)."""
    if response.tool_calls or response.reasoning_parts or response.reasoning or response.reasoning_signature:
        return fold(replay(response))
    return response


async def all_or_first_error[T](calls: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
    """Run upstream calls concurrently; a failure cancels the others and is raised as itself (the
    GatewayError the router expects): the first call's, in order, of those that failed on their
    own (not of those that failed as they were cancelled).

    Tasks and asyncio.wait, not a TaskGroup: on the gateway's loop (tasks start eagerly) a call
    that fails before it first waits fails inside `create_task`, and a TaskGroup then cancels its
    own parent, the running handler, which Python 3.12's `uncancel` does not undo: the handler's
    next wait raised CancelledError, and the client got CANCELLED instead of the error."""
    tasks: list[asyncio.Future[T]] = []
    try:
        for call in calls:  # building the next call may raise: the started ones are cancelled
            tasks.append(asyncio.ensure_future(call))
        if tasks:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        ended = [task for task in tasks if task.done()]  # before any was cancelled
        try:
            await _cancelled_and_ended(task for task in tasks if not task.done())
        finally:
            for task in tasks:  # every failure read: asyncio logs one left unread
                _failure(task)
    # The first failure of a call that ended on its own, else of any (one raised while cancelled).
    first = next((failure for task in (*ended, *tasks) if (failure := _failure(task)) is not None), None)
    if first is not None:
        raise first
    return [task.result() for task in tasks]


def _failure(task: asyncio.Future[Any]) -> BaseException | None:
    return None if task.cancelled() else task.exception()


async def _cancelled_and_ended(tasks: Iterable[asyncio.Future[Any]]) -> None:
    """Cancel `tasks` and wait until every one has ended, even if this call is cancelled again
    meanwhile (then CancelledError is raised once they have): none outlives its caller."""
    running = list(tasks)
    for task in running:
        task.cancel()
    interrupted = False
    while running:
        try:
            await asyncio.wait(running)
        except asyncio.CancelledError:
            interrupted = True
        running = [task for task in running if not task.done()]
    if interrupted:
        raise asyncio.CancelledError


# A documented local estimate for providers without a count endpoint: about four characters of
# English per token (OpenAI's rule of thumb), at least one token per non-empty text.
CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN) if text else 0


def estimate_messages(messages: list[Message]) -> int:
    """Estimate a conversation: text and tool payloads, plus a few tokens of framing per message."""
    total = 0
    for message in messages:
        total += 4
        for part in message.content:
            if isinstance(part, ToolCallPart):
                total += estimate_tokens(part.call.name + part.call.arguments_json)
            elif isinstance(part, ToolResultPart):
                total += estimate_tokens(part.content)
            elif hasattr(part, "text"):
                total += estimate_tokens(part.text)
            else:
                total += 85  # an image: the low-detail tile cost most vendors document
    return total


# What an adapter declares by default, built once (the router's honour check asks on every call).
NO_CAPABILITIES = Capabilities()


class BaseProvider:
    """Defaults shared by adapters; subclasses override what their vendor offers."""

    kind = "base"

    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    def capabilities(self) -> Capabilities:
        return NO_CAPABILITIES

    async def health_check(self) -> HealthStatus:
        return HealthStatus(healthy=True)

    def chat_stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        raise unimplemented(self.name, "chat")

    def complete_stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        raise unimplemented(self.name, "completion")

    async def chat(self, request: ChatRequest) -> ChatResponse:
        return await accumulate(self.chat_stream(request))

    async def complete(self, request: CompletionRequest) -> CompletionResponse:
        return completion_of(await accumulate(self.complete_stream(request)))

    async def list_models(self) -> list[ModelInfo]:
        return []

    async def count_tokens(self, request: CountTokensRequest) -> TokenCount:
        count = estimate_messages(request.messages) if request.messages else estimate_tokens(request.text)
        return TokenCount(input_tokens=count, estimated=True, model=request.model)

    async def embed(self, request: EmbedRequest) -> EmbedResult:
        raise unimplemented(self.name, "embeddings")

    async def aclose(self) -> None:
        return None
