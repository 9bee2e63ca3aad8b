"""[telemetry] settings, OTEL_* environment variables, exporters, and the router's attempt hook."""

from __future__ import annotations

import contextvars
import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest

from provider_gateway.config import ConfigError, Section
from provider_gateway.observability import Telemetry, TelemetrySettings, request
from provider_gateway.observability.gauges import GaugeSources


def settings(**table: object) -> TelemetrySettings:
    return TelemetrySettings.from_section(Section(table, "t.toml", "telemetry"))


@pytest.fixture(autouse=True)
def clean_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "OTEL_TRACES_EXPORTER",
        "OTEL_METRICS_EXPORTER",
        "OTEL_SDK_DISABLED",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ):
        monkeypatch.delenv(name, raising=False)


def test_defaults_log_requests_and_trace_nothing() -> None:
    chosen = settings()
    assert (chosen.enabled, chosen.request_log, chosen.traces, chosen.metrics) == (True, True, False, False)
    assert chosen.prometheus_port is None
    telemetry = Telemetry(chosen)
    assert telemetry.tracer is None
    assert telemetry.metrics is None
    assert len(telemetry.call_hooks()) == 1


def test_a_prometheus_port_turns_metrics_on() -> None:
    chosen = settings(prometheus_port=9464)
    assert chosen.metrics
    assert chosen.prometheus_port == 9464


def test_otel_environment_turns_signals_on_and_sdk_disabled_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "prometheus")
    chosen = settings()
    assert chosen.traces
    assert chosen.metrics
    assert chosen.prometheus_port == 9464
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert not settings().traces
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    off = settings()
    assert (off.traces, off.metrics, off.prometheus_port) == (False, False, None)


def test_bad_telemetry_keys_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"telemetry\.tracing: unknown key"):
        settings(tracing=True)
    with pytest.raises(ConfigError, match=r"telemetry\.prometheus_port"):
        settings(prometheus_port=70000)


@pytest.mark.parametrize(("protocol", "module"), [("grpc", "proto.grpc"), ("http/protobuf", "proto.http")])
def test_otlp_exporters_follow_the_protocol_variable(
    monkeypatch: pytest.MonkeyPatch, protocol: str, module: str
) -> None:
    from provider_gateway.observability.metrics import metric_exporter
    from provider_gateway.observability.tracing import span_exporter

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    spans, metrics = span_exporter("otlp"), metric_exporter("otlp")
    try:
        assert module in type(spans).__module__
        assert module in type(metrics).__module__
    finally:
        spans.shutdown()
        metrics.shutdown()
    with pytest.raises(ValueError, match="zipkin"):
        span_exporter("zipkin")


def test_console_exporters_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "console")
    telemetry = Telemetry(settings())
    assert telemetry.tracer is not None
    assert telemetry.metrics is not None
    assert telemetry.tracer_provider is not None
    telemetry.tracer_provider.shutdown()
    telemetry.metrics.shutdown()


@dataclass
class AttemptInfo:
    number: int
    deployment: object
    breaker_state: str


@dataclass
class Deployment:
    name: str
    api_key: str


def test_router_attempt_facts_are_read_defensively(monkeypatch: pytest.MonkeyPatch) -> None:
    var: contextvars.ContextVar[AttemptInfo | None] = contextvars.ContextVar("attempt", default=None)
    monkeypatch.setattr(request, "ROUTER_ATTEMPT", var)
    assert request.router_attempt(3) == request.AttemptFacts(3, "", "")
    var.set(AttemptInfo(2, Deployment("eastus", "sk-secret-value"), "half_open"))
    assert request.router_attempt(1) == request.AttemptFacts(2, "eastus", "half_open")
    monkeypatch.setattr(request, "ROUTER_ATTEMPT", None)
    assert request.router_attempt(5).number == 5


def test_a_broken_gauge_source_does_not_break_the_rest() -> None:
    gauges = GaugeSources()

    def broken() -> dict[str, str]:
        raise RuntimeError("boom")

    gauges.add_breaker_source(broken)
    gauges.add_breaker_source(lambda: {"a": "open"})
    gauges.add_connection_source(lambda: {"a": (1, 2)})
    gauges.add_connection_source(lambda: {"a": (3, 4)})
    assert gauges.breaker_states() == {"a": "open"}
    assert gauges.connections() == {"a": (4, 6)}


def test_the_default_server_imports_no_opentelemetry() -> None:
    """Tracing and metrics off: the mock-only server loads none of the OpenTelemetry packages."""
    code = (
        "import sys\n"
        "from provider_gateway.config import mock_only\n"
        "from provider_gateway.server.app import GatewayServer\n"
        "GatewayServer(mock_only())\n"
        "print(sorted({m.split('.')[0] for m in sys.modules if m.startswith(('opentelemetry', 'prometheus'))}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip() == "[]"


def test_providers_with_connection_stats_feed_the_connection_metric() -> None:
    from provider_gateway.providers.mock import MockProvider
    from provider_gateway.providers.registry import ProviderRegistry

    class Pooled(MockProvider):
        def connection_stats(self) -> tuple[int, int]:
            return (2, 9)

    telemetry = Telemetry(TelemetrySettings(request_log=False))
    telemetry.wrap_registry(ProviderRegistry([Pooled("pooled"), MockProvider("plain")], "pooled"))
    assert telemetry.gauges.connections() == {"pooled": (2, 9)}


def test_switched_on_without_exporter_variables_means_otlp(monkeypatch: pytest.MonkeyPatch) -> None:
    from provider_gateway.observability import metrics, tracing

    chosen: list[str] = []
    real_span, real_metric = tracing.span_exporter, metrics.metric_exporter
    monkeypatch.setattr(
        tracing, "span_exporter", lambda name: chosen.append(f"traces:{name}") or real_span("console")
    )
    monkeypatch.setattr(
        metrics, "metric_exporter", lambda name: chosen.append(f"metrics:{name}") or real_metric("console")
    )
    telemetry = Telemetry(settings(traces=True, metrics=True))
    assert chosen == ["traces:otlp", "metrics:otlp"]
    assert telemetry.tracer_provider is not None
    assert telemetry.metrics is not None
    telemetry.tracer_provider.shutdown()
    telemetry.metrics.shutdown()
    chosen.clear()
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    with_port = Telemetry(settings(traces=True, prometheus_port=0))
    assert chosen == []  # `none` is respected, and a Prometheus port needs no OTLP reader
    assert with_port.metrics is not None
    with_port.metrics.shutdown()


def test_log_lines_inside_a_request_carry_its_ids() -> None:
    from test_observability import captured_logs

    state = request.RequestState(rpc="Chat", request_id="req-7", trace_id="ab" * 16)
    token = request.CURRENT.set(state)
    try:
        with captured_logs() as output:
            logging.getLogger("provider_gateway.test").warning("upstream slow")
    finally:
        request.CURRENT.reset(token)
    line = json.loads(output.getvalue())
    assert (line["msg"], line["request_id"], line["trace_id"]) == ("upstream slow", "req-7", "ab" * 16)


def test_model_labels_are_capped() -> None:
    from provider_gateway.observability.metrics import MAX_MODEL_LABELS

    telemetry = Telemetry(TelemetrySettings(metrics=True, prometheus_port=0))
    metrics = telemetry.metrics
    assert metrics is not None
    labels = [metrics.model_label(f"made-up-{i}") for i in range(MAX_MODEL_LABELS + 5)]
    assert labels[:MAX_MODEL_LABELS] == [f"made-up-{i}" for i in range(MAX_MODEL_LABELS)]
    assert set(labels[MAX_MODEL_LABELS:]) == {"_other"}
    assert metrics.model_label("made-up-0") == "made-up-0"  # a known model keeps its label
    metrics.shutdown()
