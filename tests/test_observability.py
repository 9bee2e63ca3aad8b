"""Observability end to end: spans, request logs and cancellation through the instrumented path.

Also holds `observed_gateway`, the helper the other observability test files share: a real server
on port 0 whose telemetry writes to in-memory exporters.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import tomllib
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, cast

import grpc
import pytest
from conftest import RunningGateway
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from provider_gateway import config as config_module
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.observability import Telemetry, TelemetrySettings, interceptor, logs
from provider_gateway.providers.mock import MockScript
from provider_gateway.server.app import GatewayServer
from provider_gateway.v1 import provider_service_pb2 as pb

FAILOVER_CONFIG = """
[providers.primary]
kind = "mock"
[providers.primary.models.m]
fault = "error_before_first_token"
fault_message = "primary is down"

[providers.backup]
kind = "mock"
[providers.backup.models.m]
tokens = 5
"""


class Observed:
    def __init__(self, running: RunningGateway, spans: InMemorySpanExporter, reader: InMemoryMetricReader):
        self.running, self.spans, self.reader = running, spans, reader

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())


@asynccontextmanager
async def observed_gateway(config_text: str = "", **settings: object) -> AsyncIterator[Observed]:
    """A gateway whose spans and metrics land in memory (tracing and metrics on)."""
    config = config_module.parse(tomllib.loads(config_text), "test.toml")
    exporter = InMemorySpanExporter()
    reader = InMemoryMetricReader()
    telemetry = Telemetry(
        TelemetrySettings(traces=True, metrics=True, **settings),  # type: ignore[arg-type]
        span_processors=[SimpleSpanProcessor(exporter)],
        metric_readers=[reader],
    )
    server = GatewayServer(config, telemetry)
    await server.start("127.0.0.1", 0)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield Observed(RunningGateway(server, channel), exporter, reader)
    finally:
        await channel.close()
        await server.stop(0)


@contextmanager
def captured_logs(fmt: str = "json") -> Iterator[io.StringIO]:
    """Everything logged, formatted and redacted as the real server does it."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    logs.configure("info", fmt, stream)
    try:
        yield stream
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])


async def next_span(
    gw: Observed, wanted: Callable[[ReadableSpan], bool], within_s: float = 10
) -> ReadableSpan:
    """The first finished span that `wanted` accepts, waiting (bounded) for the server to end it."""
    async with asyncio.timeout(within_s):
        while True:
            found = [s for s in gw.finished() if wanted(s)]
            if found:
                return found[0]
            await asyncio.sleep(0.01)


def user(text: str) -> pb.Message:
    return pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text=text)])


TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"


async def test_failover_stream_shows_server_span_with_one_child_per_attempt() -> None:
    async with observed_gateway(FAILOVER_CONFIG) as gw:
        request = pb.ChatRequest(model="primary/m", fallbacks=["backup/m"], messages=[user("hi")])
        metadata = (("traceparent", f"00-{TRACE_ID}-{PARENT_SPAN}-01"),)
        events = [e async for e in gw.running.stub.ChatStream(request, metadata=metadata)]
        assert events[-1].finish.provider == "backup"
        spans = gw.finished()

    server = next(s for s in spans if s.name == "provider_gateway.v1.ProviderService/ChatStream")
    attempts = sorted((s for s in spans if s.name == "chat m"), key=lambda s: s.start_time or 0)
    # The caller's traceparent is the parent: same trace id, its span id as our parent.
    assert format(server.context.trace_id, "032x") == TRACE_ID
    assert server.parent is not None
    assert format(server.parent.span_id, "016x") == PARENT_SPAN
    assert server.attributes["rpc.method"] == "ChatStream"
    assert server.attributes["rpc.grpc.status_code"] == 0
    assert server.attributes["provider_gateway.attempts"] == 2
    assert server.attributes["provider_gateway.failovers"] == 1
    assert server.attributes["provider_gateway.provider"] == "backup"
    assert server.attributes["provider_gateway.gateway_overhead_us"] >= 0
    assert server.attributes["provider_gateway.time_to_first_token_us"] > 0

    assert len(attempts) == 2
    for attempt in attempts:
        assert attempt.parent is not None
        assert attempt.parent.span_id == server.context.span_id
        assert attempt.context.trace_id == server.context.trace_id
        assert attempt.attributes["gen_ai.operation.name"] == "chat"
        assert attempt.attributes["gen_ai.request.model"] == "m"
        assert attempt.attributes["gen_ai.provider.name"] == "mock"
    failed, answered = attempts
    assert failed.attributes["provider_gateway.provider"] == "primary"
    assert failed.attributes["provider_gateway.attempt.number"] == 1
    assert failed.attributes["provider_gateway.attempt.outcome"] == "UNAVAILABLE"
    assert failed.attributes["error.type"] == "UNAVAILABLE"
    assert not failed.status.is_ok
    assert answered.attributes["provider_gateway.provider"] == "backup"
    assert answered.attributes["provider_gateway.attempt.number"] == 2
    assert answered.attributes["provider_gateway.attempt.failover"] is True
    assert answered.attributes["provider_gateway.attempt.outcome"] == "ok"
    assert answered.attributes["gen_ai.response.model"] == "m"
    assert answered.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert answered.attributes["gen_ai.usage.output_tokens"] == 5
    assert answered.attributes["gen_ai.usage.input_tokens"] > 0
    assert answered.attributes["provider_gateway.time_to_first_chunk_us"] >= 0
    assert [e.name for e in answered.events] == ["gen_ai.first_chunk"]


async def test_unary_chat_failover_is_traced_too() -> None:
    async with observed_gateway(FAILOVER_CONFIG) as gw:
        request = pb.ChatRequest(model="primary/m", fallbacks=["backup/m"], messages=[user("hi")])
        response = await gw.running.stub.Chat(request)
        assert response.finish.provider == "backup"
        spans = gw.finished()
    server = next(s for s in spans if s.name.endswith("/Chat"))
    children = [s for s in spans if s.parent is not None and s.parent.span_id == server.context.span_id]
    assert [c.attributes["provider_gateway.attempt.outcome"] for c in children] == ["UNAVAILABLE", "ok"]
    assert format(server.context.trace_id, "032x") != TRACE_ID  # no traceparent: a new trace


async def test_failed_rpc_marks_the_server_span_with_its_status() -> None:
    async with observed_gateway(FAILOVER_CONFIG) as gw:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await gw.running.stub.Chat(pb.ChatRequest(model="primary/m", messages=[user("hi")]))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        # The status reaches the client before the aborted handler unwinds and ends its span.
        server = await next_span(gw, lambda s: s.name.endswith("/Chat"))
    assert server.attributes["rpc.grpc.status_code"] == grpc.StatusCode.UNAVAILABLE.value[0]
    assert not server.status.is_ok


async def test_a_refused_callers_model_name_is_not_copied_whole_into_the_span() -> None:
    """The server span begins before the key and the request are checked: a caller without a key
    sent a 1 MB model name, and it became a 1M-character attribute (an OTLP batch holding it is over
    a collector's 4 MB limit, and all of its spans are lost). Cut to a name's 256 characters, marked."""
    from provider_gateway.server.auth import hash_key

    key = "alice-key-0123456789abcdefghijklmnop"
    config = f'{FAILOVER_CONFIG}\n[[auth.keys]]\nname = "alice"\nsha256 = "{hash_key(key)}"\n'
    async with observed_gateway(config) as gw:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await gw.running.stub.Chat(
                pb.ChatRequest(model="primary/" + "x" * 1_000_000, messages=[user("hi")])
            )
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        server = await next_span(gw, lambda s: s.name.endswith("/Chat"))
    attributes = dict(server.attributes or {})
    assert max(len(str(value)) for value in attributes.values()) < 300, attributes.keys()
    assert (
        attributes["provider_gateway.requested_model"]
        == "primary/" + "x" * 248 + "...(cut: 1000008 characters)"
    )


async def test_health_service_is_not_traced() -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    async with observed_gateway(FAILOVER_CONFIG) as gw:
        stub = health_pb2_grpc.HealthStub(gw.running.channel)
        await stub.Check(health_pb2.HealthCheckRequest(service=""))
        assert gw.finished() == []


async def test_one_json_log_line_per_request_with_ids_status_latency_and_tokens() -> None:
    with captured_logs() as output:
        async with observed_gateway(FAILOVER_CONFIG) as gw:
            request = pb.ChatRequest(model="primary/m", fallbacks=["backup/m"], messages=[user("hi")])
            metadata = (("traceparent", f"00-{TRACE_ID}-{PARENT_SPAN}-01"), ("x-request-id", "req-42"))
            async for _ in gw.running.stub.ChatStream(request, metadata=metadata):
                pass
    lines = [json.loads(line) for line in output.getvalue().splitlines()]
    access = [line for line in lines if line["logger"] == logs.ACCESS_LOGGER]
    assert len(access) == 1
    line = access[0]
    assert line["level"] == "INFO"
    assert line["request_id"] == "req-42"
    assert line["trace_id"] == TRACE_ID
    assert (line["rpc"], line["status"], line["provider"], line["model"]) == (
        "ChatStream",
        "OK",
        "backup",
        "m",
    )
    assert line["output_tokens"] == 5
    assert line["input_tokens"] > 0
    assert line["latency_ms"] > 0
    assert line["attempts"] == 2


async def test_a_request_without_a_usable_id_gets_one_shared_by_all_its_log_lines(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The id is made when a line first needs it: the warning logged while the first call runs and
    its access line carry the same fresh id, and the next request gets another."""
    import socket

    monkeypatch.setenv("PG_X_KEY", "k")
    with socket.socket() as probe:  # a port nothing listens on: the upstream refuses, the gateway warns
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = (
        f'[providers.o]\nkind = "openai"\nbase_url = "http://127.0.0.1:{port}/v1"\napi_key_env = "PG_X_KEY"\n'
    )
    with captured_logs() as output:
        async with observed_gateway(config) as gw:
            request = pb.ChatRequest(model="o/gpt-4o", messages=[user("hi")])
            for metadata in ((("x-request-id", "not a sane id!"),), ()):
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await gw.running.stub.Chat(request, metadata=metadata)
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    lines = [json.loads(line) for line in output.getvalue().splitlines()]
    warnings = [line["request_id"] for line in lines if line["logger"] == "provider_gateway.rpc"]
    access = [line["request_id"] for line in lines if line["logger"] == logs.ACCESS_LOGGER]
    assert len(access) == len(set(access)) == 2
    assert warnings[0] == access[0]
    assert all(len(request_id) == 32 and int(request_id, 16) >= 0 for request_id in access)


async def test_text_logs_on_a_terminal_style_format() -> None:
    with captured_logs("text") as output:
        logging.getLogger("provider_gateway.test").info("hello %s", "world", extra={"request_id": "r1"})
    assert output.getvalue().rstrip().endswith("INFO provider_gateway.test: hello world request_id=r1")


async def test_client_cancel_still_reaches_the_provider_through_the_wrappers() -> None:
    async with observed_gateway("[providers.mock]\nkind = 'mock'") as gw:
        mock = gw.running.provider("mock")
        call = gw.running.stub.ChatStream(pb.ChatRequest(model="mock/slow", messages=[user("hi")]))
        await call.read()  # the first token has arrived: the upstream is mid-stream
        call.cancel()
        await asyncio.wait_for(mock.stats.cancelled_event.wait(), timeout=10)
        # The attempt span ends as cancelled once the servicer unwinds.
        attempt = await next_span(gw, lambda s: s.name == "chat slow")
    assert attempt.attributes["provider_gateway.attempt.outcome"] == "CANCELLED"


async def test_disabled_telemetry_installs_nothing() -> None:
    telemetry = Telemetry(TelemetrySettings(enabled=False))
    assert telemetry.call_hooks() == []
    assert not telemetry.active
    config = config_module.mock_only()
    server = GatewayServer(config, telemetry)
    assert server.router.registry is server.registry


async def test_embeddings_are_an_attempt_span_with_usage() -> None:
    async with observed_gateway("[providers.mock]\nkind = 'mock'") as gw:
        response = await gw.running.stub.Embed(pb.EmbedRequest(model="mock/embed", inputs=["a b c", "d"]))
        assert len(response.embeddings) == 2
        spans = gw.finished()
    attempt = next(s for s in spans if s.name == "embeddings embed")
    assert attempt.attributes["gen_ai.operation.name"] == "embeddings"
    assert attempt.attributes["gen_ai.usage.input_tokens"] == response.usage.input_tokens
    server = next(s for s in spans if s.name.endswith("/Embed"))
    assert attempt.parent is not None
    assert attempt.parent.span_id == server.context.span_id


class CancelledAt:
    """A call's context as the telemetry reads it when the call is cancelled, `remaining` seconds
    before the server's copy of the deadline (None: no deadline)."""

    def __init__(self, remaining: float | None) -> None:
        self.remaining = remaining

    def time_remaining(self) -> float | None:
        return self.remaining


@pytest.mark.parametrize(
    ("remaining", "status"),
    [
        (None, "CANCELLED"),
        (5.0, "CANCELLED"),
        (0.01, "DEADLINE_EXCEEDED"),
        (0.0, "DEADLINE_EXCEEDED"),
        (-0.2, "DEADLINE_EXCEEDED"),
    ],
)
def test_a_cancel_that_races_the_deadline_is_the_deadlines(remaining: float | None, status: str) -> None:
    """The client cancels when its deadline passes, a hair before the server's copy of it passes
    (that copy starts when the request is read): such a cancel is logged as the deadline, one well
    before it as the client's cancel."""
    context = cast(grpc.aio.ServicerContext[Any, Any], CancelledAt(remaining))
    assert interceptor._status(context, asyncio.CancelledError()) == status


async def test_a_passed_deadline_is_logged_as_such() -> None:
    with captured_logs() as output:
        async with observed_gateway("[providers.mock]\nkind = 'mock'") as gw:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                async for _ in gw.running.stub.ChatStream(
                    pb.ChatRequest(model="mock/slow", messages=[user("hi")]), timeout=0.1
                ):
                    pass
            assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            server = await next_span(gw, lambda s: s.name.endswith("/ChatStream"))
    assert server.attributes["rpc.grpc.status_code"] == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
    assert '"status":"DEADLINE_EXCEEDED"' in output.getvalue()


# The primary asks for a 10 s pause (429 with Retry-After), so after the backup's first failure the
# router retries the backup rather than waiting on the primary.
RETRY_CONFIG = """
[routing]
retries = 2
backoff_base_ms = 1
backoff_max_ms = 2

[providers.primary]
kind = "mock"
[providers.primary.models.m]
fault = "rate_limit"
retry_after_ms = 10000

[providers.backup]
kind = "mock"
[providers.backup.models.m]
tokens = 5
"""


async def test_retry_then_failover_shows_every_attempt_in_order() -> None:
    async with observed_gateway(RETRY_CONFIG) as gw:
        backup = gw.running.provider("backup")
        busy = GatewayError(ErrorKind.UNAVAILABLE, "backup is busy", provider="backup")
        backup.push(MockScript(error=busy))  # the backup's first attempt fails, a later one answers
        request = pb.ChatRequest(model="primary/m", fallbacks=["backup/m"], messages=[user("hi")])
        events = [e async for e in gw.running.stub.ChatStream(request)]
        assert events[-1].finish.provider == "backup"
        spans = gw.finished()
    server = next(s for s in spans if s.name.endswith("/ChatStream"))
    attempts = sorted((s for s in spans if s.name == "chat m"), key=lambda s: s.start_time or 0)
    numbers = [a.attributes["provider_gateway.attempt.number"] for a in attempts]
    assert numbers == list(range(1, len(attempts) + 1))
    outcomes = [a.attributes["provider_gateway.attempt.outcome"] for a in attempts]
    assert outcomes == ["RESOURCE_EXHAUSTED", "UNAVAILABLE", "ok"]
    assert [a.attributes["provider_gateway.provider"] for a in attempts] == ["primary", "backup", "backup"]
    assert attempts[-1].attributes["provider_gateway.attempt.retry"] is True
    assert server.attributes["provider_gateway.retries"] == 1
    assert server.attributes["provider_gateway.failovers"] == 1
    assert all(a.attributes["provider_gateway.breaker.state"] for a in attempts)


async def test_the_cli_server_logs_json_lines_with_a_request_line() -> None:
    import os
    import signal
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "provider_gateway.cli", "serve", "--port", "0", "--log-format", "json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        async with asyncio.timeout(30):
            banner = (await process.stdout.readline()).decode()
        port = int(banner.rsplit(":", 1)[1])
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            from provider_gateway.v1 import provider_service_pb2_grpc as pb_grpc

            stub = pb_grpc.ProviderServiceStub(channel)
            await stub.Chat(pb.ChatRequest(model="mock/echo", messages=[user("hi")]), timeout=10)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    lines = [json.loads(line) for line in stderr.decode().splitlines()]
    access = [line for line in lines if line["logger"] == logs.ACCESS_LOGGER]
    assert len(access) == 1
    assert (access[0]["rpc"], access[0]["status"], access[0]["provider"]) == ("Chat", "OK", "mock")
    assert any("serving" in line["msg"] for line in lines)


async def test_upstream_spans_carry_the_server_address_and_one_model_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An HTTP provider's attempt span says where it went (server.address, server.port), and the
    server span names the model as the attempt does, with what the client wrote kept apart."""
    import orjson

    from provider_gateway.fakes import FakeUpstream, Reply

    monkeypatch.setenv("PG_X_KEY", "k")
    chunk = {
        "id": "c",
        "model": "gpt-4o",
        "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}],
    }
    body = b"data: " + orjson.dumps(chunk) + b"\n\ndata: [DONE]\n\n"
    async with FakeUpstream() as fake:
        fake.script("/v1/chat/completions", Reply(chunks=[body], content_type="text/event-stream"))
        config = (
            f'[providers.o]\nkind = "openai"\nbase_url = "{fake.url}/v1"\napi_key_env = "PG_X_KEY"\n'
            '[aliases]\nquick = "o/gpt-4o"\n'
        )
        async with observed_gateway(config) as gw:
            request = pb.ChatRequest(model="quick", messages=[user("hi")])
            [e async for e in gw.running.stub.ChatStream(request)]
            spans = gw.finished()
    attempt = next(s for s in spans if s.name == "chat gpt-4o")
    server = next(s for s in spans if s.name == "provider_gateway.v1.ProviderService/ChatStream")
    assert (attempt.attributes["server.address"], attempt.attributes["server.port"]) == (
        "127.0.0.1",
        fake.port,
    )
    assert server.attributes["gen_ai.request.model"] == attempt.attributes["gen_ai.request.model"] == "gpt-4o"
    assert server.attributes["provider_gateway.requested_model"] == "quick"


async def test_request_tags_reach_the_access_log_and_the_span_but_no_metric() -> None:
    """ChatRequest.metadata is documented as tags for logs and traces: an operator finds a team's
    calls by them. Tags are the client's free text, so no metric label carries them."""
    tags = {"team": "zeta-7731", "ticket": "ops-42"}
    with captured_logs() as output:
        async with observed_gateway('[providers.mock]\nkind = "mock"\n') as gw:
            stub = gw.running.stub
            await stub.Chat(pb.ChatRequest(model="mock/echo", messages=[user("hi")], metadata=tags))
            async for _ in stub.ChatStream(
                pb.ChatRequest(model="mock/echo", messages=[user("hi")], metadata=tags)
            ):
                pass
            too_many = {f"k{i}": "zeta-7731" for i in range(65)}  # refused: its tags were never checked
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.Chat(pb.ChatRequest(model="mock/echo", messages=[user("hi")], metadata=too_many))
            data = gw.reader.get_metrics_data()
            await gw.running.server.stop(0)
            spans = [s for s in gw.finished() if s.kind is SpanKind.SERVER]
    access = [json.loads(line) for line in output.getvalue().splitlines() if logs.ACCESS_LOGGER in line]
    assert [line["metadata"] for line in access] == [tags, tags, None]
    prefix = interceptor.TAG_ATTRIBUTE
    assert [
        {k[len(prefix) :]: v for k, v in (s.attributes or {}).items() if k.startswith(prefix)} for s in spans
    ] == [
        tags,
        tags,
        {},
    ]
    labels = [
        dict(p.attributes or {})
        for rm in data.resource_metrics  # type: ignore[union-attr]
        for sm in rm.scope_metrics
        for m in sm.metrics
        for p in m.data.data_points
    ]
    assert labels
    assert "zeta-7731" not in json.dumps(labels, default=str)
