"""Explicit-bucket histograms aggregated in plain Python, handed to every metric reader at collection.

A synchronous SDK Histogram.record costs 9-13 µs in opentelemetry-sdk 1.45 (a Measurement,
attribute cleaning and hashing, locks, the exemplar path); OpenTelemetry has no observable
histogram to report a pre-aggregated one through, as sums.py does for counters. Here a record is a
bisect into the bucket bounds plus count, sum, min and max per label set: about 1.3 µs
(benchmarks/metrics_calls.py), the label set keyed by its (name, value) pairs in any order as the
SDK keys it. Passing label values positionally, as Sums.add takes them, would save ~0.5 µs a record
(4 µs a stream), not worth a second calling convention: the attempt histograms' label names vary
with the outcome, and the SDK path (with exemplars) takes a dict.

Injection point: each reader's collect callback. The MeterProvider gives every reader the function
that builds its MetricsData (`MetricReader._set_collect_callback`, called once per reader in the
provider's constructor); `attach` wraps it so that the histograms' metrics join the instrumentation
scope's metrics before the reader sees them. Unlike reader subclasses overriding `_receive_metrics`,
this serves any reader, whoever built it (the Prometheus endpoint's, the periodic OTLP/console
ones, the in-memory ones tests and benchmarks pass in), and also a collection in which the SDK had
nothing (it then returns None and `_receive_metrics` would not be called). An exporter wrapper
would miss the Prometheus reader, which has no exporter. (A reader added later through
`MeterProvider.add_metric_reader` would not be attached; the gateway adds none.) The callback and
the reader's resolved preferences (`_instrument_class_temporality`, `..._cardinality_limit`) are
private to the SDK: uv.lock pins it, and tests/test_metrics_histograms.py compares every kind of
reader's output with the SDK's own histograms, so an SDK change that moves them fails there.

What each reader receives is what the SDK's histogram aggregation (1.45) gives it, stream by
stream (one stream per reader and histogram): the reader's preferred temporality for histograms
(cumulative, or delta e.g. with OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=delta or
lowmemory), cumulative points from the label set's first record, delta points from the reader's
previous collection and only for label sets recorded since, the reader's cardinality limit with
the `otel.metric.overflow` label set, and sums added in the same order (so even float sums are
bit-identical). No exemplars: this path is used only when none would be sampled (metrics.py).

Consistency: records come from the event loop, collections from other threads (the Prometheus
endpoint's `asyncio.to_thread`, the periodic reader's thread). Records and the start of a
collection share one lock per histogram; a collection holds it only to swap each stream's interval
dict for an empty one (O(1)), then builds points from what it took with the lock released. An
uncontended lock costs ~0.1 µs a record, and it makes every collected point whole: bucket counts,
count, sum, min and max of the same records, none lost (a lock-free swap can lose a record made
between reading the dict and writing to it).
"""

from __future__ import annotations

import logging
import math
import threading
from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from time import time_ns
from typing import Any, cast

from opentelemetry.sdk.metrics import Histogram as SdkHistogram
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricReader,
    MetricsData,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.util.types import AttributeValue

log = logging.getLogger("provider_gateway.observability")
Attributes = Mapping[str, AttributeValue]
LabelKey = frozenset[tuple[str, AttributeValue]]
# What the SDK puts in place of label sets past a reader's cardinality limit.
OVERFLOW_ATTRIBUTES: dict[str, AttributeValue] = {"otel.metric.overflow": True}
OVERFLOW_KEY: LabelKey = frozenset(OVERFLOW_ATTRIBUTES.items())
DEFAULT_CARDINALITY_LIMIT = 2000  # the SDK's, for a reader that names none
Collect = Callable[..., MetricsData | None]


class _Interval:
    """One label set's records since its stream's last collection."""

    __slots__ = ("attributes", "counts", "created", "max", "min", "sum")

    def __init__(self, attributes: Attributes, buckets: int) -> None:
        self.attributes = dict(attributes)
        self.counts = [0] * buckets
        self.created = time_ns()
        self.sum: float = 0
        self.min = math.inf
        self.max = -math.inf


class _Stream:
    """One histogram as one reader sees it. `interval` is shared with the event loop (under the
    histogram's lock); the rest belongs to the reader's collections (under `collecting`)."""

    __slots__ = ("collecting", "delta", "interval", "limit", "previous_collection", "seen", "totals")

    def __init__(self, delta: bool, limit: int) -> None:
        self.delta, self.limit = delta, limit
        self.interval: dict[LabelKey, _Interval] = {}
        self.seen: set[LabelKey] = set()  # label sets ever aggregated (the cumulative limit counts these)
        self.collecting = threading.Lock()
        self.previous_collection: int | None = None
        self.totals: dict[LabelKey, _Interval] = {}  # cumulative: the sums of all past intervals

    def open(self, key: LabelKey, attributes: Attributes, buckets: int) -> _Interval:
        """The interval entry for a label set not yet recorded in it (under the histogram's lock)."""
        interval, seen = self.interval, self.seen
        if not self.delta and key in seen:
            entry = interval[key] = _Interval(attributes, buckets)
            return entry
        # The limit counts the label sets aggregated so far: ever (cumulative), or since the last
        # collection (delta drops them at each, as the SDK does).
        if (len(interval) if self.delta else len(seen)) >= self.limit:
            key, attributes = OVERFLOW_KEY, OVERFLOW_ATTRIBUTES
            if key in interval:
                return interval[key]
        if not self.delta:
            seen.add(key)
        entry = interval[key] = _Interval(attributes, buckets)
        return entry


class PlainHistogram:
    """An explicit-bucket histogram: `record(amount, attributes)` as the SDK's Histogram takes it."""

    __slots__ = ("_bounds", "_buckets", "_lock", "_streams", "description", "name", "unit")

    def __init__(self, name: str, unit: str, description: str, bounds: Sequence[float]) -> None:
        self.name, self.unit, self.description = name, unit, description
        self._bounds = tuple(bounds)
        self._buckets = len(self._bounds) + 1
        self._lock = threading.Lock()
        self._streams: list[_Stream] = []

    def stream(self, delta: bool, limit: int) -> _Stream:
        stream = _Stream(delta, limit)
        self._streams.append(stream)
        return stream

    def record(self, amount: float, attributes: Attributes) -> None:
        if not math.isfinite(amount) or amount < 0:  # what the SDK's Histogram does with them
            log.warning("Record amount %s is invalid on Histogram %s, ignoring it.", amount, self.name)
            return
        key = frozenset(attributes.items())  # order-blind, as the SDK's label sets are
        bucket = bisect_left(self._bounds, amount)
        with self._lock:
            for stream in self._streams:
                entry = stream.interval.get(key)
                if entry is None:
                    entry = stream.open(key, attributes, self._buckets)
                entry.counts[bucket] += 1
                entry.sum += amount
                if amount < entry.min:
                    entry.min = amount
                if amount > entry.max:
                    entry.max = amount

    def collect(self, stream: _Stream, now: int) -> Metric | None:
        """The stream's metric as the SDK would build it at `now`; None when it has no point."""
        with stream.collecting:
            with self._lock:
                taken, stream.interval = stream.interval, {}
            points = self._delta(stream, taken, now) if stream.delta else self._cumulative(stream, taken, now)
            stream.previous_collection = now
        if not points:
            return None
        temporality = AggregationTemporality.DELTA if stream.delta else AggregationTemporality.CUMULATIVE
        return Metric(
            name=self.name,
            description=self.description,
            unit=self.unit,
            data=Histogram(data_points=points, aggregation_temporality=temporality),
        )

    def _delta(self, stream: _Stream, taken: dict[LabelKey, _Interval], now: int) -> list[HistogramDataPoint]:
        # Label sets recorded since the last collection only; they start at that collection, or at
        # their first record if this reader never collected (the SDK's start times).
        previous = stream.previous_collection
        return [self._point(entry, previous or entry.created, now) for entry in taken.values()]

    def _cumulative(
        self, stream: _Stream, taken: dict[LabelKey, _Interval], now: int
    ) -> list[HistogramDataPoint]:
        totals = stream.totals
        for key, entry in taken.items():
            total = totals.get(key)
            if total is None:
                totals[key] = total = _Interval(entry.attributes, self._buckets)
                total.created = entry.created  # the label set's first record starts its series
            # The SDK's order of operations: this interval's sum plus the previous total.
            total.counts = [a + b for a, b in zip(entry.counts, total.counts, strict=True)]
            total.min = min(entry.min, total.min)
            total.max = max(entry.max, total.max)
            total.sum = entry.sum + total.sum
        return [self._point(total, total.created, now) for total in totals.values()]

    def _point(self, entry: _Interval, start: int, now: int) -> HistogramDataPoint:
        return HistogramDataPoint(
            attributes=entry.attributes,
            start_time_unix_nano=start,
            time_unix_nano=now,
            count=sum(entry.counts),
            sum=entry.sum,
            bucket_counts=tuple(entry.counts),
            explicit_bounds=self._bounds,
            min=entry.min,
            max=entry.max,
            exemplars=[],
        )


class PlainHistograms:
    """The plain histograms of one MeterProvider: `create` them, then `attach` the provider's readers."""

    def __init__(self, resource: Resource, scope: InstrumentationScope) -> None:
        self._resource, self._scope = resource, scope
        self._histograms: list[PlainHistogram] = []

    def create(self, name: str, unit: str, description: str, bounds: Sequence[float]) -> PlainHistogram:
        histogram = PlainHistogram(name, unit, description, bounds)
        self._histograms.append(histogram)
        return histogram

    def attach(self, readers: Sequence[MetricReader]) -> None:
        """Give each reader (already registered with the MeterProvider) a stream of every histogram,
        and the histograms' metrics in each of its collections."""
        for reader in readers:
            sdk_collect = cast(Collect | None, reader._collect)
            if sdk_collect is None:
                raise ValueError("attach the readers after the MeterProvider has registered them")
            temporality, limit = histogram_preferences(reader)
            delta = temporality is AggregationTemporality.DELTA
            streams = [(h, h.stream(delta, limit)) for h in self._histograms]
            reader._set_collect_callback(cast(Any, self._collector(sdk_collect, streams)))

    def _collector(self, sdk_collect: Collect, streams: list[tuple[PlainHistogram, _Stream]]) -> Collect:
        def collect(reader: MetricReader, *args: Any, **kwargs: Any) -> MetricsData | None:
            data = sdk_collect(reader, *args, **kwargs)
            now = time_ns()
            metrics = [m for h, stream in streams if (m := h.collect(stream, now)) is not None]
            return self._with(data, metrics) if metrics else data

        return collect

    def _with(self, data: MetricsData | None, metrics: list[Metric]) -> MetricsData:
        """`data` with `metrics` added to the instrumentation scope's metrics."""
        scope = self._scope
        if data is None:
            return MetricsData(
                resource_metrics=[
                    ResourceMetrics(
                        resource=self._resource,
                        scope_metrics=[
                            ScopeMetrics(scope=scope, metrics=metrics, schema_url=scope.schema_url or "")
                        ],
                        schema_url=self._resource.schema_url,
                    )
                ]
            )
        # One ResourceMetrics (the provider has one resource); the scope may have had no SDK metric.
        resource_metrics = []
        for resource in data.resource_metrics:
            scopes = list(resource.scope_metrics)
            if resource.resource == self._resource:
                found = [i for i, s in enumerate(scopes) if s.scope == scope]
                if found:
                    own = scopes[found[0]]
                    scopes[found[0]] = ScopeMetrics(
                        scope=own.scope, metrics=[*own.metrics, *metrics], schema_url=own.schema_url
                    )
                else:
                    scopes.append(
                        ScopeMetrics(scope=scope, metrics=metrics, schema_url=scope.schema_url or "")
                    )
            resource_metrics.append(
                ResourceMetrics(
                    resource=resource.resource, scope_metrics=scopes, schema_url=resource.schema_url
                )
            )
        return MetricsData(resource_metrics=resource_metrics)


def histogram_preferences(reader: MetricReader) -> tuple[AggregationTemporality, int]:
    """The reader's temporality and cardinality limit for histograms: the SDK resolves them (from
    the reader's or its exporter's preferences) into these maps, keyed by its instrument classes."""
    temporality = next(
        (t for cls, t in reader._instrument_class_temporality.items() if issubclass(cls, SdkHistogram)),
        AggregationTemporality.CUMULATIVE,
    )
    limit = next(
        (n for cls, n in reader._instrument_class_cardinality_limit.items() if issubclass(cls, SdkHistogram)),
        DEFAULT_CARDINALITY_LIMIT,
    )
    return temporality, limit
