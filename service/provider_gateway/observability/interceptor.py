"""Per ProviderService RPC, a server span, request metrics and a log line: begin/end hooks that the
server's edge (server/edge.py) runs in its one frame per call, made once per method.

Our own hooks rather than opentelemetry-instrumentation-grpc: they touch only the ProviderService
(the health service's `Watch` uses `context.write`, which that instrumentation cannot wrap), the
edge closes streaming handlers promptly on cancel, and they cost nothing per streamed message (the
edge keeps the last one, for its Finish). The caller's W3C `traceparent` metadata becomes the
parent of the server span.
"""

from __future__ import annotations

import asyncio
import re
import time
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any

import grpc

from provider_gateway.observability.logs import log_request, redact
from provider_gateway.observability.request import CURRENT, UNTRUSTED_OUTCOMES, RequestState
from provider_gateway.routing.consumption import WATCHERS

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

    from provider_gateway.observability.metrics import GatewayMetrics

SERVICE_PREFIX = "/provider_gateway.v1.ProviderService/"
NO_KEY = "_none"  # the cost metric's key label when the gateway has no API keys configured
TAG_ATTRIBUTE = "provider_gateway.request.metadata."  # one span attribute per request tag
REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,64}")
# The longest model name the telemetry copies: validation's bound (server/bounds.py, MAX_NAME_CHARS).
# The span begins before any check, so a refused call (no key, a bad request) could otherwise put
# megabytes into one attribute, and an OTLP batch over the collector's limit loses all its spans.
MAX_MODEL_CHARS = 256
Context = grpc.aio.ServicerContext[Any, Any]
# What `MethodTelemetry.begin` hands `end`: started (ns), context, state, span, its context token,
# the CURRENT token, the consumption watchers' token.
type _Begun = tuple[int, Context, RequestState, Any, Any, Token[Any], Token[Any]]


def _requested_model(request: Any) -> str:
    """The request's model as the client wrote it, cut to a name's length (marked as cut)."""
    model: str = getattr(request, "model", "")
    if len(model) <= MAX_MODEL_CHARS:
        return model
    return f"{model[:MAX_MODEL_CHARS]}...(cut: {len(model)} characters)"


def _callers_request_id(metadata: Any) -> str:
    """The caller's `x-request-id` when it is a sane token, else "" (one is made when first needed)."""
    for key, value in metadata or ():
        if key == "x-request-id" and isinstance(value, str) and REQUEST_ID.fullmatch(value):
            return value
    return ""


# A client cancels its call the moment its deadline passes, and the server's copy of that deadline
# (arrival + grpc-timeout) passes about then too: the request's and the cancel's trips take about as
# long, so which comes first is a race, lost by however long the request waited to be read. A cancel
# this close to the deadline is the deadline's (else about half of all deadlines were "CANCELLED").
DEADLINE_SLACK_S = 0.05


def _status(context: Context, exc: BaseException | None) -> str:
    if exc is None:
        return "OK"
    if isinstance(exc, asyncio.CancelledError):  # the caller went away, or its deadline passed
        remaining = context.time_remaining()
        return "DEADLINE_EXCEEDED" if remaining is not None and remaining <= DEADLINE_SLACK_S else "CANCELLED"
    code = context.code()
    return code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"


def _reset(var: ContextVar[Any], token: Token[Any]) -> None:
    # A call ended from another context (closed by the GC) has nothing to undo. (try, not
    # contextlib.suppress: that is one more context manager per call.)
    try:  # noqa: SIM105
        var.reset(token)
    except ValueError:
        pass


class RequestInterceptor:
    """The telemetry's call hooks (server/edge.py asks once per method, and runs them outermost):
    what they need of a call, its metadata included, they read from the call's context."""

    def __init__(self, tracer: Tracer | None, metrics: GatewayMetrics | None, request_log: bool) -> None:
        self.tracer = tracer
        self.metrics = metrics
        self.request_log = request_log

    def hook(self, method: str, streaming: bool) -> MethodTelemetry | None:
        """The method's begin/end hooks (server/edge.py asks once per method): ProviderService only."""
        return MethodTelemetry(self, method, streaming) if method.startswith(SERVICE_PREFIX) else None

    def _span(self, method: str, metadata: Any, state: RequestState) -> tuple[Span, Any]:
        """The call's server span, child of the caller's `traceparent`, and its context token."""
        assert self.tracer is not None
        from opentelemetry import context as otel_context
        from opentelemetry import trace

        from provider_gateway.observability import tracing

        span = self.tracer.start_span(
            method.lstrip("/"),
            context=tracing.parent_context(metadata),
            kind=trace.SpanKind.SERVER,
            attributes={**tracing.server_attributes(method), "provider_gateway.request_id": state.id()},
        )
        state.trace_id = tracing.trace_id_hex(span)
        return span, otel_context.attach(trace.set_span_in_context(span))

    def _end(
        self, state: RequestState, span: Span | None, token: Any, status: str, started: int, last: Any
    ) -> None:
        duration = (time.perf_counter_ns() - started) / 1e9
        batch = getattr(last, "batch", None)
        if batch is not None and batch.events:  # events sent together: a finish is the last of them
            last = batch.events[-1]
        finish = getattr(last, "finish", None) if last is not None else None
        if finish is not None and not finish.provider:
            finish = None
        if finish is not None:
            state.provider, state.model = finish.provider, finish.model or state.model
            if finish.cost.known:
                state.cost_micros = finish.cost.amount_micros
        else:
            # A failed request: what its attempts consumed (the Finish would have summed them).
            state.cost_micros = state.unreported_cost()
            if state.attempts == 0 or status in ("INVALID_ARGUMENT", "NOT_FOUND"):
                state.model = "_invalid" if state.model else ""  # never a client-chosen label
        metrics = self.metrics
        if metrics is not None:
            model = metrics.model_label(state.model)
            labels = {"rpc": state.rpc, "provider": state.provider, "model": model, "status": status}
            metrics.requests.add(1, state.rpc, state.provider, model, status)
            metrics.duration.record(duration, labels)
            # OpenTelemetry's RPC semantic conventions, for dashboards built on them.
            metrics.rpc_duration.record(
                duration,
                {
                    "rpc.system": "grpc",
                    "rpc.service": SERVICE_PREFIX.strip("/"),
                    "rpc.method": state.rpc,
                    "rpc.grpc.status_code": _status_number(status),
                },
            )
            if state.cost_micros:
                key = state.key or NO_KEY  # configured names only: cardinality is the config's
                metrics.cost.add(state.cost_micros, state.provider, model, key)
            for consumed in state.unreported:  # attempts whose provider never reported it all
                trusted = status not in UNTRUSTED_OUTCOMES  # else the model is the client's text
                label = metrics.model_label(consumed.model) if trusted else "_invalid"
                metrics.tokens.add(consumed.usage.input_tokens, consumed.provider, label, "input")
                metrics.tokens.add(consumed.usage.output_tokens, consumed.provider, label, "output")
            if finish is not None:
                timing = finish.timing
                short = {"rpc": state.rpc, "provider": state.provider, "model": model}
                metrics.overhead.record(
                    timing.gateway_overhead_us / 1e6, {"rpc": state.rpc, "provider": state.provider}
                )
                if timing.time_to_first_token_us:
                    metrics.ttft.record(timing.time_to_first_token_us / 1e6, short)
        if span is not None:
            from opentelemetry import context
            from opentelemetry.trace import Status, StatusCode

            span.set_attribute("rpc.grpc.status_code", _status_number(status))
            span.set_attribute("provider_gateway.provider", state.provider)
            # The model named as the attempt spans name it (the id sent upstream); what the client
            # wrote (an alias, "provider/model") is kept apart.
            span.set_attribute("gen_ai.request.model", state.model or state.requested_model)
            span.set_attribute("provider_gateway.requested_model", state.requested_model)
            span.set_attribute("provider_gateway.attempts", state.attempts)
            span.set_attribute("provider_gateway.retries", state.retries)
            span.set_attribute("provider_gateway.failovers", state.failovers)
            if state.input_tokens or state.output_tokens:
                span.set_attribute("gen_ai.usage.input_tokens", state.input_tokens)
                span.set_attribute("gen_ai.usage.output_tokens", state.output_tokens)
            if state.cost_micros is not None:
                span.set_attribute("provider_gateway.cost_usd_micros", state.cost_micros)
            if finish is not None:
                timing = finish.timing
                span.set_attribute("gen_ai.response.model", finish.model)
                span.set_attribute("provider_gateway.gateway_overhead_us", timing.gateway_overhead_us)
                span.set_attribute("provider_gateway.time_to_first_token_us", timing.time_to_first_token_us)
                span.set_attribute("provider_gateway.upstream_us", timing.upstream_us)
                span.set_attribute("provider_gateway.total_us", timing.total_us)
            if state.tags:
                for key, value in state.tags.items():
                    span.set_attribute(f"{TAG_ATTRIBUTE}{key}", redact(value))
            if status != "OK":
                span.set_status(Status(StatusCode.ERROR, redact(status)))
            span.end()
            context.detach(token)
        if self.request_log:
            log_request(state, status, duration)


class MethodTelemetry:
    """One method's telemetry as begin/end hooks, for the server edge's frame (server/edge.py): the
    span and the request state from the start (an undecodable request is counted too), the
    `CURRENT` request and the consumption watch while the call runs, the open-stream gauge."""

    __slots__ = ("_method", "_owner", "_rpc", "_streams")

    def __init__(self, owner: RequestInterceptor, method: str, streaming: bool) -> None:
        self._owner = owner
        self._method = method
        self._rpc = method.rsplit("/", 1)[-1]
        self._streams = owner.metrics.active_streams if streaming and owner.metrics is not None else None

    def begin(self, request: Any, context: Context) -> _Begun:
        started = time.perf_counter_ns()
        owner = self._owner
        metadata = context.invocation_metadata()
        state = RequestState(rpc=self._rpc, request_id=_callers_request_id(metadata))
        state.requested_model = state.model = _requested_model(request)
        span, token = (None, None) if owner.tracer is None else owner._span(self._method, metadata, state)
        reset = CURRENT.set(state)
        if self._streams is not None:
            self._streams.add(1, self._rpc)
        # What `watching(state.add_estimate)` does, without its object and two calls per call.
        watchers = WATCHERS.set((*WATCHERS.get(), state.add_estimate))
        return started, context, state, span, token, reset, watchers

    def end(self, begun: _Begun, error: BaseException | None, last: Any) -> None:
        started, context, state, span, token, reset, watchers = begun
        _reset(WATCHERS, watchers)
        _reset(CURRENT, reset)
        if self._streams is not None:
            self._streams.add(-1, self._rpc)
        self._owner._end(state, span, token, _status(context, error), started, last)


STATUS_NUMBERS = {code.name: code.value[0] for code in grpc.StatusCode}


def _status_number(status: str) -> int:
    """`UNAVAILABLE` -> 14; UNKNOWN (2) for a name gRPC does not have."""
    return STATUS_NUMBERS.get(status, 2)
