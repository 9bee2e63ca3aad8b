"""OTEL_* variables alone send the gateway's spans and metrics over OTLP/HTTP to a collector."""

from __future__ import annotations

import pytest
from conftest import run_gateway
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from provider_gateway.fakes import FakeUpstream, Reply
from provider_gateway.v1 import provider_service_pb2 as pb


async def test_otlp_http_export_configured_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    async with FakeUpstream() as collector:
        ok = Reply(body=b"", content_type="application/x-protobuf")
        collector.on("POST", "/v1/traces", lambda request: ok)
        collector.on("POST", "/v1/metrics", lambda request: ok)
        monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
        monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "gateway-under-test")
        async with run_gateway() as gateway:  # no [telemetry] table: the environment decides
            request = pb.ChatRequest(
                model="mock/echo",
                messages=[pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text="hi")])],
            )
            async for _ in gateway.stub.ChatStream(request):
                pass
        # Stopping the server flushed both exporters.
        traces = [r for r in collector.requests if r.path == "/v1/traces"]
        metrics = [r for r in collector.requests if r.path == "/v1/metrics"]
    assert traces
    assert metrics
    spans = []
    for recorded in traces:
        export = ExportTraceServiceRequest.FromString(recorded.body)
        for resource_spans in export.resource_spans:
            service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}[
                "service.name"
            ]
            assert service == "gateway-under-test"
            spans += [s.name for scope in resource_spans.scope_spans for s in scope.spans]
    assert sorted(spans) == ["chat echo", "provider_gateway.v1.ProviderService/ChatStream"]
    names = {
        m.name
        for recorded in metrics
        for rm in ExportMetricsServiceRequest.FromString(recorded.body).resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    assert {"provider_gateway.requests", "gen_ai.client.operation.duration"} <= names
