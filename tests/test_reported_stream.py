"""With tracing off the router reports each streamed attempt to the instrumented provider instead of
reading it through the provider's own relaying generator (routing/attempt.py's `ReportedStream`).

Differential: the same streams, failures and cancels through a real server with tracing on (the
relaying generator, which sees every event itself) and off (the router tells it) leave the same
attempt metrics (outcome, tokens, time to first chunk), the same answer and the same error status.
"""

from __future__ import annotations

import asyncio
import dataclasses
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest
from conftest import RunningGateway
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from test_observability import user

from provider_gateway import config as config_module
from provider_gateway.domain import ChatRequest, Message, ProviderFinish, Role, TextPart, UsageEvent
from provider_gateway.observability import Telemetry, TelemetrySettings
from provider_gateway.observability.gauges import GaugeSources
from provider_gateway.observability.instrumented import InstrumentedProvider
from provider_gateway.observability.metrics import GatewayMetrics
from provider_gateway.providers.mock import MockProvider
from provider_gateway.routing.attempt import ReportedStream
from provider_gateway.server.app import GatewayServer
from provider_gateway.v1 import provider_service_pb2 as pb

SECRET = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"
CONFIG = f"""
[routing]
retries = 1
backoff_base_ms = 1
backoff_max_ms = 2

[providers.mock]
kind = "mock"
[providers.mock.models.ok]
tokens = 6
[providers.mock.models.tools]
tokens = 2
tool_calls = [{{ name = "get_weather", arguments = {{ city = "Paris" }} }}]
[providers.mock.models.reasoner]
tokens = 3
reasoning_tokens = 4
[providers.mock.models.leaky]
fault = "error_before_first_token"
fault_message = "upstream said: invalid key {SECRET}"
fault_status = "PERMISSION_DENIED"
[providers.mock.models.cut]
tokens = 8
fault = "error_after_tokens"
fault_after_tokens = 2
[providers.mock.models.limited]
fault = "rate_limit"
retry_after_ms = 1
[providers.mock.models.hang]
fault = "hang"
[providers.mock.models.slow]
tokens = 20
token_delay_ms = 50
"""

# The attempt's own metrics (the instrumented provider's), and the request's.
COUNTED = ("provider_gateway.attempts", "provider_gateway.tokens", "provider_gateway.requests")
HISTOGRAMS = (
    "gen_ai.client.operation.duration",
    "gen_ai.client.operation.time_to_first_chunk",
    "gen_ai.client.token.usage",
)


@asynccontextmanager
async def gateway(traces: bool) -> AsyncIterator[tuple[RunningGateway, InMemoryMetricReader]]:
    config = config_module.parse(tomllib.loads(CONFIG), "test.toml")
    reader = InMemoryMetricReader()
    telemetry = Telemetry(
        TelemetrySettings(traces=traces, metrics=True),
        span_processors=[SimpleSpanProcessor(InMemorySpanExporter())] if traces else [],
        metric_readers=[reader],
    )
    server = GatewayServer(config, telemetry)
    await server.start("127.0.0.1", 0)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield RunningGateway(server, channel), reader
    finally:
        await channel.close()
        await server.stop(0)


def attempt_metrics(reader: InMemoryMetricReader) -> dict[tuple[str, tuple[tuple[str, Any], ...]], Any]:
    """Counters' values and histograms' counts (token histograms' sums too), by name and labels."""
    seen: dict[tuple[str, tuple[tuple[str, Any], ...]], Any] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points:  # type: ignore[attr-defined]
                    key = (metric.name, tuple(sorted(point.attributes.items())))
                    if metric.name in COUNTED:
                        seen[key] = point.value
                    elif metric.name == "gen_ai.client.token.usage":
                        seen[key] = (point.count, point.sum)
                    elif metric.name in HISTOGRAMS:
                        seen[key] = point.count
    return seen


async def stream(gw: RunningGateway, model: str, deadline_s: float | None = None) -> tuple[str, str, str]:
    """What the client saw: the text, the tool calls' names, and the status with its message."""
    text, tools = "", ""
    call = gw.stub.ChatStream(
        pb.ChatRequest(model=model, messages=[user("say something")]), timeout=deadline_s
    )
    try:
        async for event in call:
            text += event.text_delta.text
            tools += event.tool_call_start.name
    except grpc.aio.AioRpcError as exc:
        if exc.code() is grpc.StatusCode.DEADLINE_EXCEEDED:  # the client's or the server's: a race
            return text, tools, exc.code().name
        return text, tools, f"{exc.code().name}: {exc.details()}"
    return text, tools, "OK"


async def cancelled_mid_stream(gw: RunningGateway) -> tuple[str, str, str]:
    call = gw.stub.ChatStream(pb.ChatRequest(model="mock/slow", messages=[user("hi")]))
    await call.read()  # the first token has arrived: the upstream is mid-stream
    call.cancel()
    await asyncio.wait_for(gw.provider("mock").stats.cancelled_event.wait(), timeout=10)
    return "", "", "CANCELLED"


async def settled(reader: InMemoryMetricReader, attempts: int) -> None:
    """Wait (bounded) until the server has ended `attempts` attempts and the request (a cancel, or
    a deadline the client saw first, unwinds after the client has gone)."""
    async with asyncio.timeout(10):
        while True:
            counted = attempt_metrics(reader).items()
            ended = sum(v for (name, _), v in counted if name == "provider_gateway.attempts")
            if ended >= attempts and any(name == "provider_gateway.requests" for (name, _), _ in counted):
                return
            await asyncio.sleep(0.01)


SCENARIOS: dict[str, tuple[Callable[[RunningGateway], Awaitable[tuple[str, str, str]]], int]] = {
    "answered": (lambda gw: stream(gw, "mock/ok"), 1),
    "tool calls": (lambda gw: stream(gw, "mock/tools"), 1),
    "reasoning first": (lambda gw: stream(gw, "mock/reasoner"), 1),
    "a secret in the upstream's error": (lambda gw: stream(gw, "mock/leaky"), 1),
    "cut after content": (lambda gw: stream(gw, "mock/cut"), 1),
    "rate limited, retried": (lambda gw: stream(gw, "mock/limited"), 2),
    "the deadline passes": (lambda gw: stream(gw, "mock/hang", deadline_s=0.3), 1),
    "an unknown model (the adapter refuses before streaming)": (lambda gw: stream(gw, "mock/absent"), 1),
    "the client cancels": (cancelled_mid_stream, 1),
}


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_reported_attempts_match_the_relaying_generator(scenario: str) -> None:
    run, attempts = SCENARIOS[scenario]
    outcomes = []
    for traces in (True, False):
        async with gateway(traces) as (gw, reader):
            seen = await run(gw)
            await settled(reader, attempts)
            outcomes.append((seen, attempt_metrics(reader)))
    (traced, traced_metrics), (reported, reported_metrics) = outcomes
    assert reported == traced
    assert reported_metrics == traced_metrics
    assert SECRET not in reported[2]
    assert any(name == "provider_gateway.attempts" for name, _ in reported_metrics)


async def test_read_by_any_other_reader_it_relays_and_sees_for_itself() -> None:
    """A stream nobody reports on (not the router) is the relaying generator: the same events, and
    the attempt still counted with its usage."""
    reader = InMemoryMetricReader()
    metrics = GatewayMetrics("test", [reader], GaugeSources())
    mock = MockProvider("mock")
    wrapped = InstrumentedProvider(mock, None, metrics)
    request = ChatRequest(model="echo", messages=[Message(Role.USER, (TextPart("a b c"),))])
    stream = wrapped.chat_stream(request)
    assert isinstance(stream, ReportedStream)
    events = [event async for event in stream]
    direct = [event async for event in mock.chat_stream(request)]
    assert [e for e in events if not isinstance(e, ProviderFinish)] == direct[:-1]
    assert events[-1] == dataclasses.replace(direct[-1], response_id=events[-1].response_id)
    usage = next(e.usage for e in events if isinstance(e, UsageEvent))
    # Read one event at a time and closed early: the attempt ends cancelled, the mock's call too.
    stopped = wrapped.chat_stream(request)
    assert await anext(stopped) == events[0]
    await stopped.aclose()  # type: ignore[attr-defined]
    assert mock.stats.cancelled == 1
    counted = attempt_metrics(reader)
    assert (
        counted[
            ("provider_gateway.attempts", (("model", "echo"), ("outcome", "CANCELLED"), ("provider", "mock")))
        ]
        == 1
    )
    assert (
        counted[("provider_gateway.attempts", (("model", "echo"), ("outcome", "ok"), ("provider", "mock")))]
        == 1
    )
    assert counted[
        ("provider_gateway.tokens", (("direction", "output"), ("model", "echo"), ("provider", "mock")))
    ] == (usage.output_tokens)
