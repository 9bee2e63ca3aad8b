"""`Telemetry`: what the server asks of observability, built from the `[telemetry]` table.

    [telemetry]
    enabled = true            # false: no interceptor, no provider wrapper, nothing on the hot path
    request_log = true        # one INFO line per request (logger provider_gateway.access)
    traces = false            # also on when OTEL_TRACES_EXPORTER names an exporter
    metrics = false           # also on with prometheus_port or OTEL_METRICS_EXPORTER
    prometheus_port = 9464    # (unset: no endpoint; 0: any free port) Prometheus text at /metrics
    prometheus_host = "127.0.0.1"
    service_name = "provider-gateway"   # OTEL_SERVICE_NAME wins

Exporters follow the standard variables: OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER = otlp (the
default once switched on), console, none (metrics also prometheus); OTEL_EXPORTER_OTLP_PROTOCOL =
grpc or http/protobuf; OTEL_EXPORTER_OTLP_ENDPOINT, _HEADERS, OTEL_RESOURCE_ATTRIBUTES,
OTEL_TRACES_SAMPLER, OTEL_METRIC_EXPORT_INTERVAL as the SDK defines them; OTEL_SDK_DISABLED=true
switches both off. OpenTelemetry is imported only when traces or metrics are on, so the default
server stays small.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from provider_gateway.config import Section
from provider_gateway.observability import logs
from provider_gateway.observability.gauges import GaugeSources
from provider_gateway.observability.propagation import annotate_upstream_request
from provider_gateway.providers.base import Provider
from provider_gateway.providers.registry import ProviderRegistry

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

    from provider_gateway.observability.interceptor import RequestInterceptor
    from provider_gateway.observability.metrics import GatewayMetrics
    from provider_gateway.observability.prometheus import PrometheusEndpoint

TELEMETRY_KEYS = (
    "enabled",
    "request_log",
    "traces",
    "metrics",
    "prometheus_port",
    "prometheus_host",
    "service_name",
)


class _ConnectionCounts(Protocol):
    requests: int
    connections: int


class _Request(Protocol):
    @property
    def headers(self) -> MutableMapping[str, str]: ...


class UpstreamPoolLike(Protocol):
    """What the shared HTTP layer's UpstreamPool offers observability."""

    def add_request_hook(self, hook: Callable[[Any], None]) -> None: ...

    def stats(self) -> Mapping[str, _ConnectionCounts]: ...


def _env_names(variable: str) -> list[str]:
    return [n.strip() for n in os.environ.get(variable, "").split(",") if n.strip() not in ("", "none")]


@dataclass(slots=True, frozen=True)
class TelemetrySettings:
    enabled: bool = True
    request_log: bool = True
    traces: bool = False
    metrics: bool = False
    prometheus_port: int | None = None  # None: no endpoint; 0: any free port
    prometheus_host: str = "127.0.0.1"
    service_name: str = "provider-gateway"

    @classmethod
    def from_section(cls, section: Section) -> TelemetrySettings:
        section.reject_unknown(TELEMETRY_KEYS)
        port = section.integer("prometheus_port", -1, minimum=-1) if "prometheus_port" in section else -1
        if port > 65535:
            raise section.error("prometheus_port", f"must be a TCP port (0-65535), got {port}")
        sdk_off = os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true"
        traces = section.flag("traces", False) or bool(_env_names("OTEL_TRACES_EXPORTER"))
        metrics = section.flag("metrics", False) or port >= 0 or bool(_env_names("OTEL_METRICS_EXPORTER"))
        if "prometheus" in _env_names("OTEL_METRICS_EXPORTER") and port < 0:
            port = int(os.environ.get("OTEL_EXPORTER_PROMETHEUS_PORT", "9464"))
        return cls(
            enabled=section.flag("enabled", True),
            request_log=section.flag("request_log", True),
            traces=traces and not sdk_off,
            metrics=metrics and not sdk_off,
            prometheus_port=port if port >= 0 and not sdk_off else None,
            prometheus_host=section.string("prometheus_host", "127.0.0.1"),
            service_name=section.string("service_name", "provider-gateway"),
        )


class Telemetry:
    """Tracer, metrics and hooks of one server. Tests pass their own processors and readers."""

    def __init__(
        self,
        settings: TelemetrySettings | None = None,
        *,
        span_processors: Sequence[SpanProcessor] = (),
        metric_readers: Sequence[MetricReader] = (),
    ) -> None:
        self.settings = settings = settings or TelemetrySettings()
        logs.register_environment_secrets()  # provider keys from the environment are redacted everywhere
        self.gauges = GaugeSources()
        self.health: Callable[[], Mapping[str, bool]] = dict
        self.tracer_provider: TracerProvider | None = None
        self.tracer: Any = None
        self.metrics: GatewayMetrics | None = None
        self.prometheus: PrometheusEndpoint | None = None
        if not settings.enabled:
            return
        if settings.traces or span_processors:
            from provider_gateway.observability.tracing import INSTRUMENTATION, tracer_provider

            self.tracer_provider = tracer_provider(settings.service_name, span_processors)
            self.tracer = self.tracer_provider.get_tracer(INSTRUMENTATION)
        if settings.metrics or metric_readers:
            from provider_gateway.observability.metrics import GatewayMetrics, env_readers

            # Metrics switched on without a Prometheus port go out over OTLP, the SDK's default.
            readers = list(metric_readers) or env_readers(
                "" if settings.prometheus_port is not None else "otlp"
            )
            if settings.prometheus_port is not None:
                from provider_gateway.observability.prometheus import PrometheusEndpoint

                self.prometheus = PrometheusEndpoint(settings.prometheus_host, settings.prometheus_port)
                readers.append(self.prometheus.reader)
            self.metrics = GatewayMetrics(
                settings.service_name, readers, self.gauges, lambda: self.health(), self.tracer is not None
            )

    @classmethod
    def from_config(cls, section: Section, worker: int = 0) -> Telemetry:
        """`worker` (of `serve --workers`) offsets a fixed Prometheus port: worker i serves /metrics
        on prometheus_port + i, since one port can only be scraped from one process."""
        settings = TelemetrySettings.from_section(section)
        if worker and settings.prometheus_port:
            settings = dataclasses.replace(settings, prometheus_port=settings.prometheus_port + worker)
        return cls(settings)

    @property
    def active(self) -> bool:
        s = self.settings
        return s.enabled and (s.request_log or self.tracer is not None or self.metrics is not None)

    def call_hooks(self) -> list[RequestInterceptor]:
        """The per-RPC span, metrics and log line, as call hooks for the server's edge (one frame
        runs them around each ProviderService call: server/edge.py)."""
        if not self.active:
            return []
        from provider_gateway.observability.interceptor import RequestInterceptor

        return [RequestInterceptor(self.tracer, self.metrics, self.settings.request_log)]

    def wrap(self, provider: Provider) -> Provider:
        if not self.active:
            return provider
        from provider_gateway.observability.instrumented import InstrumentedProvider

        return InstrumentedProvider(provider, self.tracer, self.metrics)

    def watch_upstreams(self, pool: UpstreamPoolLike) -> None:
        """The shared HTTP pool: its requests carry our trace context, its counters feed the
        connection metric (opened = new connections, reused = requests that found one open)."""
        if self.tracer is not None:
            pool.add_request_hook(annotate_upstream_request)

        def counts() -> dict[str, tuple[int, int]]:
            stats = pool.stats()
            return {
                origin: (s.connections, max(s.requests - s.connections, 0)) for origin, s in stats.items()
            }

        self.gauges.add_connection_source(counts)

    def wrap_registry(self, registry: ProviderRegistry) -> ProviderRegistry:
        """The registry the router uses: the same providers, each instrumented.

        A provider with a `connection_stats() -> (opened, reused)` method (the shared HTTP layer's
        counters) is reported in `provider_gateway.http.connections` without further wiring.
        """
        counted = [p for p in registry if callable(getattr(p, "connection_stats", None))]
        if counted:
            self.gauges.add_connection_source(lambda: {p.name: p.connection_stats() for p in counted})  # type: ignore[attr-defined]
        if not self.active:
            return registry
        return ProviderRegistry([self.wrap(p) for p in registry], registry.default)

    async def start(self) -> None:
        if self.prometheus is not None:
            await self.prometheus.start()

    async def stop(self) -> None:
        if self.prometheus is not None:
            await self.prometheus.stop()
        # Flushing exporters may block on the network: off the event loop.
        if self.tracer_provider is not None:
            await asyncio.to_thread(self.tracer_provider.shutdown)
        if self.metrics is not None:
            await asyncio.to_thread(self.metrics.shutdown)
