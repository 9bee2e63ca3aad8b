"""Graceful shutdown of a real `provider-gateway serve` process on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from provider_gateway.server.shutdown_cut import SHUTDOWN_MESSAGE
from provider_gateway.v1 import provider_service_pb2 as pb
from provider_gateway.v1 import provider_service_pb2_grpc as pb_grpc

# 40 tokens at 25 ms: a stream of about one second, well inside the grace period.
CONFIG = """
[server]
grace_period_s = {grace}
drain_delay_s = {delay}

[providers.mock.models.slow]
tokens = 40
token_delay_ms = 25

[providers.mock.models.endless]
tokens = 100000
token_delay_ms = 10
"""


class Served:
    def __init__(self, process: asyncio.subprocess.Process, target: str) -> None:
        self.process = process
        self.target = target


@contextlib.asynccontextmanager
async def serve(tmp_path: Path, grace: float, delay: float = 0) -> AsyncIterator[Served]:
    config = tmp_path / "gateway.toml"
    config.write_text(CONFIG.format(grace=grace, delay=delay))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "provider_gateway.cli",
        "serve",
        "--config",
        str(config),
        "--port",
        "0",
        "--log-level",
        "warning",
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(30):
            line = (await process.stdout.readline()).decode()
        assert "listening on" in line, line
        yield Served(process, line.rsplit(" ", 1)[-1].strip())
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def rest_of(call: grpc.aio.UnaryStreamCall[pb.ChatRequest, pb.StreamEvent]) -> list[pb.StreamEvent]:
    events = []
    while (event := await call.read()) is not grpc.aio.EOF:
        events.append(event)
    return events


def chat(model: str) -> pb.ChatRequest:
    return pb.ChatRequest(
        model=model, messages=[pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text="hi")])]
    )


async def test_sigterm_drains_in_flight_stream_and_exits_zero(tmp_path: Path) -> None:
    async with serve(tmp_path, grace=20) as served, grpc.aio.insecure_channel(served.target) as channel:
        stub = pb_grpc.ProviderServiceStub(channel)
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=""), timeout=30
        )
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING

        stream = stub.ChatStream(chat("mock/slow"), timeout=30)
        first = await stream.read()
        assert first.WhichOneof("event") == "text_delta"

        served.process.send_signal(signal.SIGTERM)
        # Health flips first: the watcher is told NOT_SERVING, then its watch ends cleanly.
        async with asyncio.timeout(10):
            assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
            assert await watch.read() is grpc.aio.EOF

        # New calls are refused while the old stream is still being served.
        async with grpc.aio.insecure_channel(served.target) as fresh:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await pb_grpc.ProviderServiceStub(fresh).Chat(chat("mock/echo"), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE

        # The in-flight stream completes with all its tokens and a finish.
        rest = await rest_of(stream)
        assert rest[-1].WhichOneof("event") == "finish"
        texts = [e for e in [first, *rest] if e.WhichOneof("event") == "text_delta"]
        assert len(texts) == 40
        assert await stream.code() == grpc.StatusCode.OK

        # And the process exits 0 soon after, not at the end of the 20 s grace.
        async with asyncio.timeout(10):
            assert await served.process.wait() == 0


async def test_grace_period_cuts_streams_that_run_too_long(tmp_path: Path) -> None:
    async with serve(tmp_path, grace=0.5) as served, grpc.aio.insecure_channel(served.target) as channel:
        stream = pb_grpc.ProviderServiceStub(channel).ChatStream(chat("mock/endless"), timeout=60)
        assert (await stream.read()).WhichOneof("event") == "text_delta"
        served.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            with pytest.raises(grpc.aio.AioRpcError) as cut:
                await rest_of(stream)
        # Not a bare "Cancelling all calls": the client is told why, and that it may retry.
        assert cut.value.code() == grpc.StatusCode.UNAVAILABLE
        assert cut.value.details() == SHUTDOWN_MESSAGE
        async with asyncio.timeout(15):
            assert await served.process.wait() == 0


async def sigterm_until_not_serving(served: Served, channel: grpc.aio.Channel) -> None:
    """SIGTERM, and wait until a health watch reports the drain (NOT_SERVING)."""
    watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
    assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
    served.process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(10):
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING


async def test_drain_delay_keeps_taking_new_calls_while_reporting_not_serving(tmp_path: Path) -> None:
    async with (
        serve(tmp_path, grace=20, delay=1.5) as served,
        grpc.aio.insecure_channel(served.target) as channel,
    ):
        await sigterm_until_not_serving(served, channel)
        # Balancers are told to leave, and a call that still comes is served, not refused.
        checked = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=5
        )
        assert checked.status == health_pb2.HealthCheckResponse.NOT_SERVING
        answer = await pb_grpc.ProviderServiceStub(channel).Chat(chat("mock/echo"), timeout=5)
        assert answer.finish.reason == pb.FINISH_REASON_STOP
        # Then the server stops taking calls and, with nothing in flight, exits.
        async with asyncio.timeout(15):
            assert await served.process.wait() == 0


async def test_second_signal_ends_the_drain_delay_too(tmp_path: Path) -> None:
    async with (
        serve(tmp_path, grace=60, delay=60) as served,
        grpc.aio.insecure_channel(served.target) as channel,
    ):
        await sigterm_until_not_serving(served, channel)
        served.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):  # not the 60 s delay
            assert await served.process.wait() == 0


async def test_second_signal_stops_at_once(tmp_path: Path) -> None:
    async with serve(tmp_path, grace=60) as served, grpc.aio.insecure_channel(served.target) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=""), timeout=30
        )
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        stream = pb_grpc.ProviderServiceStub(channel).ChatStream(chat("mock/endless"), timeout=60)
        assert (await stream.read()).WhichOneof("event") == "text_delta"
        served.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):  # the drain has begun
            assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        served.process.send_signal(signal.SIGINT)
        async with asyncio.timeout(15):
            with pytest.raises(grpc.aio.AioRpcError) as cut:
                await rest_of(stream)
            assert await served.process.wait() == 0
        assert (cut.value.code(), cut.value.details()) == (grpc.StatusCode.UNAVAILABLE, SHUTDOWN_MESSAGE)


async def test_stop_in_process_ends_watches_and_waits_only_for_streams(gateway_factory: Any) -> None:
    """The same drain in-process: a watcher must not hold `stop` for the whole grace period."""
    config = CONFIG.format(grace=30, delay=0)
    async with gateway_factory(config) as gw:
        watch = health_pb2_grpc.HealthStub(gw.channel).Watch(
            health_pb2.HealthCheckRequest(service=""), timeout=30
        )
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        stream = gw.stub.ChatStream(chat("mock/slow"), timeout=30)
        assert (await stream.read()).WhichOneof("event") == "text_delta"
        stopping = asyncio.create_task(gw.server.stop())
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert await watch.read() is grpc.aio.EOF
        rest = await rest_of(stream)
        assert rest[-1].WhichOneof("event") == "finish"
        async with asyncio.timeout(10):  # far less than the 30 s grace
            await stopping


async def test_a_stop_cancelled_during_the_drain_delay_still_stops_the_server(gateway_factory: Any) -> None:
    async with gateway_factory(CONFIG.format(grace=30, delay=0)) as gw:
        health = health_pb2_grpc.HealthStub(gw.channel)
        stopping = asyncio.create_task(gw.server.stop(delay_s=60))
        async with asyncio.timeout(10):
            while (await health.Check(health_pb2.HealthCheckRequest(service=""))).status != (
                health_pb2.HealthCheckResponse.NOT_SERVING
            ):
                pass
        answer = await gw.stub.Chat(chat("mock/echo"), timeout=5)  # served during the delay
        assert answer.finish.reason == pb.FINISH_REASON_STOP
        stopping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stopping
        # Not left serving with its router and upstreams closed: gRPC is stopped too.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await gw.stub.Chat(chat("mock/echo"), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_short_drain_delay_is_logged_as_configured(
    gateway_factory: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The drain's log line showed a 0.04 s delay as "0.0 s": no delay, to whoever read it."""
    async with gateway_factory(CONFIG.format(grace=30, delay=0)) as gw:
        with caplog.at_level(logging.INFO, logger="provider_gateway.server"):
            await gw.server.stop(delay_s=0.04)
    assert "NOT_SERVING reported; still taking new calls for 0.04 s" in caplog.messages
