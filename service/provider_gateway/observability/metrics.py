"""OpenTelemetry metrics of the gateway, exported by OTLP and/or scraped as Prometheus text.

Request-level instruments are recorded by the interceptor, attempt-level ones by the instrumented
providers (counters summed in plain dicts, histograms aggregated in plain Python unless exemplars
could be sampled); state-like ones (breakers, limiters, connections, provider health) are observable
gauges fed through `GaugeSources`. Imported only when metrics are on.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Protocol, cast

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, ExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from provider_gateway.observability.gauges import BREAKER_LEVELS, GaugeSources
from provider_gateway.observability.histograms import Attributes, PlainHistograms
from provider_gateway.observability.sums import Sums
from provider_gateway.observability.tracing import INSTRUMENTATION, env_exporters, otlp_exporter, resource

# Seconds: from sub-millisecond gateway overhead up to multi-minute generations.
DURATION_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
)
OVERHEAD_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
# Model names come from requests: past this many distinct ones, new names are labelled "_other", so
# a caller cycling through made-up models cannot grow the metrics without bound.
MAX_MODEL_LABELS = 200
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576)


def metric_exporter(name: str) -> MetricExporter:
    if name == "console":
        return ConsoleMetricExporter()
    if name != "otlp":
        raise ValueError(f"OTEL_METRICS_EXPORTER: unsupported exporter {name!r} (use otlp, console, none)")
    return cast(MetricExporter, otlp_exporter("metrics"))


def env_readers(default: str) -> list[MetricReader]:
    """Periodic readers for OTEL_METRICS_EXPORTER, else `default` (OTEL_METRIC_EXPORT_INTERVAL sets the
    period); `prometheus` is served by the endpoint instead."""
    names = [n for n in env_exporters("OTEL_METRICS_EXPORTER", default) if n != "prometheus"]
    return [PeriodicExportingMetricReader(metric_exporter(n)) for n in names]


# Each histogram's bucket bounds, whichever path aggregates it.
HISTOGRAM_BUCKETS: dict[str, Sequence[float]] = {
    "provider_gateway.request.duration": DURATION_BUCKETS,
    "rpc.server.duration": DURATION_BUCKETS,
    "provider_gateway.time_to_first_token": DURATION_BUCKETS,
    "gen_ai.client.operation.duration": DURATION_BUCKETS,
    "gen_ai.client.operation.time_to_first_chunk": DURATION_BUCKETS,
    "provider_gateway.gateway_overhead": OVERHEAD_BUCKETS,
    "gen_ai.client.token.usage": TOKEN_BUCKETS,
}


class Recorder(Protocol):
    """A histogram as the call sites use it: the SDK's, or a plain one (histograms.py)."""

    def record(self, amount: float, attributes: Attributes) -> None: ...


def _views() -> list[View]:
    return [
        View(instrument_name=name, aggregation=ExplicitBucketHistogramAggregation(boundaries=bounds))
        for name, bounds in HISTOGRAM_BUCKETS.items()
    ]


def _exemplar_filter(traced: bool) -> ExemplarFilter | None:
    """Exemplars link a measurement to the sampled span it was made in. Without our tracer there is
    no such span, so the default trace_based filter can only say no, at ~2% of each histogram
    record: off then, unless OTEL_METRICS_EXEMPLAR_FILTER asks for something (None: the SDK's choice)."""
    return None if traced or os.environ.get("OTEL_METRICS_EXEMPLAR_FILTER") else AlwaysOffExemplarFilter()


class GatewayMetrics:
    def __init__(
        self,
        service_name: str,
        readers: Sequence[MetricReader],
        gauges: GaugeSources,
        health: Callable[[], Mapping[str, bool]] = dict,
        traced: bool = False,
    ) -> None:
        exemplar_filter = _exemplar_filter(traced)
        service_resource = resource(service_name)
        self.provider = MeterProvider(
            metric_readers=list(readers),
            resource=service_resource,
            views=_views(),
            exemplar_filter=exemplar_filter,
        )
        meter = self.provider.get_meter(INSTRUMENTATION)
        # With no exemplar to sample, histograms are aggregated in plain Python (histograms.py): an
        # SDK Histogram.record costs ~10 µs, a plain one ~1.3. With exemplars possible the SDK keeps
        # them, so that their points carry exemplars.
        plain = (
            PlainHistograms(service_resource, InstrumentationScope(INSTRUMENTATION))
            if isinstance(exemplar_filter, AlwaysOffExemplarFilter)
            else None
        )

        def histogram(name: str, unit: str, description: str) -> Recorder:
            if plain is None:
                return meter.create_histogram(name, unit, description)
            return plain.create(name, unit, description, HISTOGRAM_BUCKETS[name])

        self._gauges = gauges
        self._models: set[str] = set()
        self._health = health
        # Counters are summed in plain dicts and reported at collection (sums.py): a synchronous
        # instrument costs ~12 µs a call. Label names in the order `add` takes their values.
        self.requests = Sums(
            meter,
            "provider_gateway.requests",
            "{request}",
            "RPCs served, by rpc, provider, model and status",
            ("rpc", "provider", "model", "status"),
        )
        self.duration = histogram(
            "provider_gateway.request.duration", "s", "RPC duration from arrival to the last message"
        )
        self.rpc_duration = histogram(
            "rpc.server.duration", "s", "gRPC server call duration (OpenTelemetry RPC semantic conventions)"
        )
        self.ttft = histogram(
            "provider_gateway.time_to_first_token", "s", "From arrival to the first content event"
        )
        self.overhead = histogram(
            "provider_gateway.gateway_overhead", "s", "The gateway's own time: total minus upstream wait"
        )
        self.cost = Sums(
            meter,
            "provider_gateway.cost",
            "{usd_micro}",
            "What requests cost by the price table, in micro-USD",
            ("provider", "model", "key"),
        )
        self.tokens = Sums(
            meter,
            "provider_gateway.tokens",
            "{token}",
            "Tokens in and out, by provider, model and direction",
            ("provider", "model", "direction"),
        )
        self.attempts = Sums(
            meter,
            "provider_gateway.attempts",
            "{attempt}",
            "Upstream attempts, by provider, model and outcome",
            ("provider", "model", "outcome"),
        )
        self.retries = Sums(
            meter,
            "provider_gateway.retries",
            "{attempt}",
            "Attempts that retried the previous provider",
            ("provider",),
        )
        self.failovers = Sums(
            meter,
            "provider_gateway.failovers",
            "{attempt}",
            "Attempts that moved to another provider",
            ("provider",),
        )
        self.retries_refused = Sums(
            meter,
            "provider_gateway.retries.refused",
            "{attempt}",
            "Retries and failovers the retry budget held back, by the provider they would have tried",
            ("provider",),
        )
        self.genai_duration = histogram(
            "gen_ai.client.operation.duration", "s", "GenAI operation duration (one upstream attempt)"
        )
        self.genai_tokens = histogram(
            "gen_ai.client.token.usage", "{token}", "Tokens used per GenAI operation"
        )
        self.genai_ttfc = histogram(
            "gen_ai.client.operation.time_to_first_chunk", "s", "From sending a request to its first chunk"
        )
        meter.create_observable_gauge(
            "provider_gateway.breaker.state",
            [self._breakers],
            "1",
            "Circuit breaker: 0 closed, 1 half-open, 2 open",
        )
        meter.create_observable_gauge(
            "provider_gateway.limiter.capacity", [self._limiters], "1", "Spare capacity of each limiter"
        )
        meter.create_observable_counter(
            "provider_gateway.http.connections",
            [self._connections],
            "{connection}",
            "Upstream HTTP requests by connection: opened (new) or reused, by upstream origin or provider",
        )
        meter.create_observable_gauge(
            "provider_gateway.provider.up", [self._up], "1", "1 while the provider's health entry is SERVING"
        )
        self.active_streams = Sums(
            meter,
            "provider_gateway.streams.active",
            "{stream}",
            "Streaming RPCs in flight, by rpc",
            ("rpc",),
            monotonic=False,
        )
        # Process metrics under OpenTelemetry's semantic-convention names (a worker of
        # `serve --workers` reports its own process).
        meter.create_observable_gauge(
            "process.memory.usage", [self._memory], "By", "Resident memory of the server process"
        )
        meter.create_observable_counter(
            "process.cpu.time", [self._cpu], "s", "CPU time of the server process, by cpu.mode"
        )
        meter.create_observable_gauge(
            "process.thread.count",
            [self._threads],
            "{thread}",
            "Threads of the server process (gRPC's included)",
        )

        if plain is not None:
            plain.attach(readers)

    def model_label(self, model: str) -> str:
        models = self._models
        if model in models:
            return model
        if len(models) < MAX_MODEL_LABELS:
            models.add(model)
            return model
        return "_other"

    def _breakers(self, options: CallbackOptions) -> Iterable[Observation]:
        for provider, state in self._gauges.breaker_states().items():
            yield Observation(BREAKER_LEVELS.get(state, 2), {"provider": provider, "state": state})

    def _limiters(self, options: CallbackOptions) -> Iterable[Observation]:
        for attributes, value in self._gauges.limiter_capacity():
            yield Observation(value, dict(attributes))

    def _connections(self, options: CallbackOptions) -> Iterable[Observation]:
        for upstream, (opened, reused) in self._gauges.connections().items():
            yield Observation(opened, {"upstream": upstream, "state": "opened"})
            yield Observation(reused, {"upstream": upstream, "state": "reused"})

    def _up(self, options: CallbackOptions) -> Iterable[Observation]:
        for provider, up in self._health().items():
            yield Observation(int(up), {"provider": provider})

    def _memory(self, options: CallbackOptions) -> Iterable[Observation]:
        try:
            resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):  # not Linux: no figure rather than a wrong one
            return
        yield Observation(resident_pages * os.sysconf("SC_PAGE_SIZE"))

    def _cpu(self, options: CallbackOptions) -> Iterable[Observation]:
        times = os.times()
        yield Observation(times.user, {"cpu.mode": "user"})
        yield Observation(times.system, {"cpu.mode": "system"})

    def _threads(self, options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(threading.active_count())

    def shutdown(self) -> None:
        self.provider.shutdown(timeout_millis=5000)
