"""Tracing set-up: a TracerProvider per server, exporters chosen by the standard OTEL_* variables.

`OTEL_TRACES_EXPORTER` = `otlp` | `console` | `none` (comma-separated for several),
`OTEL_EXPORTER_OTLP_PROTOCOL` / `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` = `grpc` (default) | `http/protobuf`;
endpoint, headers, timeouts, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_TRACES_SAMPLER`
are read by the SDK and exporters themselves. Imported only when tracing is on.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from provider_gateway.observability import propagation

INSTRUMENTATION = "provider_gateway"
_PROPAGATOR = TraceContextTextMapPropagator()


def env_exporters(variable: str, default: str = "") -> list[str]:
    """The exporter names an OTEL_*_EXPORTER variable lists ([] for `none`); `default` when unset."""
    value = os.environ.get(variable)
    names = [n.strip().lower() for n in (default if value is None else value).split(",") if n.strip()]
    return [n for n in names if n != "none"]


def otlp_exporter(signal: str) -> Any:
    """The OTLP exporter of `traces` or `metrics`, over the protocol that
    OTEL_EXPORTER_OTLP_<SIGNAL>_PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL names (default grpc)."""
    protocol = (
        os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "grpc"
    ).strip()
    transport = "http" if protocol.startswith("http") else "grpc"
    kind = "trace" if signal == "traces" else "metric"
    module = importlib.import_module(f"opentelemetry.exporter.otlp.proto.{transport}.{kind}_exporter")
    return getattr(module, "OTLPSpanExporter" if signal == "traces" else "OTLPMetricExporter")()


def span_exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    if name != "otlp":
        raise ValueError(f"OTEL_TRACES_EXPORTER: unsupported exporter {name!r} (use otlp, console or none)")
    return cast(SpanExporter, otlp_exporter("traces"))


def resource(service_name: str) -> Resource:
    # Resource.create merges OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME over our default.
    return Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or service_name})


def tracer_provider(service_name: str, processors: Sequence[SpanProcessor] = ()) -> TracerProvider:
    """A provider with the given processors, or else the exporters OTEL_TRACES_EXPORTER names (by
    default OTLP, as in every OpenTelemetry SDK)."""
    provider = TracerProvider(resource=resource(service_name))
    chosen = list(processors) or [
        BatchSpanProcessor(span_exporter(n)) for n in env_exporters("OTEL_TRACES_EXPORTER", "otlp")
    ]
    for processor in chosen:
        provider.add_span_processor(processor)
    propagation.enable()
    return provider


def parent_context(metadata: Iterable[tuple[str, str | bytes]] | None) -> Context | None:
    """The caller's W3C `traceparent` from gRPC metadata, if any. Its `tracestate` is left out: it
    is a client's free text (tenant or user ids), and every span of the request inherits the
    parent's, so the attempt spans would send it to the vendors in their own headers."""
    for key, value in metadata or ():
        if key == "traceparent" and isinstance(value, str):
            return _PROPAGATOR.extract({"traceparent": value})
    return None


def trace_id_hex(span: trace.Span) -> str:
    context = span.get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""


def server_attributes(method: str) -> Mapping[str, str]:
    service, _, name = method.lstrip("/").rpartition("/")
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}
