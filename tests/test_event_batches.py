"""`StreamOptions.batch_events`: events in hand together go out as one `batch` message
(server/event_batches.py). A client that reads each batch's events in order gets exactly the
stream it would have got without the option; no batch is sent to a client that did not ask, none is
of one event or nested, none outgrows the send limit, and a lone token is never held back. The
budgets, the answer cache and the access log read a batched stream as they read a plain one."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import orjson
import pytest
from conftest import run_gateway
from test_budgets import ALICE, PRICED_MOCK, alice_key, bearer, limit_of
from test_coalesce import sse
from test_cross_provider import openai_canonical_chunks
from test_observability import FAILOVER_CONFIG, captured_logs, observed_gateway, user
from vendor_cases import WAIT_S, chat_request, summarise, weather_tool

from provider_gateway.domain import GatewayEvent, ReasoningDelta, TextDelta
from provider_gateway.fakes import FakeUpstream, Reply
from provider_gateway.observability import logs
from provider_gateway.server import event_batches
from provider_gateway.server.convert import StreamMessages
from provider_gateway.server.event_batches import BATCH_BYTES
from provider_gateway.v1 import provider_service_pb2 as pb

BATCHED = pb.StreamOptions(batch_events=True)
OPENAI = '[providers.o]\nkind = "openai"\nbase_url = "{url}/v1"\napi_key_env = "PG_X_KEY"\n'


def batched(request: Any, options: pb.StreamOptions = BATCHED) -> Any:
    copy = type(request)()
    copy.CopyFrom(request)
    copy.stream_options.MergeFrom(options)
    return copy


def unbatched(messages: list[pb.StreamEvent]) -> list[pb.StreamEvent]:
    """The stream as a client reads it: each batch's events in order, in place of the batch."""
    events: list[pb.StreamEvent] = []
    for message in messages:
        if message.HasField("batch"):
            inner = list(message.batch.events)
            assert len(inner) > 1, "a batch of one event"
            assert not any(e.HasField("batch") for e in inner), "a batch inside a batch"
            finishes = [i for i, e in enumerate(inner) if e.HasField("finish")]
            assert finishes in ([], [len(inner) - 1]), "a finish that is not its batch's last event"
            events.extend(inner)
        else:
            events.append(message)
    return events


def batches(messages: list[pb.StreamEvent]) -> int:
    return sum(message.HasField("batch") for message in messages)


async def messages_of(stub: Any, request: pb.ChatRequest, **kwargs: Any) -> list[pb.StreamEvent]:
    return [m async for m in stub.ChatStream(request, timeout=WAIT_S, **kwargs)]


def tool_calls_answer(calls: int, city_chars: int) -> list[dict[str, Any]]:
    """An OpenAI stream's chunks: `calls` whole tool calls, each `city_chars` long, then the finish."""
    chunks: list[dict[str, Any]] = []
    for index in range(calls):
        call = {"index": index, "id": f"call_{index}", "type": "function"}
        call["function"] = {"name": "get_weather", "arguments": json.dumps({"city": "x" * city_chars})}
        chunks.append({"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"tool_calls": [call]}}]})
    finish = {"index": 0, "delta": {}, "finish_reason": "tool_calls"}
    return [*chunks, {"id": "c", "model": "m", "choices": [finish]}]


def scripted_twice(fake: FakeUpstream, body: bytes) -> None:
    for _ in range(2):
        fake.script("/v1/chat/completions", Reply(chunks=[body], content_type="text/event-stream"))


async def test_a_whole_answer_in_one_read_comes_in_fewer_messages_and_reads_the_same(monkeypatch) -> None:
    """Text, a tool call and the finish arrive in one upstream write: batched, the client gets
    fewer messages and, reading each batch's events, the same events as without the option."""
    monkeypatch.setenv("PG_X_KEY", "k")
    async with FakeUpstream() as fake:
        scripted_twice(fake, sse(openai_canonical_chunks("gpt-4o")))
        async with run_gateway(OPENAI.format(url=fake.url)) as gateway:
            request = chat_request("o/gpt-4o", tools=[weather_tool()])
            plain = await messages_of(gateway.stub, request)
            opted = await messages_of(gateway.stub, batched(request))
    assert batches(plain) == 0  # never to a client that did not ask
    assert batches(opted) >= 1
    assert len(opted) < len(plain)
    events = unbatched(opted)
    a, b = summarise(events), summarise(plain)
    assert a.finish is not None
    assert b.finish is not None
    assert (a.text, a.tool_calls, a.tool_ids, a.usage) == (b.text, b.tool_calls, b.tool_ids, b.usage)
    assert a.tool_calls
    assert a.text
    assert a.finish.reason == b.finish.reason == pb.FINISH_REASON_TOOL_CALLS
    assert [e.WhichOneof("event") for e in events][-1] == "finish"


@pytest.mark.parametrize("model", ["mock/echo", "mock/reasoner", "mock/tools"])
async def test_the_mock_reads_the_same_batched_reasoning_and_its_issuer_included(model: str) -> None:
    request = chat_request(model, tools=[weather_tool()], reasoning=pb.ReasoningOptions(enabled=True))
    async with run_gateway("[providers.mock]\nkind = 'mock'") as gateway:
        plain = await messages_of(gateway.stub, request)
        opted = await messages_of(gateway.stub, batched(request))
    events = unbatched(opted)
    assert batches(opted) >= 1  # the mock's tokens are all in hand at once
    assert [e.WhichOneof("event") for e in events if not e.HasField("finish")] != []
    a, b = summarise(events), summarise(plain)
    assert (a.text, a.reasoning, a.signature, a.tool_calls) == (
        b.text,
        b.reasoning,
        b.signature,
        b.tool_calls,
    )
    issuers = [e.reasoning_delta.issuer for e in events if e.HasField("reasoning_delta")]
    assert issuers == [e.reasoning_delta.issuer for e in plain if e.HasField("reasoning_delta")]
    assert a.finish is not None
    assert b.finish is not None
    assert (a.finish.reason, a.finish.usage) == (b.finish.reason, b.finish.usage)


async def test_complete_stream_batches_too() -> None:
    request = pb.CompleteRequest(model="mock/echo", prompt="Once upon a time there was", max_tokens=8)
    async with run_gateway("[providers.mock]\nkind = 'mock'") as gateway:
        plain = [m async for m in gateway.stub.CompleteStream(request, timeout=WAIT_S)]
        opted = [m async for m in gateway.stub.CompleteStream(batched(request), timeout=WAIT_S)]
    assert batches(opted) >= 1
    assert batches(plain) == 0
    assert summarise(unbatched(opted)).text == summarise(plain).text
    assert unbatched(opted)[-1].finish.usage == plain[-1].finish.usage


async def test_a_lone_token_goes_out_alone_and_at_once_while_the_upstream_pauses(monkeypatch) -> None:
    monkeypatch.setenv("PG_X_KEY", "k")
    first = sse([{"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"content": "Hello"}}]}])
    first = first.removesuffix(b"data: [DONE]\n\n")
    async with FakeUpstream() as fake:
        fake.script(
            "/v1/chat/completions", Reply(chunks=[first], content_type="text/event-stream", then="hang")
        )
        async with run_gateway(OPENAI.format(url=fake.url)) as gateway:
            call = gateway.stub.ChatStream(batched(chat_request("o/m")), timeout=WAIT_S)
            message = await asyncio.wait_for(call.read(), WAIT_S)  # bounded: a held token fails
            assert message.WhichOneof("event") == "text_delta"
            assert message.text_delta.text == "Hello"
            call.cancel()


LIMIT = 4096  # [server] max_message_bytes, its floor is 1024


async def test_batches_stay_within_the_send_limit(monkeypatch) -> None:
    """Many tool calls' worth of events in one read, each well under the send limit but far over
    it together: they go as several batches, each within the limit, and read the same."""
    monkeypatch.setenv("PG_X_KEY", "k")
    async with FakeUpstream() as fake:
        scripted_twice(fake, sse(tool_calls_answer(12, 900)))
        config = f"[server]\nmax_message_bytes = {LIMIT}\n" + OPENAI.format(url=fake.url)
        async with run_gateway(config) as gateway:
            request = chat_request("o/m", tools=[weather_tool()])
            plain = await messages_of(gateway.stub, request)
            opted = await messages_of(gateway.stub, batched(request))
    assert batches(opted) >= 2
    assert max(m.ByteSize() for m in opted) <= LIMIT
    a, b = summarise(unbatched(opted)), summarise(plain)
    assert len(a.tool_calls) == 12
    assert (a.tool_calls, a.tool_ids) == (b.tool_calls, b.tool_ids)


async def test_a_keys_token_budget_is_charged_the_same_for_a_batched_stream() -> None:
    async def spent(options: pb.StreamOptions) -> tuple[int, int]:
        config = PRICED_MOCK + alice_key("tokens_per_day = 100000")
        async with run_gateway(config) as gateway:
            request = batched(chat_request("mock/echo", max_tokens=5), options)
            messages = await messages_of(gateway.stub, request, metadata=bearer(ALICE))
            report = await gateway.stub.GetSpend(pb.GetSpendRequest(), metadata=bearer(ALICE), timeout=WAIT_S)
        day = limit_of(report, pb.SPEND_SCOPE_KEY, pb.SPEND_METRIC_TOKENS, pb.SPEND_WINDOW_DAY)
        usage = unbatched(messages)[-1].finish.usage
        if options.batch_events:
            assert batches(messages) >= 1
        return day.spent, usage.input_tokens + usage.output_tokens

    both = pb.StreamOptions(batch_events=True, usage_in_finish=True)
    plain, opted = await spent(pb.StreamOptions()), await spent(both)
    assert plain == opted
    assert opted[0] == opted[1] > 0  # the stream's usage, charged once


async def hit(gw: Any, request: pb.ChatRequest) -> list[pb.StreamEvent]:
    call = gw.stub.ChatStream(request, timeout=WAIT_S)
    messages = [m async for m in call]
    assert dict(await call.initial_metadata())["x-gateway-cache"] == "hit"
    return messages


async def test_one_cache_entry_answers_batching_and_plain_clients(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    """Recorded for a batching client, the answer is kept as its events: a plain client's hit gets
    them one per message, a batching client's hit gets the whole answer in one batch."""
    async with gateway_factory("\n[cache]\nenabled = true\n") as gw:
        plain = chat_request("mock/tools", tools=[weather_tool()])
        first = await messages_of(gw.stub, batched(plain))
        to_plain = await hit(gw, plain)
        to_batching = await hit(gw, batched(plain))
        assert int(gw.provider("mock").stats.started) == 1
    assert batches(first) >= 1
    assert batches(to_plain) == 0
    assert len(to_batching) == 1
    assert to_batching[0].HasField("batch")
    recorded = unbatched(first)
    for replayed in (to_plain, unbatched(to_batching)):
        assert replayed[:-1] == recorded[:-1]
        assert replayed[-1].finish.reason == recorded[-1].finish.reason == pb.FINISH_REASON_TOOL_CALLS
        assert replayed[-1].finish.response_id == recorded[-1].finish.response_id
        assert replayed[-1].finish.cost.known
        assert replayed[-1].finish.cost.amount_micros == 0


async def test_no_batch_outgrows_grpcs_default_receive_limit(monkeypatch) -> None:
    """Large events in hand together under the default 8 MiB send limit: batches stay small (a
    client that kept gRPC's 4 MiB receive limit, as grpcurl and grpc-js do, reads every one)."""
    monkeypatch.setenv("PG_X_KEY", "k")
    async with FakeUpstream() as fake:
        scripted_twice(fake, sse(tool_calls_answer(30, 20_000)))
        async with run_gateway(OPENAI.format(url=fake.url)) as gateway:
            request = chat_request("o/m", tools=[weather_tool()])
            plain = await messages_of(gateway.stub, request)
            opted = await messages_of(gateway.stub, batched(request))
    assert batches(opted) >= 2
    assert max(m.ByteSize() for m in opted) <= BATCH_BYTES + 64
    a, b = summarise(unbatched(opted)), summarise(plain)
    assert len(a.tool_calls) == 30
    assert (a.tool_calls, a.tool_ids) == (b.tool_calls, b.tool_ids)


class _Refusing(StreamMessages):
    """Converts like the servicer, but cannot convert a text delta reading "bad"."""

    def to_proto(self, event: GatewayEvent) -> pb.StreamEvent | None:
        if isinstance(event, TextDelta) and event.text == "bad":
            raise ValueError("cannot convert")
        return super().to_proto(event)


def test_the_events_before_one_that_cannot_be_converted_are_still_sent() -> None:
    """As without batches: what preceded the failing event goes out, then the error."""
    messages = _Refusing(pb.StreamOptions(batch_events=True))
    events: list[GatewayEvent] = [ReasoningDelta("why", signature="sig"), TextDelta("ok"), TextDelta("bad")]
    sent, error = event_batches.batched(messages, events, 1 << 20)
    assert isinstance(error, ValueError)
    (batch,) = sent
    assert [e.WhichOneof("event") for e in batch.batch.events] == ["reasoning_delta", "text_delta"]
    assert batch.batch.events[0].reasoning_delta.signature == "sig"
    assert batch.batch.events[1].text_delta.text == "ok"


async def test_the_access_log_gives_the_answers_provider_and_cost_for_a_batched_stream() -> None:
    priced = FAILOVER_CONFIG + '\n[prices.mock."m"]\ninput = 20000.0\noutput = 80000.0\n'  # the kind's prices
    with captured_logs() as output:
        async with observed_gateway(priced) as gw:
            request = pb.ChatRequest(
                model="primary/m", fallbacks=["backup/m"], messages=[user("hi")], stream_options=BATCHED
            )
            messages = await messages_of(gw.running.stub, request)
    assert messages[-1].HasField("batch")  # the finish came inside a batch
    lines = [orjson.loads(line) for line in output.getvalue().splitlines()]
    (access,) = [line for line in lines if line["logger"] == logs.ACCESS_LOGGER]
    assert (access["status"], access["provider"], access["model"]) == ("OK", "backup", "m")
    assert access["output_tokens"] == 5
    finish = unbatched(messages)[-1].finish
    assert finish.cost.known
    assert finish.cost.amount_micros > 0
    assert access["cost_usd_micros"] == finish.cost.amount_micros  # read from the batch's finish
