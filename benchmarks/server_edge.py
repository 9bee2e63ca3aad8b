"""The server edge's own CPU per call: request checks, protobuf conversion, the interceptor chain,
the servicer, the coalescing relay, the access-log line and the request metrics (issue 15).

    .venv/bin/python benchmarks/server_edge.py
    git archive REV service | tar -x -C OTHER && PYTHONPATH=OTHER/service .venv/bin/python benchmarks/server_edge.py

Process CPU (`time.process_time`, so a busy machine's other processes count less), best of 7 rounds.
The chain runs the server's interceptors as grpc.aio does (`_run_interceptor`, re-implemented: the
Cython original is not importable) around a servicer that answers at once, with default telemetry
(request log on, its logger below INFO as in benchmarks/run.py). The request is benchmarks/run.py's.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import io
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from unittest import mock

import grpc

from provider_gateway import config
from provider_gateway import domain as d
from provider_gateway.observability import logs
from provider_gateway.observability.interceptor import RequestInterceptor
from provider_gateway.observability.request import RequestState
from provider_gateway.server import convert, validate
from provider_gateway.server.app import GatewayServer
from provider_gateway.server.last_message import mark_last
from provider_gateway.v1 import provider_service_pb2 as pb

ROUNDS = 7
SERVICE = "/provider_gateway.v1.ProviderService/"
REQUEST = pb.ChatRequest(
    model="gpt-4o-mini",
    messages=[pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text="Say hello in five words.")])],
)
COST = d.Cost(123, True, "provider")
FINISH = d.Finish(
    d.FinishReason.STOP,
    "stop",
    "openai",
    "gpt-4o-mini",
    d.Timing(300, 0, 1500, 1200),
    (d.Attempt("openai", "gpt-4o-mini", "ok", "", 1200, COST),),
    "chatcmpl-1",
    COST,
)
RESPONSE = d.ChatResponse(
    text="hello", usage=d.Usage(10, 1, raw={"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11})
)
# OpenAI's usage object as the API returns it, details included: the `raw` Struct of every answer.
OPENAI_USAGE = {
    "prompt_tokens": 10,
    "completion_tokens": 1,
    "total_tokens": 11,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 0,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}
FULL_USAGE_RESPONSE = d.ChatResponse(text="hello", usage=d.Usage(10, 1, raw=OPENAI_USAGE))


def per_call_us(call: Callable[[], Any], number: int = 20000) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.process_time()
        for _ in range(number):
            call()
        best = min(best, time.process_time() - started)
    return best / number * 1e6


async def per_async_call_us(call: Callable[[], Awaitable[None]], number: int = 5000) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.process_time()
        for _ in range(number):
            await call()
        best = min(best, time.process_time() - started)
    return best / number * 1e6


class _Details:
    def __init__(self, method: str, metadata: tuple[tuple[str, str], ...]) -> None:
        self.method = method
        self.invocation_metadata = metadata


class _Context:
    """What the wrappers ask of a grpc.aio ServicerContext on a call that succeeds."""

    metadata = (("user-agent", "grpc-python-asyncio/1.85.1 grpc-c/58.0.0 (linux; chttp2)"),)

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return tuple(self.metadata)  # grpc.aio builds a new tuple per call too

    def time_remaining(self) -> float:
        return 30.0

    def code(self) -> None:
        return None

    async def write(self, message: Any) -> None:
        """A stream's message (the edge writes each itself since issue 15's one frame)."""


async def _run_interceptor(interceptors: Any, query: Callable[[Any], Any], details: Any) -> Any:
    interceptor = next(interceptors, None)
    if interceptor:
        return await interceptor.intercept_service(
            functools.partial(_run_interceptor, interceptors, query), details
        )
    return query(details)


def _served() -> tuple[GatewayServer, tuple[Any, ...]]:
    """A server (mock provider, default telemetry) and the interceptors it hands grpc.aio."""
    given: dict[str, Any] = {}
    make_server = grpc.aio.server

    def capture(*args: Any, **kwargs: Any) -> Any:
        given.update(kwargs)
        return make_server(*args, **kwargs)

    with mock.patch.object(grpc.aio, "server", capture):
        server = GatewayServer(config.mock_only())
    return server, tuple(given["interceptors"])


async def chain_us() -> dict[str, float]:
    answer = pb.ChatResponse(text="hi")

    async def chat(request: Any, context: Any) -> pb.ChatResponse:
        return answer

    async def chat_stream(request: Any, context: Any) -> AsyncIterator[pb.ChatResponse]:
        for i in range(3):
            if i == 2:  # as the servicer does when the upstream's end is in hand
                mark_last(answer)
            yield answer

    serialize = pb.ChatResponse.SerializeToString
    handlers = {
        f"{SERVICE}Chat": grpc.unary_unary_rpc_method_handler(chat, response_serializer=serialize),
        # Since the last message goes with the status (2026-12-07) the edge serializes each
        # message itself, which the stub's write never did before: the figure includes 3 now.
        f"{SERVICE}ChatStream": grpc.unary_stream_rpc_method_handler(
            chat_stream, response_serializer=serialize
        ),
    }
    _, interceptors = _served()
    context = _Context()

    def lookup(details: Any) -> Any:
        return handlers[details.method]

    async def unary() -> None:
        details = _Details(f"{SERVICE}Chat", context.invocation_metadata())
        handler = await _run_interceptor(iter(interceptors), lookup, details)
        await handler.unary_unary(REQUEST, context)

    async def stream() -> None:
        details = _Details(f"{SERVICE}ChatStream", context.invocation_metadata())
        handler = await _run_interceptor(iter(interceptors), lookup, details)
        if handler.unary_unary is not None:  # served as a unary response (server/last_message.py)
            await handler.unary_unary(REQUEST, context)
        elif inspect.iscoroutinefunction(handler.unary_stream):  # it writes each message itself
            await handler.unary_stream(REQUEST, context)
        else:  # a revision whose edge is an async generator gRPC iterates
            async for _ in handler.unary_stream(REQUEST, context):
                pass

    return {
        "interceptor chain, unary Chat": await per_async_call_us(unary),
        "interceptor chain, ChatStream of 3 messages": await per_async_call_us(stream),
    }


class _AnsweringRouter:
    """A router that answers at once: what is left of a call is the server edge's own work."""

    async def chat(self, request: d.ChatRequest, clock: Any) -> tuple[d.ChatResponse, d.Finish]:
        return RESPONSE, FINISH


async def servicer_us() -> float:
    """A unary Chat through the server's chain and the real servicer (checks, conversion both ways,
    the deadline, the consumption watch), the router answering at once."""
    server, interceptors = _served()
    server.service.router = _AnsweringRouter()  # type: ignore[assignment]
    chat = grpc.unary_unary_rpc_method_handler(
        server.service.Chat, response_serializer=pb.ChatResponse.SerializeToString
    )
    context = _Context()

    async def unary() -> None:
        details = _Details(f"{SERVICE}Chat", context.invocation_metadata())
        handler = await _run_interceptor(iter(interceptors), lambda _: chat, details)
        handler.response_serializer(await handler.unary_unary(REQUEST, context))

    return await per_async_call_us(unary)


async def relay_us() -> dict[str, float]:
    """A stream of 6 events, each after a turn of the event loop (an upstream read), relayed one
    message per event and through the coalescing relay (server/coalesce.py) at light load."""
    from provider_gateway.server.coalesce import OneByOne, coalesced
    from provider_gateway.server.coalesce import relayed as writer_loop

    def as_they_come(events: AsyncIterator[d.GatewayEvent]) -> Any:  # [server] coalesce_deltas = false
        return writer_loop(OneByOne(events))  # type: ignore[arg-type]

    async def upstream() -> AsyncIterator[d.GatewayEvent]:
        for _ in range(6):
            await asyncio.sleep(0)
            yield d.TextDelta("tok ")

    async def relayed(relay: Callable[[Any], Any]) -> None:
        async for _ in relay(upstream()):
            pass

    plain = await per_async_call_us(lambda: relayed(as_they_come), 2000)
    merged = await per_async_call_us(lambda: relayed(coalesced), 2000)
    return {
        "6 events relayed as they come": plain,
        "6 events through the coalescing relay": merged,
    }


def access_log_us() -> float:
    """The access logger with the handler `logs.configure` installs (JSON, redacting filter)."""
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(logs.JsonFormatter())
    handler.addFilter(logs.RedactingFilter())
    access = logging.getLogger(logs.ACCESS_LOGGER)
    saved = (access.level, access.propagate)
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False
    state = RequestState(rpc="Chat", request_id="", provider="openai", model="gpt-4o-mini", attempts=1)
    try:
        return per_call_us(lambda: logs.log_request(state, "OK", 0.0021), number=5000)
    finally:
        access.removeHandler(handler)
        access.level, access.propagate = saved


def request_metrics_us() -> float:
    """What the request interceptor records at the end of a unary Chat with metrics on."""
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from provider_gateway.observability.gauges import GaugeSources
    from provider_gateway.observability.metrics import GatewayMetrics

    metrics = GatewayMetrics("bench", [InMemoryMetricReader()], GaugeSources())
    with_metrics, without = RequestInterceptor(None, metrics, False), RequestInterceptor(None, None, False)
    last = convert.chat_response_to_proto(RESPONSE, FINISH)

    def end(interceptor: RequestInterceptor) -> None:
        state = RequestState(rpc="Chat", request_id="", model="gpt-4o-mini", attempts=1)
        interceptor._end(state, None, None, "OK", time.perf_counter_ns(), last)

    try:
        return per_call_us(lambda: end(with_metrics), 5000) - per_call_us(lambda: end(without), 5000)
    finally:
        metrics.shutdown()


def main() -> None:
    figures = {
        "validate.chat": per_call_us(lambda: validate.chat(REQUEST)),
        "convert.chat_request_from_proto": per_call_us(lambda: convert.chat_request_from_proto(REQUEST)),
        "convert.chat_response_to_proto": per_call_us(
            lambda: convert.chat_response_to_proto(RESPONSE, FINISH)
        ),
        "convert.chat_response_to_proto, OpenAI's usage": per_call_us(
            lambda: convert.chat_response_to_proto(FULL_USAGE_RESPONSE, FINISH)
        ),
        "a stream's Finish event to proto": per_call_us(lambda: convert.event_to_proto(FINISH)),
        "a stream's usage event to proto": per_call_us(
            lambda: convert.event_to_proto(d.UsageEvent(RESPONSE.usage))
        ),
        **asyncio.run(chain_us()),
        "unary Chat through chain and servicer": asyncio.run(servicer_us()),
        **asyncio.run(relay_us()),
        "access-log line at INFO (JSON)": access_log_us(),
        "request metrics, metrics on": request_metrics_us(),
    }
    for name, us in figures.items():
        print(f"{name:50} {us:7.1f} us")


if __name__ == "__main__":
    main()
