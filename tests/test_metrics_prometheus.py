"""Metrics after load: the Prometheus endpoint shows request, attempt, token, overhead and state metrics."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import aiohttp
import grpc
import pytest
from test_observability import FAILOVER_CONFIG, observed_gateway, user

from provider_gateway.v1 import provider_service_pb2 as pb

DASHBOARD = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "provider-gateway.json"


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample whose labels include `labels`."""
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match and all(f'{k}="{v}"' in match.group(1) for k, v in labels.items()):
            return float(match.group(2))
    raise AssertionError(f"no sample {name} with {labels}")


async def scrape(port: int) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return await response.text()


async def test_prometheus_endpoint_shows_the_metrics_after_load() -> None:
    async with observed_gateway(FAILOVER_CONFIG, prometheus_port=0) as gw:
        telemetry = gw.running.server.telemetry
        telemetry.gauges.add_breaker_source(lambda: {"primary": "open", "backup": "closed"})
        telemetry.gauges.add_limiter_source(lambda: [({"provider": "backup", "limit": "rpm"}, 57.0)])
        telemetry.gauges.add_connection_source(lambda: {"backup": (2, 40)})
        stub = gw.running.stub
        request = pb.ChatRequest(model="primary/m", fallbacks=["backup/m"], messages=[user("hi")])
        for _ in range(3):
            async for _ in stub.ChatStream(request):
                pass
        await stub.Chat(pb.ChatRequest(model="backup/m", messages=[user("hi")]))
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Chat(pb.ChatRequest(model="backup/no-such-model", messages=[user("hi")]))
        assert telemetry.prometheus is not None
        # An aborted call's status reaches the client before the handler unwinds: scrape until it shows.
        text = ""
        for _ in range(100):
            text = await scrape(telemetry.prometheus.port)
            if 'status="NOT_FOUND"' in text:
                break
            await asyncio.sleep(0.05)

    ok = {"provider": "backup", "model": "m", "status": "OK"}
    assert sample(text, "provider_gateway_requests_total", rpc="ChatStream", **ok) == 3
    assert sample(text, "provider_gateway_requests_total", rpc="Chat", **ok) == 1
    # A client-chosen model name never becomes a label.
    assert (
        sample(text, "provider_gateway_requests_total", rpc="Chat", status="NOT_FOUND", model="_invalid") == 1
    )
    assert "no-such-model" not in text
    assert sample(text, "provider_gateway_request_duration_seconds_count", rpc="ChatStream", **ok) == 3
    assert sample(text, "provider_gateway_time_to_first_token_seconds_count", rpc="ChatStream") == 3
    assert (
        sample(text, "provider_gateway_gateway_overhead_seconds_count", rpc="ChatStream", provider="backup")
        == 3
    )
    assert sample(text, "provider_gateway_tokens_total", provider="backup", direction="output") == 4 * 5
    assert sample(text, "provider_gateway_attempts_total", provider="primary", outcome="UNAVAILABLE") == 3
    assert sample(text, "provider_gateway_attempts_total", provider="backup", outcome="ok") == 4
    assert sample(text, "provider_gateway_failovers_total", provider="backup") == 3
    assert sample(text, "provider_gateway_breaker_state", provider="primary") == 2
    assert sample(text, "provider_gateway_breaker_state", provider="backup") == 0
    assert sample(text, "provider_gateway_limiter_capacity", limit="rpm") == 57
    assert sample(text, "provider_gateway_http_connections_total", upstream="backup", state="reused") == 40
    assert sample(text, "provider_gateway_http_connections_total", upstream="backup", state="opened") == 2
    assert sample(text, "provider_gateway_provider_up", provider="backup") == 1
    genai = {"gen_ai_operation_name": "chat", "gen_ai_provider_name": "mock", "gen_ai_request_model": "m"}
    assert (
        sample(text, "gen_ai_client_operation_duration_seconds_count", error_type="UNAVAILABLE", **genai) == 3
    )
    assert (
        sample(text, "gen_ai_client_operation_duration_seconds_count", gen_ai_response_model="m", **genai)
        == 4
    )
    assert sample(text, "gen_ai_client_token_usage_count", gen_ai_token_type="output", **genai) == 4
    # Every streamed attempt has a first chunk (a unary Chat too, if the router serves it from a stream).
    assert sample(text, "gen_ai_client_operation_time_to_first_chunk_seconds_count", **genai) in (3, 4)


async def test_in_memory_reader_sees_request_metrics() -> None:
    async with observed_gateway(FAILOVER_CONFIG) as gw:
        await gw.running.stub.Chat(pb.ChatRequest(model="backup/m", messages=[user("hi")]))
        data = gw.reader.get_metrics_data()
    assert data is not None
    names = {m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert {
        "provider_gateway.requests",
        "gen_ai.client.operation.duration",
        "gen_ai.client.token.usage",
    } <= names
    assert data.resource_metrics[0].resource.attributes["service.name"] == "provider-gateway"


def dashboard_metric_names() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    return {name for expr in exprs for name in re.findall(r"\b((?:provider_gateway|gen_ai)_[a-z_]+)\{", expr)}


async def test_every_metric_on_the_dashboard_is_exported() -> None:
    async with observed_gateway(FAILOVER_CONFIG, prometheus_port=0) as gw:
        gauges = gw.running.server.telemetry.gauges
        gauges.add_breaker_source(lambda: {"backup": "closed"})
        gauges.add_limiter_source(lambda: [({"provider": "backup", "limit": "rpm"}, 1.0)])
        gauges.add_connection_source(lambda: {"backup": (1, 1)})
        request = pb.ChatRequest(model="primary/m", fallbacks=["backup/m"], messages=[user("hi")])
        async for _ in gw.running.stub.ChatStream(request):
            pass
        port = gw.running.server.telemetry.prometheus
        assert port is not None
        text = await scrape(port.port)
    exported = set(re.findall(r"^([a-z_]+)\{", text, re.MULTILINE))
    # The router on main retries only by failing over, so no same-provider retry is ever counted yet.
    names = dashboard_metric_names() - {"provider_gateway_retries_total"}
    assert len(names) >= 12
    assert names <= exported, names - exported


async def test_the_endpoint_answers_only_get_metrics() -> None:
    async with observed_gateway(FAILOVER_CONFIG, prometheus_port=0) as gw:
        endpoint = gw.running.server.telemetry.prometheus
        assert endpoint is not None
        async with aiohttp.ClientSession() as session:
            base = f"http://127.0.0.1:{endpoint.port}"
            async with session.get(f"{base}/") as response:
                assert response.status == 404
            async with session.post(f"{base}/metrics") as response:
                assert response.status == 405
            async with session.get(f"{base}/metrics?x=1") as response:
                assert response.status == 200
                assert "# TYPE" in await response.text()


def points(data: object, name: str) -> list[object]:
    metrics = [
        m
        for rm in data.resource_metrics  # type: ignore[attr-defined]
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == name
    ]
    return [p for m in metrics for p in m.data.data_points]


async def test_streams_in_flight_rpc_and_process_metrics() -> None:
    async with observed_gateway(FAILOVER_CONFIG) as gw:
        stream = gw.running.stub.ChatStream(pb.ChatRequest(model="backup/slow", messages=[user("hi")]))
        await stream.read()  # the stream is open and delivering
        during = gw.reader.get_metrics_data()
        while await stream.read() != grpc.aio.EOF:
            pass
        after = gw.reader.get_metrics_data()
    (open_now,) = [p.value for p in points(during, "provider_gateway.streams.active")]  # type: ignore[attr-defined]
    (closed,) = [p.value for p in points(after, "provider_gateway.streams.active")]  # type: ignore[attr-defined]
    assert (open_now, closed) == (1, 0)
    rpc = [p for p in points(after, "rpc.server.duration") if p.attributes["rpc.method"] == "ChatStream"]  # type: ignore[attr-defined]
    assert rpc[0].attributes["rpc.grpc.status_code"] == 0  # type: ignore[attr-defined]
    assert rpc[0].attributes["rpc.service"] == "provider_gateway.v1.ProviderService"  # type: ignore[attr-defined]
    assert rpc[0].count == 1  # type: ignore[attr-defined]
    (memory,) = [p.value for p in points(after, "process.memory.usage")]  # type: ignore[attr-defined]
    assert memory > 10 * 1024 * 1024  # a Python server with gRPC: tens of megabytes resident
    modes = {p.attributes["cpu.mode"]: p.value for p in points(after, "process.cpu.time")}  # type: ignore[attr-defined]
    assert modes["user"] > 0
    assert next(p.value for p in points(after, "process.thread.count")) >= 1  # type: ignore[attr-defined]
