"""The Python client package: async and sync clients against a real server, and against
grpc_testing channels where what goes on the wire is best checked without a network."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import grpc_testing
import pytest
from rpc_util import HANG_DEADLINE_S, wait_for

from provider_gateway_client import (
    AttemptReport,
    DeadlineExceededError,
    Finished,
    GatewayClient,
    RateLimitError,
    Reasoning,
    SyncGatewayClient,
    Text,
    ToolCallArguments,
    ToolCallFinished,
    ToolCallStarted,
    UsageReport,
    message,
    pb,
    retry_after,
    text_of,
)

FAULTS = """
[providers.mock.models.stuck]
fault = "hang"
[providers.mock.models.limited]
fault = "rate_limit"
retry_after_ms = 700
[providers.mock.models.dribble]
tokens = 200
token_delay_ms = 100
"""
WEATHER = pb.Tool(name="get_weather")


async def test_three_lines_async(gateway) -> None:
    async with GatewayClient(gateway.target) as client:
        answer = "".join([piece async for piece in client.stream_text("mock/echo", "Hello")])
    assert answer.startswith("Mock answer: Hello")


async def test_async_stream_yields_typed_events(gateway) -> None:
    async with GatewayClient(gateway.target) as client:
        events = [e async for e in client.chat_stream("mock/reasoner", "Why", max_tokens=3)]
        tools = [e async for e in client.chat_stream("mock/tools", "Paris?", tools=[WEATHER])]
    assert isinstance(events[0], Reasoning)
    assert "".join(e.text for e in events if isinstance(e, Reasoning)).startswith("Thinking")
    kinds = [type(e) for e in events]
    assert [k for i, k in enumerate(kinds) if not i or kinds[i - 1] is not k] == [
        Reasoning, Text, UsageReport, Finished
    ]  # fmt: skip
    assert text_of(events) == "Mock answer: Why"
    usage, finish = events[-2], events[-1]
    assert isinstance(usage, UsageReport)
    assert (usage.output_tokens, usage.reasoning_tokens) == (9, 6)
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert isinstance(finish, Finished)
    assert (finish.reason, finish.provider, finish.model) == ("length", "mock", "reasoner")
    assert finish.attempts == (("mock", "reasoner", "ok"),)
    assert finish.total_us >= finish.time_to_first_token_us > 0
    started, *arguments, ended = [e for e in tools if type(e).__name__.startswith("ToolCall")]
    assert started == ToolCallStarted(0, "call_mock_0", "get_weather")
    assert all(isinstance(a, ToolCallArguments) for a in arguments)
    assert isinstance(ended, ToolCallFinished)
    assert "".join(a.delta for a in arguments) == ended.arguments_json
    assert ended.arguments() == {"city": "Paris", "unit": "celsius"}
    done = tools[-1]
    (report,) = done.attempt_reports
    assert done == Finished(
        "tool_calls", "mock", "tools", done.response_id, "tool_calls",
        done.gateway_overhead_us, done.time_to_first_token_us, done.total_us,
        (("mock", "tools", "ok"),), 0,  # the mock's known price: nothing
        upstream_us=done.upstream_us, cost_currency="USD", cost_usage_source="provider",
        attempt_reports=(AttemptReport("mock", "tools", "ok", "", report.latency_us, 0),),
    )  # fmt: skip
    assert done.total_us >= done.upstream_us > 0
    assert report.latency_us > 0


async def test_async_unary_calls(gateway) -> None:
    async with GatewayClient(gateway.target, timeout=30) as client:
        chat = await client.chat("mock/echo", [message("system", "terse"), message("user", "Hi")])
        completion = await client.complete("mock/echo", "Once", max_tokens=2)
        streamed = [e async for e in client.complete_stream("mock/echo", "Once", max_tokens=2)]
        models = await client.list_models()
        providers = await client.list_providers()
        count = await client.count_tokens("mock/echo", "12345678")
        embedded = await client.embed("mock/embed", ["a", "b"])
        health = await client.health()
    assert chat.text.startswith("Mock answer: Hi")
    assert completion.text == text_of(streamed) == "Mock answer:"
    assert "reasoner" in {m.id for m in models}
    assert providers.default_provider == "mock"
    assert count.input_tokens == 2
    assert len(embedded.embeddings) == 2
    assert health == "SERVING"


async def test_async_per_call_deadline(gateway_factory) -> None:
    async with gateway_factory(FAULTS) as gw, GatewayClient(gw.target, timeout=30) as client:
        with pytest.raises(DeadlineExceededError) as info:
            await client.chat("mock/stuck", "x", timeout=HANG_DEADLINE_S)
        assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert isinstance(info.value.__cause__, grpc.aio.AioRpcError)
        await wait_for(gw.provider("mock").stats.cancelled_event)


async def test_async_break_cancels_the_providers_work(gateway_factory) -> None:
    async with gateway_factory(FAULTS) as gw, GatewayClient(gw.target) as client:
        stream = client.chat_stream("mock/dribble", "x")
        async for event in stream:
            assert event == Text("Mock")
            break
        await stream.aclose()  # what `async with aclosing(...)` or garbage collection does
        await wait_for(gw.provider("mock").stats.cancelled_event)
        assert gw.provider("mock").stats.completed == 0


async def test_retry_after_from_a_rate_limited_call(gateway_factory) -> None:
    async with gateway_factory(FAULTS) as gw, GatewayClient(gw.target, max_retries=0) as client:
        with pytest.raises(RateLimitError) as info:
            await client.chat("mock/limited", "x")
    assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert info.value.retry_after == retry_after(info.value) == 0.7


async def test_sync_client_against_a_real_server(gateway) -> None:
    def use() -> tuple[str, str, list[str], str]:
        with SyncGatewayClient(gateway.target) as client:
            streamed = text_of(client.chat_stream("mock/echo", "Hi", max_tokens=3))
            pieces = list(client.stream_text("mock/echo", "Hi", max_tokens=3))
            unary = client.chat("mock/echo", "Hi", max_tokens=3).text
            assert client.complete("mock/echo", "x").text
            assert text_of(client.complete_stream("mock/echo", "x", max_tokens=1)) == "Mock"
            assert client.list_models("mock")
            assert client.list_providers().providers[0].name == "mock"
            assert client.count_tokens("mock/echo", "abcd").input_tokens == 1
            assert len(client.embed("mock/embed", ["a"]).embeddings[0].values) == 16
            return streamed, unary, pieces, client.health()

    streamed, unary, pieces, health = await asyncio.to_thread(use)
    assert streamed == unary == "".join(pieces) == "Mock answer: Hi"
    assert health == "SERVING"


# --- without a network: grpc_testing channels -------------------------------------------------

SERVICE = pb.DESCRIPTOR.services_by_name["ProviderService"]


@pytest.fixture
def fake_channel() -> grpc_testing.Channel:
    return grpc_testing.channel([SERVICE], grpc_testing.strict_real_time())


def test_sync_chat_sends_the_request_and_api_key(fake_channel) -> None:
    client = SyncGatewayClient(channel=fake_channel, api_key="gw-key")
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(
            client.chat, "fast", [message("user", "Hi")], max_tokens=5, fallbacks=["mock/echo"]
        )
        metadata, request, rpc = fake_channel.take_unary_unary(SERVICE.methods_by_name["Chat"])
        rpc.terminate(pb.ChatResponse(text="done"), (), grpc.StatusCode.OK, "")
        assert future.result(timeout=10).text == "done"
    assert ("authorization", "Bearer gw-key") in metadata
    assert (request.model, request.max_tokens, list(request.fallbacks)) == ("fast", 5, ["mock/echo"])
    assert request.messages[0].role == pb.ROLE_USER
    assert request.messages[0].content[0].text == "Hi"
    client.close()  # a channel passed in is the caller's: closing the client leaves it usable


def test_sync_stream_converts_every_event_kind(fake_channel) -> None:
    raw = [
        pb.StreamEvent(reasoning_delta=pb.ReasoningDelta(text="hm", signature="s")),
        pb.StreamEvent(text_delta=pb.TextDelta(text="Hi")),
        pb.StreamEvent(tool_call_start=pb.ToolCallStart(index=1, id="c", name="f")),
        pb.StreamEvent(tool_call_delta=pb.ToolCallDelta(index=1, arguments_delta="{}")),
        pb.StreamEvent(tool_call_end=pb.ToolCallEnd(index=1, call=pb.ToolCall(id="c", name="f"))),
        pb.StreamEvent(usage=pb.Usage(input_tokens=3, output_tokens=2, cache_read_tokens=1, total_tokens=5)),
        pb.StreamEvent(),  # a kind this client does not know is skipped, not an error
        pb.StreamEvent(finish=pb.Finish(reason=pb.FINISH_REASON_STOP, provider="p", model="m")),
    ]
    client = SyncGatewayClient(channel=fake_channel)
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(lambda: list(client.chat_stream("m", "Hi")))
        _, _, rpc = fake_channel.take_unary_stream(SERVICE.methods_by_name["ChatStream"])
        for event in raw:
            rpc.send_response(event)
        rpc.terminate((), grpc.StatusCode.OK, "")
        events = future.result(timeout=10)
    assert events == [
        Reasoning("hm", "s"),
        Text("Hi"),
        ToolCallStarted(1, "c", "f"),
        ToolCallArguments(1, "{}"),
        ToolCallFinished(1, "c", "f", "{}"),  # an end without arguments: its deltas'
        UsageReport(3, 2, cache_read_tokens=1, total_tokens=5),
        Finished("stop", "p", "m"),
    ]
    assert events[4].arguments() == {}


def test_sync_stream_left_early_cancels_the_call(fake_channel) -> None:
    client = SyncGatewayClient(channel=fake_channel)

    def first_text() -> Text:
        for event in client.chat_stream("m", "Hi"):
            assert isinstance(event, Text)
            return event
        raise AssertionError("no event")

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(first_text)
        _, _, rpc = fake_channel.take_unary_stream(SERVICE.methods_by_name["ChatStream"])
        rpc.send_response(pb.StreamEvent(text_delta=pb.TextDelta(text="one")))
        assert future.result(timeout=10) == Text("one")
    # `cancelled()` blocks until the call is cancelled: wait for it in a thread that may be abandoned.
    waiter = threading.Thread(target=rpc.cancelled, daemon=True)
    waiter.start()
    waiter.join(timeout=10)
    assert not waiter.is_alive(), "leaving the loop did not cancel the call"


def test_sync_error_keeps_status_and_retry_after(fake_channel) -> None:
    client = SyncGatewayClient(channel=fake_channel, max_retries=0)
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(client.complete, "m", "p")
        _, request, rpc = fake_channel.take_unary_unary(SERVICE.methods_by_name["Complete"])
        rpc.terminate(None, (("retry-after-ms", "2500"),), grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down")
        with pytest.raises(RateLimitError) as info:
            future.result(timeout=10)
    assert request.prompt == "p"
    assert (info.value.code, info.value.details) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down")
    assert info.value.retry_after == 2.5
    assert isinstance(info.value.__cause__, grpc.RpcError)


def test_default_service_config_balances_and_leaves_retries_to_the_client() -> None:
    import json

    from provider_gateway_client import CHANNEL_OPTIONS, SERVICE_CONFIG

    config = json.loads(SERVICE_CONFIG)
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    assert "methodConfig" not in config  # one retry layer only: max_retries (test_python_retries.py)
    assert ("grpc.service_config", SERVICE_CONFIG) in CHANNEL_OPTIONS


# --- the examples in examples/ run as written ---------------------------------------------------

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("chat_sync.py", "Mock answer: Hello"),
        ("chat_async.py", "[mock/reasoner: stop]"),
        ("tools.py", 'model asks: get_weather({"city":"Paris","unit":"celsius"})'),
    ],
)
async def test_examples_run_against_a_gateway(gateway, script: str, expected: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / script),
        env={**os.environ, "PROVIDER_GATEWAY_TARGET": gateway.target},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert expected in out.decode()
