"""Counters summed in dicts (observability/sums.py) export what the SDK's synchronous instruments would.

The gateway serves a mix of calls (streams, unary, failovers, retries, a failure, a priced model, a
stream still open); every `add` it makes is recorded on the way, then replayed onto synchronous
Counter / UpDownCounter instruments of a reference MeterProvider built here with the names, units,
descriptions and labels the gateway has always exported. Both must give the same Prometheus text
and the same in-memory data points.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import grpc
import pytest
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricsData
from prometheus_client import CollectorRegistry, generate_latest
from test_metrics_prometheus import sample, scrape
from test_observability import observed_gateway, user

from provider_gateway.observability.sums import Sums
from provider_gateway.observability.tracing import INSTRUMENTATION
from provider_gateway.v1 import provider_service_pb2 as pb

# What the gateway exported with synchronous instruments: name -> (unit, description, labels, monotonic).
REFERENCE = {
    "provider_gateway.requests": (
        "{request}",
        "RPCs served, by rpc, provider, model and status",
        ("rpc", "provider", "model", "status"),
        True,
    ),
    "provider_gateway.cost": (
        "{usd_micro}",
        "What requests cost by the price table, in micro-USD",
        ("provider", "model", "key"),
        True,
    ),
    "provider_gateway.tokens": (
        "{token}",
        "Tokens in and out, by provider, model and direction",
        ("provider", "model", "direction"),
        True,
    ),
    "provider_gateway.attempts": (
        "{attempt}",
        "Upstream attempts, by provider, model and outcome",
        ("provider", "model", "outcome"),
        True,
    ),
    "provider_gateway.retries": (
        "{attempt}",
        "Attempts that retried the previous provider",
        ("provider",),
        True,
    ),
    "provider_gateway.failovers": (
        "{attempt}",
        "Attempts that moved to another provider",
        ("provider",),
        True,
    ),
    "provider_gateway.streams.active": ("{stream}", "Streaming RPCs in flight, by rpc", ("rpc",), False),
}

CONFIG = """
[providers.primary]
kind = "mock"
[providers.primary.models.m]
fault = "error_before_first_token"

[providers.backup]
kind = "mock"
[providers.backup.models.m]
tokens = 5
[providers.backup.models.priced]
tokens = 7
[providers.backup.models.stuck]
fault = "hang"

[prices.mock."priced"]
input = 1.0
output = 2.0
"""


def reference_export(calls: list[tuple[str, int, tuple[str, ...]]]) -> tuple[str, MetricsData]:
    """The same adds through synchronous instruments: their Prometheus text and data points."""
    registry = CollectorRegistry(auto_describe=True)
    memory = InMemoryMetricReader()
    provider = MeterProvider(
        metric_readers=[PrometheusMetricReader(disable_target_info=True, registry=registry), memory]
    )
    meter = provider.get_meter(INSTRUMENTATION)  # the otel_scope_name label
    instruments: dict[str, Any] = {
        name: (meter.create_counter if monotonic else meter.create_up_down_counter)(name, unit, description)
        for name, (unit, description, _, monotonic) in REFERENCE.items()
    }
    for name, amount, values in calls:
        instruments[name].add(amount, dict(zip(REFERENCE[name][2], values, strict=True)))
    text = generate_latest(registry).decode()
    data = memory.get_metrics_data()
    provider.shutdown()
    assert data is not None
    return text, data


def families(text: str) -> dict[str, list[str]]:
    """Each counter's Prometheus lines (HELP, TYPE, samples) in the order served. (The order of
    the families themselves is the SDK's order of first use, which no scraper reads.)"""
    names = "|".join(re.escape(n.replace(".", "_")) for n in REFERENCE)
    family = re.compile(rf"(# (HELP|TYPE) )?({names})(_total)?[ {{]")
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if match := family.match(line):
            found.setdefault(match.group(3), []).append(line)
    return found


def sums(data: MetricsData) -> dict[str, tuple[Any, ...]]:
    """Each counter's metadata, type and points (attributes -> value), timestamps aside."""
    found = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name in REFERENCE:
                    d: Any = metric.data
                    points = sorted((tuple(sorted(p.attributes.items())), p.value) for p in d.data_points)
                    found[metric.name] = (
                        metric.unit,
                        metric.description,
                        type(d).__name__,
                        d.is_monotonic,
                        d.aggregation_temporality,
                        points,
                    )
    return found


async def test_summed_counters_export_what_synchronous_instruments_would(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str, int, tuple[str, ...]]] = []
    add = Sums.add
    settled = asyncio.Event()  # the six calls below counted, the stuck stream open

    def recorded(self: Sums, amount: int, *values: str) -> None:
        calls.append((self._name, amount, values))
        add(self, amount, *values)
        answered = sum(1 for c in calls if c[0] == "provider_gateway.requests")
        streaming = sum(c[1] for c in calls if c[0] == "provider_gateway.streams.active")
        if (answered, streaming) == (6, 1):
            settled.set()

    monkeypatch.setattr(Sums, "add", recorded)
    async with observed_gateway(CONFIG, prometheus_port=0) as gw:
        stub, telemetry = gw.running.stub, gw.running.server.telemetry
        for model in ("primary/m", "backup/m", "backup/priced"):
            async for _ in stub.ChatStream(
                pb.ChatRequest(model=model, fallbacks=["backup/m"], messages=[user("hi")])
            ):
                pass
        await stub.Chat(pb.ChatRequest(model="backup/priced", messages=[user("hello there")]))
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await stub.Chat(pb.ChatRequest(model="primary/m", messages=[user("hi")]))  # retried, then fails
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Chat(pb.ChatRequest(model="backup/no-such-model", messages=[user("hi")]))
        stuck = stub.ChatStream(pb.ChatRequest(model="backup/stuck", messages=[user("hi")]))
        # Every call above counted (an aborted call's status reaches the client before the handler
        # unwinds) and the stuck stream open: then both exports are read with no add in between.
        await asyncio.wait_for(settled.wait(), 10)
        made = list(calls)
        assert telemetry.prometheus is not None
        served_text = await scrape(telemetry.prometheus.port)
        served_data = gw.reader.get_metrics_data()
        assert calls == made
        stuck.cancel()

    reference_text, reference_data = reference_export(made)
    assert families(served_text) == families(reference_text)
    assert sums(served_data) == sums(reference_data)
    # What the comparison covered: every counter, with the values users see.
    assert set(sums(served_data)) == set(REFERENCE)
    assert sample(served_text, "provider_gateway_streams_active", rpc="ChatStream") == 1
    assert sample(served_text, "provider_gateway_retries_total", provider="primary") == 2
    assert sample(served_text, "provider_gateway_failovers_total", provider="backup") == 1
    assert sample(served_text, "provider_gateway_cost_total", model="priced", key="_none") > 0
    assert sample(served_text, "provider_gateway_tokens_total", model="priced", direction="output") == 2 * 7
