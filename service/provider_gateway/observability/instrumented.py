"""`InstrumentedProvider`: the provider protocol around an adapter, with a span and metrics per attempt.

Each call the router makes is one upstream attempt: a CLIENT span named `{operation} {model}` with
the OpenTelemetry GenAI attributes, the attempt's number, outcome and breaker state, its time to
first chunk, and the GenAI client metrics. With tracing off a stream is handed out as a
`ReportedStream` (routing/attempt.py): the router reads the adapter's own stream and tells the
attempt its first content, usage, finish and end, so no generator of ours relays every event
(about 25k instructions a stream); any other reader gets that generator (`_stream`), which sees
for itself. Measured in benchmarks/tracing_overhead.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

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
    ModelInfo,
    ProviderFinish,
    StreamEvent,
    TextDelta,
    TokenCount,
    Usage,
    UsageEvent,
)
from provider_gateway.errors import GatewayError
from provider_gateway.observability.logs import redact
from provider_gateway.observability.request import CURRENT, UNTRUSTED_OUTCOMES, router_attempt
from provider_gateway.providers.base import Provider
from provider_gateway.routing.attempt import ReportedStream
from provider_gateway.wire.json_text import well_formed_text

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

    from provider_gateway.observability.metrics import GatewayMetrics

R = TypeVar("R")
Req = TypeVar("Req", ChatRequest, CompletionRequest)
Answer = TypeVar("Answer", ChatResponse, CompletionResponse)

# Our adapter kinds -> `gen_ai.provider.name` well-known values.
GENAI_PROVIDER = {
    "openai": "openai",
    "azure": "azure.ai.openai",
    "azure_openai": "azure.ai.openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "vertex": "gcp.vertex_ai",
    "bedrock": "aws.bedrock",
    "mistral": "mistral_ai",
    "cohere": "cohere",
    "deepseek": "deepseek",
    "groq": "groq",
    "xai": "x_ai",
    "perplexity": "perplexity",
}
_NON_CONTENT = (UsageEvent, ProviderFinish)


class Attempt:
    """One upstream attempt: its span (when tracing), timing and what the provider reported."""

    __slots__ = (
        "ended_ns",
        "finish",
        "first_ns",
        "metrics",
        "model",
        "op",
        "outcome",
        "owner",
        "span",
        "started_ns",
        "usage",
    )

    def __init__(self, owner: InstrumentedProvider, op: str, model: str, request: Any) -> None:
        self.owner, self.op, self.model = owner, op, model
        self.started_ns = time.perf_counter_ns()
        self.first_ns = 0
        self.ended_ns = 0  # when its reader saw the end, if it told (else: at `end`)
        self.usage: Usage | None = None
        self.finish: ProviderFinish | None = None
        self.outcome = "ok"
        self.span: Span | None = None
        state = CURRENT.get()
        retry = failover = False
        if state is not None:
            retry, failover = state.begin_attempt(owner.name)
            state.model = model
        metrics = self.metrics = owner.metrics
        if metrics is not None:
            if retry:
                metrics.retries.add(1, owner.name)
            if failover:
                metrics.failovers.add(1, owner.name)
        if owner.tracer is not None:
            # The router's facts about the attempt name the span only: not read without a tracer.
            facts = router_attempt(state.attempts if state is not None else 1)
            attributes: dict[str, Any] = {
                "gen_ai.operation.name": op,
                "gen_ai.provider.name": owner.genai_provider,
                "gen_ai.request.model": model,
                "provider_gateway.provider": owner.name,
                "provider_gateway.attempt.number": facts.number,
                "provider_gateway.attempt.retry": retry,
                "provider_gateway.attempt.failover": failover,
            }
            if facts.breaker_state:
                attributes["provider_gateway.breaker.state"] = facts.breaker_state
            if facts.deployment:
                attributes["provider_gateway.deployment"] = facts.deployment
            for name, key in (
                ("max_tokens", "max_tokens"),
                ("temperature", "temperature"),
                ("top_p", "top_p"),
            ):
                value = getattr(request, name, None)
                if value is not None:
                    attributes[f"gen_ai.request.{key}"] = value
            from opentelemetry.trace import SpanKind

            self.span = owner.tracer.start_span(f"{op} {model}", kind=SpanKind.CLIENT, attributes=attributes)

    def see(self, event: StreamEvent) -> None:
        """Note usage, the provider's finish and the first chunk; everything else passes untouched."""
        if isinstance(event, _NON_CONTENT):
            if isinstance(event, UsageEvent):
                self.usage = event.usage
            else:
                self.finish = event
        elif not self.first_ns:
            self.first_chunk(time.perf_counter_ns())

    # --- told by the stream's reader (routing/attempt.py's AttemptReport) ---

    def first_chunk(self, at_ns: int) -> None:
        self.first_ns = at_ns
        if self.span is not None:
            self.span.add_event("gen_ai.first_chunk")

    def ended(self) -> None:
        self.outcome = "ok"
        self.ended_ns = time.perf_counter_ns()

    def close(self, usage: Usage | None, finish: ProviderFinish | None) -> None:
        self.usage, self.finish = usage, finish
        self.end()

    def failed(self, exc: BaseException) -> None:
        # The attempt's time ends here, not after the router has judged the failure (which may wait
        # on Redis): the same duration whether the wrapper's generator saw it or the router told it.
        self.ended_ns = time.perf_counter_ns()
        if isinstance(exc, GatewayError):
            self.outcome = exc.kind.value
            # Last line of defence: an upstream that echoed a key into its error message.
            exc.message = redact(exc.message)
            exc.args = (exc.message,)
        elif isinstance(exc, asyncio.CancelledError | GeneratorExit):
            self.outcome = "CANCELLED"
        else:
            self.outcome = type(exc).__name__

    def end(self) -> None:
        now = self.ended_ns or time.perf_counter_ns()
        owner, outcome, usage, finish = self.owner, self.outcome, self.usage, self.finish
        state = CURRENT.get()
        model = self.model if outcome not in UNTRUSTED_OUTCOMES else "_invalid"
        response_model = (finish.model if finish is not None else "") or model
        if state is not None:
            state.outcome = outcome
            state.model = model
            state.response_model = response_model
            if usage is not None:
                state.input_tokens += usage.input_tokens
                state.output_tokens += usage.output_tokens
        metrics = self.metrics
        if metrics is not None:
            model = metrics.model_label(model)
            metrics.attempts.add(1, owner.name, model, outcome)
            genai = {
                "gen_ai.operation.name": self.op,
                "gen_ai.provider.name": owner.genai_provider,
                "gen_ai.request.model": model,
            }
            if outcome == "ok":
                genai["gen_ai.response.model"] = metrics.model_label(response_model)
            else:
                genai["error.type"] = outcome
            metrics.genai_duration.record((now - self.started_ns) / 1e9, genai)
            if self.first_ns:
                metrics.genai_ttfc.record((self.first_ns - self.started_ns) / 1e9, genai)
            if usage is not None:
                metrics.genai_tokens.record(usage.input_tokens, {**genai, "gen_ai.token.type": "input"})
                metrics.genai_tokens.record(usage.output_tokens, {**genai, "gen_ai.token.type": "output"})
                metrics.tokens.add(usage.input_tokens, owner.name, model, "input")
                metrics.tokens.add(usage.output_tokens, owner.name, model, "output")
        span = self.span
        if span is not None:
            span.set_attribute("provider_gateway.attempt.outcome", outcome)
            span.set_attribute("provider_gateway.attempt.latency_us", (now - self.started_ns) // 1000)
            if self.first_ns:
                span.set_attribute(
                    "provider_gateway.time_to_first_chunk_us", (self.first_ns - self.started_ns) // 1000
                )
            if usage is not None:
                span.set_attribute("gen_ai.usage.input_tokens", usage.input_tokens)
                span.set_attribute("gen_ai.usage.output_tokens", usage.output_tokens)
            if finish is not None:
                span.set_attribute(
                    "gen_ai.response.finish_reasons", [finish.raw_reason or finish.reason.value]
                )
                if finish.response_id:
                    span.set_attribute("gen_ai.response.id", well_formed_text(finish.response_id))
            if outcome == "ok":
                span.set_attribute("gen_ai.response.model", well_formed_text(response_model))
            else:
                from opentelemetry.trace import Status, StatusCode

                span.set_attribute("error.type", outcome)
                span.set_status(Status(StatusCode.ERROR, outcome))
            span.end()


class InstrumentedProvider:
    """Implements the provider protocol by delegating to `inner`, recording each call as an attempt."""

    def __init__(self, inner: Provider, tracer: Tracer | None, metrics: GatewayMetrics | None) -> None:
        self.inner = inner
        self.tracer = tracer
        self.metrics = metrics
        self.genai_provider = GENAI_PROVIDER.get(inner.kind, inner.kind)

    def __getattr__(self, name: str) -> Any:  # adapter-specific helpers stay reachable
        return getattr(self.inner, name)

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def kind(self) -> str:
        return self.inner.kind

    def capabilities(self) -> Capabilities:
        return self.inner.capabilities()

    async def health_check(self) -> HealthStatus:
        return await self.inner.health_check()

    def chat_stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        if self.tracer is None:
            return _Reported(self, "chat", request, self.inner.chat_stream)
        return self._stream("chat", request, self.inner.chat_stream)

    def complete_stream(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        if self.tracer is None:
            return _Reported(self, "text_completion", request, self.inner.complete_stream)
        return self._stream("text_completion", request, self.inner.complete_stream)

    # Plain functions handing back `_unary`'s coroutine: awaited alike, one coroutine fewer per call.
    def chat(self, request: ChatRequest) -> Coroutine[Any, Any, ChatResponse]:
        return self._unary("chat", request, self.inner.chat)

    def complete(self, request: CompletionRequest) -> Coroutine[Any, Any, CompletionResponse]:
        return self._unary("text_completion", request, self.inner.complete)

    async def embed(self, request: EmbedRequest) -> EmbedResult:
        attempt = Attempt(self, "embeddings", request.model, request)
        try:
            result = await self._in_span(attempt, self.inner.embed(request))
            attempt.usage = result.usage
            return result
        except BaseException as exc:
            attempt.failed(exc)
            raise
        finally:
            attempt.end()

    async def list_models(self) -> list[ModelInfo]:
        return await self.inner.list_models()

    async def count_tokens(self, request: CountTokensRequest) -> TokenCount:
        return await self.inner.count_tokens(request)

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def _in_span(self, attempt: Attempt, work: Awaitable[R]) -> R:
        if attempt.span is None:
            return await work
        from opentelemetry import context, trace

        token = context.attach(trace.set_span_in_context(attempt.span))
        try:
            return await work
        finally:
            context.detach(token)

    async def _unary(self, op: str, request: Req, call: Callable[[Req], Awaitable[Answer]]) -> Answer:
        attempt = Attempt(self, op, request.model, request)
        try:
            work = call(request)
            # No span (tracing off, the usual case): no coroutine between, one fewer per call.
            response = await (work if attempt.span is None else self._in_span(attempt, work))
            attempt.usage, attempt.finish = response.usage, response.finish
            return response
        except BaseException as exc:
            attempt.failed(exc)
            raise
        finally:
            attempt.end()

    async def _stream(
        self, op: str, request: Req, open_stream: Callable[[Req], AsyncIterator[StreamEvent]]
    ) -> AsyncGenerator[StreamEvent, None]:
        attempt = Attempt(self, op, request.model, request)
        stream: AsyncIterator[StreamEvent] | None = None
        try:
            span = attempt.span
            if span is None:
                stream = open_stream(request)
                async for event in stream:
                    if type(event) is not TextDelta or not attempt.first_ns:  # else nothing to note
                        attempt.see(event)
                    yield event
            else:
                # The attempt span is current only while the adapter runs, so that the headers of its
                # upstream request carry it (propagation.inject_trace_headers).
                from opentelemetry import context, trace

                current = trace.set_span_in_context(span)
                token = context.attach(current)
                try:
                    stream = open_stream(request)
                finally:
                    context.detach(token)
                while True:
                    token = context.attach(current)
                    try:
                        event = await anext(stream)
                    except StopAsyncIteration:
                        break
                    finally:
                        context.detach(token)
                    attempt.see(event)
                    yield event
        except BaseException as exc:
            attempt.failed(exc)
            raise
        finally:
            aclose = getattr(stream, "aclose", None)
            try:
                if aclose is not None:
                    await aclose()  # a cancelled request stops the upstream at once
            finally:
                attempt.end()


class _Reported[Req: (ChatRequest, CompletionRequest)](ReportedStream):
    """A stream with tracing off: the router opens it and tells its attempt what it read (see the
    module's docstring); iterated as is, it is `InstrumentedProvider._stream`."""

    __slots__ = ("op", "open_stream", "owner", "relay", "request")

    def __init__(
        self,
        owner: InstrumentedProvider,
        op: str,
        request: Req,
        open_stream: Callable[[Req], AsyncIterator[StreamEvent]],
    ) -> None:
        self.owner, self.op = owner, op
        self.request: Req = request
        self.open_stream: Callable[[Req], AsyncIterator[StreamEvent]] = open_stream
        self.relay: AsyncGenerator[StreamEvent, None] | None = None

    def open(self) -> tuple[AsyncIterator[StreamEvent], Attempt]:
        request = self.request
        attempt = Attempt(self.owner, self.op, request.model, request)
        attempt.outcome = "CANCELLED"  # until its reader says how it ended: stopping early is a cancel
        try:
            return self.open_stream(request), attempt
        except BaseException as exc:  # as the relay's first read would have raised it
            attempt.failed(exc)
            attempt.end()
            raise

    def __aiter__(self) -> AsyncGenerator[StreamEvent, None]:
        return self._relayed()  # `async for` reads the generator itself: no call of ours per event

    def __anext__(self) -> Awaitable[StreamEvent]:
        return self._relayed().__anext__()

    def _relayed(self) -> AsyncGenerator[StreamEvent, None]:
        if self.relay is None:
            self.relay = self.owner._stream(self.op, self.request, self.open_stream)
        return self.relay

    async def aclose(self) -> None:
        if self.relay is not None:
            await self.relay.aclose()
