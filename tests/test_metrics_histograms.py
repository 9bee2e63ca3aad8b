"""Histograms aggregated in plain Python (observability/histograms.py) export what the SDK's would.

The same records go through synchronous SDK histograms of a reference MeterProvider (built here
with the names, units, descriptions and bucket bounds the gateway has always exported, exemplars
off) and through the gateway's metrics with tracing off (the plain path). Every kind of reader must
receive the same thing: Prometheus text, in-memory data points for cumulative and delta
temporality, a periodic reader whose exporter prefers delta, a reader with a small cardinality
limit; over two collections with records between, timestamps compared by what they mean.
"""

from __future__ import annotations

import asyncio
import re
import threading
import tomllib
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from conftest import RunningGateway
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client import CollectorRegistry, generate_latest
from test_metrics_prometheus import scrape
from test_metrics_sums import CONFIG
from test_observability import user

from provider_gateway import config as config_module
from provider_gateway.observability import Telemetry, TelemetrySettings
from provider_gateway.observability.gauges import GaugeSources
from provider_gateway.observability.histograms import PlainHistogram, PlainHistograms, histogram_preferences
from provider_gateway.observability.metrics import GatewayMetrics, _views, metric_exporter
from provider_gateway.observability.tracing import INSTRUMENTATION
from provider_gateway.server.app import GatewayServer
from provider_gateway.v1 import provider_service_pb2 as pb

# What the gateway exported through SDK histograms: attribute name -> (name, unit, description).
REFERENCE = {
    "duration": ("provider_gateway.request.duration", "s", "RPC duration from arrival to the last message"),
    "rpc_duration": (
        "rpc.server.duration",
        "s",
        "gRPC server call duration (OpenTelemetry RPC semantic conventions)",
    ),
    "ttft": ("provider_gateway.time_to_first_token", "s", "From arrival to the first content event"),
    "overhead": (
        "provider_gateway.gateway_overhead",
        "s",
        "The gateway's own time: total minus upstream wait",
    ),
    "genai_duration": (
        "gen_ai.client.operation.duration",
        "s",
        "GenAI operation duration (one upstream attempt)",
    ),
    "genai_tokens": ("gen_ai.client.token.usage", "{token}", "Tokens used per GenAI operation"),
    "genai_ttfc": (
        "gen_ai.client.operation.time_to_first_chunk",
        "s",
        "From sending a request to its first chunk",
    ),
}
NAMES = {name: attribute for attribute, (name, _, _) in REFERENCE.items()}
DELTA = {Histogram: AggregationTemporality.DELTA}
Record = tuple[str, float, dict[str, Any]]


class CapturingExporter(MetricExporter):
    """What a periodic reader exports, kept; its temporality preference is the test's."""

    def __init__(self, preferred_temporality: dict[type, AggregationTemporality]) -> None:
        super().__init__(preferred_temporality=preferred_temporality)
        self.exported: list[MetricsData] = []

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        self.exported.append(metrics_data)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


class Readers:
    """One of each kind of reader; `collect` reads them all in the same order."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.exporter = CapturingExporter(DELTA)
        self.in_memory = {
            "cumulative": InMemoryMetricReader(),
            "delta": InMemoryMetricReader(preferred_temporality=DELTA),
            "limited": InMemoryMetricReader(cardinality_limits={Histogram: 3}),
            "limited delta": InMemoryMetricReader(
                preferred_temporality=DELTA, cardinality_limits={Histogram: 3}
            ),
        }
        self.periodic = PeriodicExportingMetricReader(self.exporter, export_interval_millis=3_600_000)

    def all(self) -> list[MetricReader]:
        prometheus = PrometheusMetricReader(disable_target_info=True, registry=self.registry)
        return [prometheus, *self.in_memory.values(), self.periodic]

    def collect(self) -> dict[str, Any]:
        found: dict[str, Any] = {"prometheus": generate_latest(self.registry).decode()}
        for kind, reader in self.in_memory.items():
            found[kind] = reader.get_metrics_data()
        self.periodic.collect()
        found["periodic"] = self.exporter.exported[-1]
        return found


def reference_provider(readers: list[MetricReader]) -> tuple[MeterProvider, dict[str, Any]]:
    provider = MeterProvider(
        metric_readers=readers, views=_views(), exemplar_filter=AlwaysOffExemplarFilter()
    )
    meter = provider.get_meter(INSTRUMENTATION)
    return provider, {a: meter.create_histogram(n, u, d) for a, (n, u, d) in REFERENCE.items()}


def gateway_provider(readers: list[MetricReader]) -> tuple[GatewayMetrics, dict[str, Any]]:
    metrics = GatewayMetrics("test", readers, GaugeSources())  # untraced: the plain path
    return metrics, {attribute: getattr(metrics, attribute) for attribute in REFERENCE}


def families(text: str) -> dict[str, list[str]]:
    """Each histogram's Prometheus lines (HELP, TYPE, buckets, count, sum) in the order served."""
    names = "|".join(re.escape(n.replace(".", "_")) for n in NAMES)
    family = re.compile(rf"(# (HELP|TYPE) )?({names})(_seconds|_ratio)?(_bucket|_count|_sum|_created)?[ {{]")
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if match := family.match(line):
            found.setdefault(match.group(3), []).append(line)
    return found


def histograms(data: MetricsData | None, times: list[int]) -> dict[str, tuple[Any, ...]]:
    """Each histogram's metadata, temporality and points, timestamps as what they mean: the time is
    this collection's (appended to `times`), the start is a past collection's or between two."""
    if data is None:
        return {}
    metrics = [
        m for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics if m.name in NAMES
    ]
    now = {p.time_unix_nano for m in metrics for p in m.data.data_points}  # type: ignore[union-attr]
    assert len(now) <= 1  # one collection time for all of a reader's histograms
    if now:
        times.append(now.pop())

    def start(nanos: int) -> tuple[str, int]:
        return ("at", times.index(nanos)) if nanos in times else ("after", sum(t < nanos for t in times))

    found = {}
    for metric in metrics:
        d: Any = metric.data
        points = sorted(
            (
                tuple(sorted(p.attributes.items())),
                p.count,
                p.sum,
                p.bucket_counts,
                p.explicit_bounds,
                p.min,
                p.max,
                list(p.exemplars),
                start(p.start_time_unix_nano),
            )
            for p in d.data_points
        )
        found[metric.name] = (
            metric.unit,
            metric.description,
            type(d).__name__,
            d.aggregation_temporality,
            points,
        )
    return found


def exported(
    build: Callable[[list[MetricReader]], tuple[Any, dict[str, Any]]], batches: list[list[Record]]
) -> list[dict[str, Any]]:
    """Each batch of records, then one collection of every reader: what each reader got."""
    readers = Readers()
    owner, instruments = build(readers.all())
    times: dict[str, list[int]] = {}
    collections = []
    for batch in batches:
        for attribute, amount, attributes in batch:
            instruments[attribute].record(amount, attributes)
        found = readers.collect()
        collections.append(
            {
                kind: families(data) if kind == "prometheus" else histograms(data, times.setdefault(kind, []))
                for kind, data in found.items()
            }
        )
    owner.shutdown()
    return collections


def attempt(outcome: str, model: str = "m") -> dict[str, Any]:
    genai: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": model,
    }
    genai["gen_ai.response.model" if outcome == "ok" else "error.type"] = (
        model if outcome == "ok" else outcome
    )
    return genai


def rpc(status: str, model: str = "m") -> dict[str, Any]:
    return {"rpc": "ChatStream", "provider": "openai", "model": model, "status": status}


FIRST: list[Record] = [
    # Sums that are not exact in binary, bucket bounds hit exactly, past the last bound, zero.
    ("duration", 0.1, rpc("OK")),
    ("duration", 0.2, rpc("OK")),
    ("duration", 0.30000000000000004, rpc("OK")),
    ("duration", 0.0025, rpc("OK")),
    ("duration", 500.0, rpc("UNAVAILABLE")),
    ("duration", 0.0, rpc("UNAVAILABLE")),
    ("duration", -1.0, rpc("OK")),  # ignored by both
    ("duration", float("nan"), rpc("OK")),  # ignored by both
    ("rpc_duration", 0.123, {"rpc.system": "grpc", "rpc.method": "Chat", "rpc.grpc.status_code": 0}),
    ("rpc_duration", 0.7, {"rpc.system": "grpc", "rpc.method": "Chat", "rpc.grpc.status_code": 14}),
    ("overhead", 0.00005, {"rpc": "ChatStream", "provider": "openai"}),
    ("overhead", 0.000731, {"rpc": "ChatStream", "provider": "openai"}),
    ("ttft", 0.04, {"rpc": "ChatStream", "provider": "openai", "model": "m"}),
    ("genai_duration", 0.33, attempt("ok")),
    ("genai_duration", 0.01, attempt("TimeoutError")),
    ("genai_ttfc", 0.02, attempt("ok")),
    ("genai_tokens", 12, {**attempt("ok"), "gen_ai.token.type": "input"}),
    ("genai_tokens", 300, {**attempt("ok"), "gen_ai.token.type": "output"}),
    # Past the limited readers' 3 label sets: into the overflow point there.
    ("duration", 0.5, rpc("OK", "m2")),
    ("duration", 0.6, rpc("OK", "m3")),
]
SECOND: list[Record] = [
    # rpc("UNAVAILABLE") gets no record in this interval; a new label set appears; the same label
    # set given in another key order is the same point.
    ("duration", 0.7, rpc("OK")),
    ("duration", 0.17, dict(reversed(rpc("OK").items()))),  # 0.7 + 0.17 + the first total != a running sum
    ("duration", 1.5, rpc("CANCELLED")),
    ("genai_duration", 1e-7, attempt("ok")),
    ("genai_tokens", 7, {**attempt("ok"), "gen_ai.token.type": "input"}),
    ("overhead", 0.0031, {"rpc": "ChatStream", "provider": "openai"}),
]


def test_every_reader_gets_what_sdk_histograms_would_give_it() -> None:
    plain = exported(gateway_provider, [FIRST, SECOND])
    reference = exported(reference_provider, [FIRST, SECOND])
    for got, expected in zip(plain, reference, strict=True):
        assert got == expected
    # What the comparison covered: every histogram, both temporalities, the interval semantics.
    first, second = reference
    assert set(first["cumulative"]) == set(NAMES)
    assert set(first["prometheus"]) == {name.replace(".", "_") for name in NAMES}
    unavailable = (("model", "m"), ("provider", "openai"), ("rpc", "ChatStream"), ("status", "UNAVAILABLE"))
    cumulative = {p[0]: p for p in second["cumulative"]["provider_gateway.request.duration"][4]}
    delta = {p[0]: p for p in second["delta"]["provider_gateway.request.duration"][4]}
    assert cumulative[unavailable][1] == 2
    assert unavailable not in delta
    ok = (*unavailable[:3], ("status", "OK"))
    assert cumulative[ok][1] == 6
    assert cumulative[ok][8] == ("after", 0)
    assert delta[ok][1] == 2
    assert delta[ok][8] == ("at", 0)
    assert second["delta"]["provider_gateway.request.duration"][3] is AggregationTemporality.DELTA
    assert second["periodic"]["provider_gateway.request.duration"][3] is AggregationTemporality.DELTA
    overflow = {p[0] for p in first["limited"]["provider_gateway.request.duration"][4]}
    assert (("otel.metric.overflow", True),) in overflow
    assert len(overflow) == 4


def test_the_otlp_temporality_preference_reaches_the_histograms(monkeypatch: pytest.MonkeyPatch) -> None:
    for preference, expected in (
        ("cumulative", AggregationTemporality.CUMULATIVE),
        ("delta", AggregationTemporality.DELTA),
        ("lowmemory", AggregationTemporality.DELTA),
    ):
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", preference)
        reader = PeriodicExportingMetricReader(metric_exporter("otlp"), export_interval_millis=3_600_000)
        try:
            assert histogram_preferences(reader)[0] is expected
        finally:
            reader.shutdown()


def test_a_collection_during_records_sees_whole_records_and_loses_none() -> None:
    """Records on this thread, collections on another (as the Prometheus endpoint and the periodic
    reader collect): every point collected must be whole, and together they must hold every record."""
    cumulative, delta = InMemoryMetricReader(), InMemoryMetricReader(preferred_temporality=DELTA)
    metrics = GatewayMetrics("test", [cumulative, delta], GaugeSources())
    labels = rpc("OK")
    stop = threading.Event()
    seen: list[tuple[int, float, int]] = []
    delta_total = 0

    def points(reader: InMemoryMetricReader) -> Iterator[Any]:
        data = reader.get_metrics_data()
        for r in data.resource_metrics if data is not None else ():
            for s in r.scope_metrics:
                for m in s.metrics:
                    if m.name == "provider_gateway.request.duration":
                        yield from m.data.data_points  # type: ignore[union-attr]

    def collect() -> None:
        nonlocal delta_total
        while not stop.is_set():
            for point in points(cumulative):
                seen.append((point.count, point.sum, sum(point.bucket_counts)))
            delta_total += sum(p.count for p in points(delta))

    collector = threading.Thread(target=collect)
    collector.start()
    records = 0
    try:
        while records < 1_000_000 and (records < 20_000 or len(seen) < 20):
            metrics.duration.record(1.0, labels)  # 1.0s add up exactly: sum == count when whole
            records += 1
    finally:
        stop.set()
        collector.join()
    final = list(points(cumulative))
    delta_total += sum(p.count for p in points(delta))
    metrics.shutdown()
    assert len(seen) >= 20  # collections did run during the records
    assert all(count == total == s for count, s, total in seen)
    assert [p.count for p in final] == [records]
    assert final[0].sum == records
    assert delta_total == records


async def test_the_served_gateway_exports_what_sdk_histograms_would(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Record] = []
    record = PlainHistogram.record
    settled = asyncio.Event()

    def recorded(self: PlainHistogram, amount: float, attributes: Any) -> None:
        calls.append((NAMES[self.name], amount, dict(attributes)))
        record(self, amount, attributes)
        if sum(1 for c in calls if c[0] == "duration") == 6:
            settled.set()

    monkeypatch.setattr(PlainHistogram, "record", recorded)
    reader = InMemoryMetricReader()
    config = config_module.parse(tomllib.loads(CONFIG), "test.toml")
    telemetry = Telemetry(TelemetrySettings(metrics=True, prometheus_port=0), metric_readers=[reader])
    server = GatewayServer(config, telemetry)
    await server.start("127.0.0.1", 0)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        stub = RunningGateway(server, channel).stub
        for model in ("primary/m", "backup/m", "backup/priced"):
            async for _ in stub.ChatStream(
                pb.ChatRequest(model=model, fallbacks=["backup/m"], messages=[user("hi")])
            ):
                pass
        await stub.Chat(pb.ChatRequest(model="backup/priced", messages=[user("hello there")]))
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Chat(pb.ChatRequest(model="primary/m", messages=[user("hi")]))  # retried, then fails
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Chat(pb.ChatRequest(model="backup/no-such-model", messages=[user("hi")]))
        await asyncio.wait_for(settled.wait(), 10)  # every call's histograms recorded
        made = list(calls)
        assert telemetry.prometheus is not None
        served_text = await scrape(telemetry.prometheus.port)
        served_data = reader.get_metrics_data()
        assert calls == made
    finally:
        await channel.close()
        await server.stop(0)

    registry = CollectorRegistry(auto_describe=True)
    memory = InMemoryMetricReader()
    provider, instruments = reference_provider(
        [PrometheusMetricReader(disable_target_info=True, registry=registry), memory]
    )
    for attribute, amount, attributes in made:
        instruments[attribute].record(amount, attributes)
    reference_text, reference_data = generate_latest(registry).decode(), memory.get_metrics_data()
    provider.shutdown()
    assert families(served_text) == families(reference_text)
    assert histograms(served_data, []) == histograms(reference_data, [])
    assert set(families(served_text)) == {n.replace(".", "_") for n in NAMES}  # all seven covered


def test_histograms_reach_a_reader_whose_sdk_side_has_nothing() -> None:
    """A provider with no SDK instrument collects None; the histograms still arrive, under the
    provider's resource and the scope the SDK would have used."""
    resource = Resource.create({"service.name": "test"})
    bounds = (1.0, 2.0)

    def collected(plain: bool) -> MetricsData:
        reader = InMemoryMetricReader()
        view = View(instrument_name="h", aggregation=ExplicitBucketHistogramAggregation(bounds))
        provider = MeterProvider(
            metric_readers=[reader],
            resource=resource,
            views=[view],
            exemplar_filter=AlwaysOffExemplarFilter(),
        )
        histogram: Any
        if plain:
            made = PlainHistograms(resource, InstrumentationScope(INSTRUMENTATION))
            histogram = made.create("h", "s", "a histogram", bounds)
            made.attach([reader])
        else:
            histogram = provider.get_meter(INSTRUMENTATION).create_histogram("h", "s", "a histogram")
        histogram.record(1.5, {"k": "v"})
        data = reader.get_metrics_data()
        provider.shutdown()
        assert data is not None
        return data

    def shape(data: MetricsData) -> tuple[Any, ...]:
        (resource_metrics,) = data.resource_metrics
        (scope_metrics,) = resource_metrics.scope_metrics
        (metric,) = scope_metrics.metrics
        (point,) = metric.data.data_points  # type: ignore[union-attr]
        return (
            resource_metrics.resource,
            resource_metrics.schema_url,
            scope_metrics.scope,
            scope_metrics.schema_url,
            (metric.name, metric.unit, metric.description),
            (point.attributes, point.count, point.sum, point.bucket_counts, point.min, point.max),  # type: ignore[union-attr]
        )

    assert shape(collected(plain=True)) == shape(collected(plain=False))
