"""Exemplars: histogram points link to the sampled trace they were recorded in when tracing is on;
with tracing off none are sampled (the filter is off), unless OTEL_METRICS_EXEMPLAR_FILTER asks."""

from __future__ import annotations

import tomllib
from typing import Any

import grpc
import pytest
from conftest import RunningGateway
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from test_metrics_prometheus import points
from test_observability import FAILOVER_CONFIG, observed_gateway, user

from provider_gateway import config as config_module
from provider_gateway.observability import Telemetry, TelemetrySettings
from provider_gateway.server.app import GatewayServer
from provider_gateway.v1 import provider_service_pb2 as pb

REQUEST = pb.ChatRequest(model="backup/m", messages=[user("hi")])


async def untraced_durations() -> list[Any]:
    """`rpc.server.duration` points after one call to a gateway with metrics on and tracing off."""
    reader = InMemoryMetricReader()
    config = config_module.parse(tomllib.loads(FAILOVER_CONFIG), "test.toml")
    server = GatewayServer(config, Telemetry(TelemetrySettings(metrics=True), metric_readers=[reader]))
    await server.start("127.0.0.1", 0)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        await RunningGateway(server, channel).stub.Chat(REQUEST)
        return points(reader.get_metrics_data(), "rpc.server.duration")
    finally:
        await channel.close()
        await server.stop(0)


async def test_traced_histograms_carry_the_trace_as_exemplar() -> None:
    async with observed_gateway(FAILOVER_CONFIG) as gw:
        await gw.running.stub.Chat(REQUEST)
        (point,) = points(gw.reader.get_metrics_data(), "rpc.server.duration")
        (server_span,) = [s for s in gw.finished() if s.name.endswith("/Chat")]
    (exemplar,) = point.exemplars  # type: ignore[attr-defined]
    assert server_span.context is not None
    assert exemplar.trace_id == server_span.context.trace_id


async def test_untraced_histograms_sample_no_exemplar() -> None:
    (point,) = await untraced_durations()
    assert point.count == 1
    assert point.exemplars == []


async def test_the_exemplar_filter_variable_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_METRICS_EXEMPLAR_FILTER", "always_on")
    (point,) = await untraced_durations()
    (exemplar,) = point.exemplars
    assert exemplar.trace_id is None  # sampled with no trace to link
    assert exemplar.value == point.sum
