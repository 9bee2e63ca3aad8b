"""A stream's usage in its finish (`Finish.usage`), and `StreamOptions.usage_in_finish`, which sends
it only there: one message fewer per stream, the same answer and the same usage, on every vendor's
wire. The clients ask for it on their streams and still give a usage event before the finish, from
a gateway that honours the option and from one that predates it."""

from __future__ import annotations

import asyncio
import gc
import json
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import grpc
import pytest
from conftest import run_gateway
from test_budgets import ALICE, PRICED_MOCK, alice_key, bearer, limit_of
from test_cross_provider import MODELS as CROSS_PROVIDER_MODELS
from test_cross_provider import OLLAMA_MODEL, every_vendor
from test_node_client import run_node
from vendor_cases import WAIT_S, answer_of, chat_request, weather_tool

from provider_gateway.v1 import provider_service_pb2 as pb
from provider_gateway_client import GatewayClient, SyncGatewayClient
from provider_gateway_client.events import Finished, UsageReport
from provider_gateway_client.v1 import provider_service_pb2 as client_pb
from provider_gateway_client.v1 import provider_service_pb2_grpc as client_pb_grpc

IN_FINISH = pb.StreamOptions(usage_in_finish=True)
MODELS = [*CROSS_PROVIDER_MODELS, OLLAMA_MODEL]


async def events_of(stub: Any, request: pb.ChatRequest) -> list[pb.StreamEvent]:
    return [e async for e in stub.ChatStream(request, timeout=WAIT_S)]


def with_options(request: pb.ChatRequest, options: pb.StreamOptions) -> pb.ChatRequest:
    copy = pb.ChatRequest()
    copy.CopyFrom(request)
    copy.stream_options.CopyFrom(options)
    return copy


@contextmanager
def generators_left_open() -> Iterator[list[str]]:
    """The gateway's async generators that the event loop had to close itself, from its
    finalizer hook: each costs a thread-safe wake-up and a task, and runs its `finally` at some
    later GC. A stream closes what it opened. (Entered inside the running loop, which installs
    its own hooks each time it starts.)"""
    firstiter, finalizer = sys.get_asyncgen_hooks()
    left: list[str] = []

    def record(generator: Any) -> None:
        code = generator.ag_code
        if "provider_gateway" in code.co_filename and "fakes" not in code.co_filename:
            left.append(code.co_qualname)
        if finalizer is not None:
            finalizer(generator)

    sys.set_asyncgen_hooks(firstiter, record)
    try:
        yield left
    finally:
        sys.set_asyncgen_hooks(firstiter, finalizer)


async def test_every_vendor_gives_the_same_usage_in_the_finish_with_one_message_fewer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each model is asked twice, without the option then with it; one message per event (no
    # coalescing), so the message kinds compare exactly.
    server = "[server]\ncoalesce_deltas = false\n"
    with generators_left_open() as left_open:
        async with every_vendor(monkeypatch, answers=2, server=server) as vendors:
            await each_model_with_and_without_the_option(vendors.gateway)
            for fake in (vendors.anthropic, vendors.gemini, vendors.vertex, vendors.cohere):
                assert fake.problems == []
        gc.collect()
    assert left_open == []


async def each_model_with_and_without_the_option(gateway: Any) -> None:
    for model in MODELS:
        request = chat_request(model, tools=[weather_tool()])
        plain = await events_of(gateway.stub, request)
        opted = await events_of(gateway.stub, with_options(request, IN_FINISH))
        usages = [e.usage for e in plain if e.HasField("usage")]
        assert usages, model  # every vendor's stream reports usage
        finish = plain[-1].finish
        assert finish.usage == usages[-1], model  # the last usage event counts, raw included
        assert usages[-1].output_tokens > 0, model
        assert usages[-1].input_tokens > 0, model
        # With the option: no usage event, the same usage in the finish, nothing else changed.
        assert [e.WhichOneof("event") for e in opted] == [
            e.WhichOneof("event") for e in plain if not e.HasField("usage")
        ], model
        assert opted[-1].finish.usage == finish.usage, model
        assert answer_of(opted) == answer_of(plain), model


async def test_complete_stream_honours_the_option_and_unary_answers_keep_usage_in_their_own_field(
    gateway: Any,
) -> None:
    complete = pb.CompleteRequest(model="mock/echo", prompt="Once upon", max_tokens=3)
    plain = [e async for e in gateway.stub.CompleteStream(complete, timeout=WAIT_S)]
    complete.stream_options.usage_in_finish = True
    opted = [e async for e in gateway.stub.CompleteStream(complete, timeout=WAIT_S)]
    (usage,) = [e.usage for e in plain if e.HasField("usage")]
    assert not any(e.HasField("usage") for e in opted)
    assert plain[-1].finish.usage == opted[-1].finish.usage == usage
    assert len(opted) == len(plain) - 1

    # Unary calls ignore the option: the answer's `usage` holds it, its finish none.
    chat = with_options(chat_request("mock/echo"), IN_FINISH)
    answer = await gateway.stub.Chat(chat, timeout=WAIT_S)
    assert answer.usage.output_tokens > 0
    assert not answer.finish.HasField("usage")
    completion = await gateway.stub.Complete(complete, timeout=WAIT_S)
    assert completion.usage == usage
    assert not completion.finish.HasField("usage")


class _Recorder(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    """Keeps each stream request the client sends."""

    def __init__(self) -> None:
        self.requests: list[Any] = []

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        self.requests.append(request)
        return await continuation(details, request)


def usage_then_finish(events: list[Any]) -> tuple[UsageReport, Finished]:
    """The client's typed events end with exactly one usage report, then the finish."""
    reports = [e for e in events if isinstance(e, UsageReport)]
    assert len(reports) == 1
    assert events[-2:] == [reports[0], events[-1]]
    assert isinstance(events[-1], Finished)
    return reports[0], events[-1]


async def test_the_python_client_asks_for_it_and_still_gives_a_usage_event(gateway: Any) -> None:
    recorder = _Recorder()
    channel = grpc.aio.insecure_channel(gateway.target, interceptors=[recorder])
    async with GatewayClient(channel=channel) as client:
        unary = await client.chat("mock/echo", "Hello there", max_tokens=2)
        stream = client.chat_stream("mock/echo", "Hello there", max_tokens=2)
        events = [e async for e in stream]
        result = await stream.final()
        # A caller's own stream_options are sent as given: usage events, and no second report.
        own = [
            e async for e in client.chat_stream("mock/echo", "Hi", stream_options=client_pb.StreamOptions())
        ]
        completion = [e async for e in client.complete_stream("mock/echo", "Once", max_tokens=2)]
    await channel.close()
    assert [r.stream_options.usage_in_finish for r in recorder.requests] == [True, False, True]
    report, _ = usage_then_finish(events)
    assert report == unary.usage == result.usage
    assert usage_then_finish(own)[0].output_tokens > 0
    assert usage_then_finish(completion)[0].output_tokens == 2


class _OlderGateway(client_pb_grpc.ProviderServiceServicer):
    """A gateway from before `usage_in_finish`: usage events, and a finish without usage."""

    async def ChatStream(self, request: Any, context: Any) -> AsyncIterator[Any]:
        yield client_pb.StreamEvent(text_delta=client_pb.TextDelta(text="hi"))
        yield client_pb.StreamEvent(usage=client_pb.Usage(input_tokens=5, output_tokens=1, total_tokens=6))
        yield client_pb.StreamEvent(finish=client_pb.Finish(reason=client_pb.FINISH_REASON_STOP))


async def test_the_clients_read_usage_from_a_gateway_that_predates_the_option() -> None:
    server = grpc.aio.server()
    client_pb_grpc.add_ProviderServiceServicer_to_server(_OlderGateway(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with GatewayClient(f"127.0.0.1:{port}") as client:
            report, _ = usage_then_finish([e async for e in client.chat_stream("m", "x")])
        assert (report.input_tokens, report.output_tokens) == (5, 1)
        code, out, err = await run_node("-e", NODE_SCRIPT, f"127.0.0.1:{port}")
        assert code == 0, err
        (older,) = json.loads(out)
        assert older["kinds"] == ["textDelta", "usage", "finish"]
        assert older["final"]["usage"]["outputTokens"] == 1
    finally:
        await server.stop(None)


async def test_the_sync_client_gives_the_usage_once_before_the_finish(gateway: Any) -> None:
    def use() -> tuple[list[Any], UsageReport | None]:
        with SyncGatewayClient(gateway.target) as client:
            events = list(client.chat_stream("mock/echo", "Hello there", max_tokens=2))
            return events, client.chat("mock/echo", "Hello there", max_tokens=2).usage

    events, unary = await asyncio.to_thread(use)
    report, _ = usage_then_finish(events)
    assert report == unary


NODE_SCRIPT = """
const { GatewayClient } = require('.');
const client = new GatewayClient(process.argv[1]);
(async () => {
  const out = [];
  for (const request of JSON.parse(process.argv[2] || '[{"model": "m", "prompt": "x"}]')) {
    const stream = client.chatStream(request);
    const kinds = [];
    let finish = null;
    for await (const event of stream) {
      kinds.push(event.event);
      if (event.event === 'finish') finish = event.finish;
    }
    const final = await stream.finalMessage();
    const unary = request.model === 'm' ? null : await client.chat(request);
    out.push({ kinds, finish, final, unary });
  }
  client.close();
  process.stdout.write(JSON.stringify(out));
})().catch((error) => { process.stderr.write(String(error.stack)); process.exit(1); });
"""


async def test_the_node_client_asks_for_it_and_still_gives_a_usage_event(gateway: Any) -> None:
    requests = [{"model": "mock/echo", "prompt": "Hello there", "maxTokens": 2}]
    code, out, err = await run_node("-e", NODE_SCRIPT, gateway.target, json.dumps(requests))
    assert code == 0, err
    (case,) = json.loads(out)
    assert case["kinds"][-2:] == ["usage", "finish"]
    assert case["kinds"].count("usage") == 1
    assert case["final"]["usage"] == case["unary"]["usage"] == case["finish"]["usage"]
    assert case["final"]["usage"]["outputTokens"] == 2
    assert case["unary"]["finish"]["usage"] is None  # a unary answer's usage is its own field


async def tokens_spent_by_one_stream(options: pb.StreamOptions) -> tuple[int, int]:
    """(tokens the key spent today, the stream's own usage) for a key's one stream. (Its
    tokens-per-minute limit is settled from the same count; its rolling spend decays with time.)"""
    config = PRICED_MOCK + alice_key("tokens_per_day = 100000")
    async with run_gateway(config) as gateway:
        request = with_options(chat_request("mock/echo", max_tokens=5), options)
        events = [e async for e in gateway.stub.ChatStream(request, metadata=bearer(ALICE), timeout=WAIT_S)]
        report = await gateway.stub.GetSpend(pb.GetSpendRequest(), metadata=bearer(ALICE), timeout=WAIT_S)
    day = limit_of(report, pb.SPEND_SCOPE_KEY, pb.SPEND_METRIC_TOKENS, pb.SPEND_WINDOW_DAY)
    usage = events[-1].finish.usage
    return day.spent, usage.input_tokens + usage.output_tokens


async def test_token_budgets_charge_a_stream_the_same_with_the_usage_in_its_finish() -> None:
    plain = await tokens_spent_by_one_stream(pb.StreamOptions())
    opted = await tokens_spent_by_one_stream(IN_FINISH)
    assert plain == opted
    assert opted[0] == opted[1] > 0  # the stream's usage, charged once
