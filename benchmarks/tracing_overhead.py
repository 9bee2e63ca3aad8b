"""Dispatch overhead of observability: telemetry off vs the default (request log) vs tracing + metrics on.

Two measurements, each interleaved over several rounds so that a busy machine hurts every mode alike:

1. End to end: a real server on loopback, a real channel, `ChatStream` of the mock's `echo` model
   (12 tokens, no delays): client-observed p50/p90 per request and the server's own
   `Finish.timing.gateway_overhead_us` median.
2. Per streamed event: iterating a provider stream of 1,000 events directly, through the
   InstrumentedProvider with tracing off, and with tracing on (in-memory span exporter).

    .venv/bin/python benchmarks/tracing_overhead.py [--requests 600] [--rounds 5] [--breakdown]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import statistics
import time
from collections.abc import AsyncIterator

import grpc
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from provider_gateway import config as config_module
from provider_gateway.domain import ChatRequest, Message, Role, StreamEvent, TextDelta, TextPart
from provider_gateway.observability import Telemetry, TelemetrySettings, logs
from provider_gateway.observability.instrumented import InstrumentedProvider
from provider_gateway.observability.interceptor import RequestInterceptor
from provider_gateway.providers.mock import MockProvider
from provider_gateway.server.app import GatewayServer
from provider_gateway.v1 import provider_service_pb2 as pb
from provider_gateway.v1 import provider_service_pb2_grpc as pb_grpc


def telemetry_for(mode: str) -> Telemetry:
    if mode == "off":
        return Telemetry(TelemetrySettings(enabled=False))
    if mode == "default":
        return Telemetry(TelemetrySettings())
    if mode in ("interceptor", "wrappers"):  # --breakdown: one half of the default mode, no log line
        telemetry = Telemetry(TelemetrySettings())
        if mode == "interceptor":
            telemetry.wrap_registry = lambda registry: registry  # type: ignore[method-assign]
            telemetry.interceptors = lambda: [RequestInterceptor(None, None, request_log=False)]  # type: ignore[method-assign]
        else:
            telemetry.interceptors = list  # type: ignore[method-assign]
        return telemetry
    exporter = InMemorySpanExporter()
    return Telemetry(
        TelemetrySettings(traces=True, metrics=True),
        span_processors=[SimpleSpanProcessor(exporter)],
        metric_readers=[InMemoryMetricReader()],
    )


async def end_to_end(mode: str, requests: int) -> tuple[list[float], list[int]]:
    server = GatewayServer(config_module.mock_only(), telemetry_for(mode))
    await server.start("127.0.0.1", 0)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    stub = pb_grpc.ProviderServiceStub(channel)
    request = pb.ChatRequest(
        model="mock/echo", messages=[pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text="hi")])]
    )
    latencies: list[float] = []
    overheads: list[int] = []
    try:
        for i in range(requests + 50):
            started = time.perf_counter()
            last = None
            async for event in stub.ChatStream(request):
                last = event
            if i >= 50:  # warm-up excluded
                latencies.append((time.perf_counter() - started) * 1e6)
                assert last is not None
                overheads.append(last.finish.timing.gateway_overhead_us)
    finally:
        await channel.close()
        await server.stop(0)
    return latencies, overheads


class Firehose(MockProvider):
    """A provider that yields `count` text events as fast as it can."""

    def __init__(self, count: int) -> None:
        super().__init__("firehose")
        self.count = count

    def chat_stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[StreamEvent]:
        delta = TextDelta("x")
        for _ in range(self.count):
            yield delta


async def per_event(mode: str, events: int, repeats: int) -> float:
    """Nanoseconds per streamed event through the provider layer."""
    provider = Firehose(events)
    telemetry = telemetry_for("traced" if mode == "traced" else "default")
    wrapped = (
        provider if mode == "direct" else InstrumentedProvider(provider, telemetry.tracer, telemetry.metrics)
    )
    request = ChatRequest(model="m", messages=[Message(Role.USER, (TextPart("hi"),))])
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter_ns()
        async for _ in wrapped.chat_stream(request):
            pass
        best = min(best, (time.perf_counter_ns() - started) / events)
    return best


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(requests: int, rounds: int, breakdown: bool) -> None:
    # The request log goes through the real JSON formatter into memory, so its cost is counted.
    logs.configure("info", "json", io.StringIO())
    modes = ("off", "interceptor", "wrappers", "default") if breakdown else ("off", "default", "traced")
    e2e: dict[str, list[tuple[float, float, float]]] = {m: [] for m in modes}
    event_modes = () if breakdown else ("direct", "wrapped", "traced")
    events: dict[str, list[float]] = {m: [] for m in event_modes}
    for _ in range(rounds):
        for mode in modes:
            latencies, overheads = await end_to_end(mode, requests)
            e2e[mode].append((pct(latencies, 0.5), pct(latencies, 0.9), statistics.median(overheads)))
        for mode in events:
            events[mode].append(await per_event(mode, 1000, 20))
    logging.getLogger().handlers.clear()
    print(
        f"ChatStream mock/echo (12 tokens), {requests} sequential requests x {rounds} rounds, median of rounds:"
    )
    print(f"{'mode':<12}{'p50 us':>10}{'p90 us':>10}{'gateway_overhead_us p50':>26}")
    for mode in modes:
        p50 = statistics.median(r[0] for r in e2e[mode])
        p90 = statistics.median(r[1] for r in e2e[mode])
        overhead = statistics.median(r[2] for r in e2e[mode])
        print(f"{mode:<12}{p50:>10.0f}{p90:>10.0f}{overhead:>26.0f}")
    if events:
        print("Per streamed event through the provider layer (best of 20 x 1,000 events, median of rounds):")
    for mode, values in events.items():
        print(f"{mode:<10}{statistics.median(values):>10.0f} ns/event")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--breakdown", action="store_true", help="interceptor and wrappers apart, no log")
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.rounds, args.breakdown))
