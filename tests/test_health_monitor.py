"""The background health monitor: Watch sees a provider go down and come back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from conftest import run_gateway
from grpc_health.v1 import health_pb2, health_pb2_grpc

from provider_gateway.config import ConfigError, Section
from provider_gateway.domain import HealthStatus
from provider_gateway.observability.monitor import HealthMonitor, MonitorSettings
from provider_gateway.server.health import ProviderHealthBook

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
TWO_PROVIDERS = """
[health]
interval_s = 0.02
jitter = 0.2

[providers.a]
kind = "mock"

[providers.b]
kind = "mock"
"""


async def statuses(channel: grpc.aio.Channel, service: str) -> AsyncIterator[int]:
    call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=service))
    try:
        async for response in call:
            yield response.status
    finally:
        call.cancel()


async def next_status(stream: AsyncIterator[int]) -> int:
    async with asyncio.timeout(10):
        return await anext(stream)


async def check(channel: grpc.aio.Channel, service: str) -> int:
    response = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service))
    return int(response.status)


async def test_watch_sees_a_provider_go_down_and_come_back() -> None:
    async with run_gateway(TWO_PROVIDERS) as gw:
        watch = statuses(gw.channel, "provider/a")
        assert await next_status(watch) == SERVING
        gw.provider("a").healthy = False
        assert await next_status(watch) == NOT_SERVING
        # One provider can still serve: the server as a whole stays SERVING.
        assert await check(gw.channel, "") == SERVING
        assert await check(gw.channel, "provider_gateway.v1.ProviderService") == SERVING
        gw.provider("a").healthy = True
        assert await next_status(watch) == SERVING
        await watch.aclose()


async def test_overall_status_goes_down_only_when_no_provider_serves() -> None:
    async with run_gateway(TWO_PROVIDERS) as gw:
        overall = statuses(gw.channel, "")
        assert await next_status(overall) == SERVING
        gw.provider("a").healthy = False
        gw.provider("b").healthy = False
        assert await next_status(overall) == NOT_SERVING
        gw.provider("b").healthy = True
        assert await next_status(overall) == SERVING
        await overall.aclose()


async def test_an_open_breaker_makes_a_healthy_provider_not_serving() -> None:
    async with run_gateway(TWO_PROVIDERS) as gw:
        breakers = {"a": "closed"}
        gw.server.telemetry.gauges.add_breaker_source(lambda: breakers)
        watch = statuses(gw.channel, "provider/a")
        assert await next_status(watch) == SERVING
        breakers["a"] = "open"
        assert await next_status(watch) == NOT_SERVING
        assert gw.server.health.get("a").message == "circuit breaker open"
        breakers["a"] = "closed"
        assert await next_status(watch) == SERVING
        await watch.aclose()


class SlowProbe:
    """A provider whose health check blocks until released, counting concurrent probes."""

    name = "slow"

    def __init__(self) -> None:
        self.running = 0
        self.most_at_once = 0
        self.calls = 0
        self.release = asyncio.Event()  # never set: every probe hangs until the monitor's timeout
        self.third_call = asyncio.Event()

    async def health_check(self) -> HealthStatus:
        self.calls += 1
        if self.calls == 3:
            self.third_call.set()
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await self.release.wait()
        finally:
            self.running -= 1
        return HealthStatus(healthy=True)


async def test_probes_never_overlap_and_a_hung_probe_times_out() -> None:
    from grpc_health.v1._async import HealthServicer

    provider = SlowProbe()
    book = ProviderHealthBook(HealthServicer(), ["slow"])
    monitor = HealthMonitor([provider], book, MonitorSettings(interval_s=0.01, jitter=0.5, timeout_s=0.05))  # type: ignore[list-item]
    monitor.start()
    try:
        await asyncio.wait_for(provider.third_call.wait(), timeout=10)
    finally:
        await monitor.stop()
    assert provider.most_at_once == 1
    assert book.get("slow").message.startswith("health check timed out")


def test_health_settings_are_validated() -> None:
    assert MonitorSettings.from_section(Section({"interval_s": 5}, "t.toml", "health")).interval_s == 5
    with pytest.raises(ConfigError, match=r"health\.jitter"):
        MonitorSettings.from_section(Section({"jitter": 1.5}, "t.toml", "health"))
    with pytest.raises(ConfigError, match=r"health\.interval"):
        MonitorSettings.from_section(Section({"interval": 5}, "t.toml", "health"))
