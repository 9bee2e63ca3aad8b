"""The Python client's streams end only one of two ways: whole, with their `finish`, or with a
GatewayError. A stream cut without one, or left early, never passes part of an answer off as the
whole; leaving it in any way (a loop's `break`, `close()` from another thread or task) stops the
provider's work and frees the key's stream slot. Newer servers' additions (finish reasons, raw
content, finish fields) reach the caller instead of failing the call or being dropped."""

from __future__ import annotations

import asyncio
import hashlib
import threading

import grpc
import pytest
from client_fakes import finish, raw_content, scripted_gateway, text
from rpc_util import wait_for

from provider_gateway_client import (
    AttemptReport,
    GatewayClient,
    GatewayError,
    RawContent,
    SyncGatewayClient,
    Text,
    UnavailableError,
    pb,
)
from provider_gateway_client.retries import RetryPolicy

DRIBBLE = """
[providers.mock.models.dribble]
tokens = 200
token_delay_ms = 100
"""
KEY = "client-streams-key-0123456789abcdef"
ONE_STREAM_KEY = f"""
[[auth.keys]]
name = "one"
sha256 = "{hashlib.sha256(KEY.encode()).hexdigest()}"
max_concurrent_streams = 1
"""


# --- a stream that ends without its finish was cut -----------------------------------------------


async def test_a_stream_ending_without_finish_raises_unavailable() -> None:
    async with scripted_gateway([text("partial an")]) as (target, service):
        async with GatewayClient(target, max_retries=2, timeout=10) as client:
            with pytest.raises(UnavailableError) as in_async:
                await client.chat_stream("m/x", "x").final()

        def use() -> None:
            with SyncGatewayClient(target, max_retries=2, timeout=10) as client:
                client.chat_stream("m/x", "x").final()

        with pytest.raises(UnavailableError) as in_sync:
            await asyncio.to_thread(use)
    assert in_async.value.details == in_sync.value.details == "stream ended without a finish"
    assert service.streams == 2  # text was shown: never retried


async def test_an_empty_stream_without_finish_is_retried() -> None:
    """Nothing was shown, so it is retried like any stream that failed before its first event."""
    async with scripted_gateway([]) as (target, service), GatewayClient(target, timeout=10) as client:
        client.retry_policy = RetryPolicy(max_retries=1, initial_backoff_s=0.01)
        with pytest.raises(UnavailableError):
            await client.chat_stream("m/x", "x").final()
    assert service.streams == 2


# --- leaving a stream early ----------------------------------------------------------------------


async def test_final_after_leaving_early_raises_cancelled(gateway_factory) -> None:
    async with gateway_factory(DRIBBLE) as gw, GatewayClient(gw.target) as client:
        async with client.chat_stream("mock/dribble", "x") as stream:
            async for _ in stream:
                break
        with pytest.raises(GatewayError) as in_async:
            await stream.final()

        def use() -> None:
            with SyncGatewayClient(gw.target) as sync_client:
                held = sync_client.chat_stream("mock/dribble", "x")
                for _ in held:
                    break
                held.final()

        with pytest.raises(GatewayError) as in_sync:
            await asyncio.to_thread(use)
    assert in_async.value.code is in_sync.value.code is grpc.StatusCode.CANCELLED


async def test_a_whole_stream_still_gives_its_answer_after_the_block(gateway) -> None:
    async with GatewayClient(gateway.target) as client:
        async with client.chat_stream("mock/echo", "Hi") as stream:
            pieces = [piece async for piece in stream.text_stream]
        result = await stream.final()
    assert result.text == "".join(pieces)
    assert result.text.startswith("Mock answer: Hi")
    assert result.finish is not None


async def test_break_out_of_a_held_async_stream_frees_the_keys_stream_slot(gateway_factory) -> None:
    async with (
        gateway_factory(DRIBBLE + ONE_STREAM_KEY) as gw,
        GatewayClient(gw.target, api_key=KEY) as client,
    ):
        stream = client.chat_stream("mock/dribble", "x")  # still held after the loop
        async for _ in stream:
            break
        await wait_for(gw.provider("mock").stats.cancelled_event)
        # The key's only slot is free (a refusal, were the gateway a moment late, would be retried).
        result = await client.chat_stream("mock/echo", "y").final()
    assert result.text.startswith("Mock answer: y")
    assert gw.provider("mock").stats.completed == 1


async def test_break_out_of_a_held_sync_stream_cancels_the_call(gateway_factory) -> None:
    async with gateway_factory(DRIBBLE) as gw:
        client = SyncGatewayClient(gw.target)
        held: list[object] = []

        def use() -> None:
            stream = client.chat_stream("mock/dribble", "x")
            for _ in stream:
                break
            held.append(stream)

        try:
            await asyncio.to_thread(use)
            await wait_for(gw.provider("mock").stats.cancelled_event)
        finally:
            client.close()
    assert gw.provider("mock").stats.completed == 0


# --- closing from elsewhere ----------------------------------------------------------------------


async def test_close_from_another_thread_cancels_the_read(gateway_factory) -> None:
    async with gateway_factory(DRIBBLE) as gw:
        client = SyncGatewayClient(gw.target)
        stream = client.chat_stream("mock/dribble", "x")
        first = threading.Event()
        outcome: list[BaseException | str] = []

        def read() -> None:
            try:
                for _ in stream:
                    first.set()
                outcome.append("ended")
            except GatewayError as error:
                outcome.append(error)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            assert await asyncio.to_thread(first.wait, 10)
            stream.close()  # while the reader waits for the next event
            await asyncio.to_thread(reader.join, 10)
            await wait_for(gw.provider("mock").stats.cancelled_event)
        finally:
            client.close()
    (error,) = outcome
    assert isinstance(error, GatewayError)
    assert error.code is grpc.StatusCode.CANCELLED


async def test_aclose_from_another_task_cancels_the_read(gateway_factory) -> None:
    async with gateway_factory(DRIBBLE) as gw, GatewayClient(gw.target) as client:
        stream = client.chat_stream("mock/dribble", "x")
        first = asyncio.Event()

        async def read() -> list[Text]:
            return [event async for event in stream if isinstance(event, Text) and not first.set()]

        reader = asyncio.create_task(read())
        await wait_for(first)
        await stream.aclose()  # while the reader waits for the next event
        with pytest.raises(GatewayError) as info:
            await asyncio.wait_for(reader, 10)
        await wait_for(gw.provider("mock").stats.cancelled_event)
    assert info.value.code is grpc.StatusCode.CANCELLED
    assert not reader.cancelled()  # the reader's task was not cancelled: it got the stream's error


async def test_cancelling_the_readers_task_still_cancels_the_task(gateway_factory) -> None:
    async with gateway_factory(DRIBBLE) as gw, GatewayClient(gw.target) as client:
        stream = client.chat_stream("mock/dribble", "x")
        first = asyncio.Event()

        async def read() -> None:
            async for _ in stream:
                first.set()

        reader = asyncio.create_task(read())
        await wait_for(first)
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
        await wait_for(gw.provider("mock").stats.cancelled_event)


async def test_close_during_the_wait_before_a_retry_ends_it_without_another_attempt() -> None:
    slow = RetryPolicy(max_retries=1, initial_backoff_s=60, max_backoff_s=60)
    async with scripted_gateway([]) as (target, service):  # fails before its first event: retried
        async with GatewayClient(target, timeout=120) as client:
            client.retry_policy = slow
            stream = client.chat_stream("m/x", "x")
            reader = asyncio.create_task(stream.final())
            await wait_for(service.asked)
            await asyncio.sleep(0.1)  # the reader is now waiting to retry
            await stream.aclose()
            with pytest.raises(GatewayError) as in_async:
                await asyncio.wait_for(reader, 10)

        with SyncGatewayClient(target, timeout=120) as sync_client:
            sync_client.retry_policy = slow
            held = sync_client.chat_stream("m/x", "x")
            service.asked.clear()
            sync_reader = asyncio.create_task(asyncio.to_thread(held.final))
            await wait_for(service.asked)
            await asyncio.sleep(0.1)
            held.close()
            with pytest.raises(GatewayError) as in_sync:
                await asyncio.wait_for(sync_reader, 10)
    assert in_async.value.code is in_sync.value.code is grpc.StatusCode.CANCELLED
    assert service.streams == 2  # one attempt each: closing ended the wait, not a retry


# --- what a newer server sends -------------------------------------------------------------------


async def test_a_newer_finish_reason_is_named_not_an_error() -> None:
    newer = pb.Finish(reason=7, provider="p", model="m")
    events, response = [text("ok"), pb.StreamEvent(finish=newer)], pb.ChatResponse(text="ok", finish=newer)
    async with scripted_gateway(events, response) as (target, _), GatewayClient(target, timeout=10) as client:
        streamed = await client.chat_stream("m/x", "x").final()
        unary = await client.chat("m/x", "x")
    assert streamed.finish is not None
    assert unary.finish is not None
    assert streamed.finish.reason == unary.finish.reason == "unknown_7"
    assert streamed.text == unary.text == "ok"


async def test_raw_content_and_every_finish_field_reach_the_caller() -> None:
    cost = pb.Cost(amount_micros=12, currency="USD", known=True, usage_source="estimated")
    failed = pb.Attempt(
        provider="a", model="m1", outcome="UNAVAILABLE", error="down", latency_us=5, cost=cost
    )
    ok = pb.Attempt(provider="p", model="m", outcome="ok", latency_us=9)
    events = [
        text("see [1]"),
        raw_content("reference", {"reference_ids": [1, 2]}),
        finish(timing=pb.Timing(total_us=10, upstream_us=7), cost=cost, attempts=[failed, ok]),
    ]
    async with (
        scripted_gateway(events) as (target, _),
        GatewayClient(target, max_retries=0, timeout=10) as client,
    ):
        stream = client.chat_stream("m/x", "x")
        seen = [event async for event in stream]
        result = await stream.final()
    reference = RawContent("reference", {"reference_ids": [1.0, 2.0]})
    assert seen[1] == reference
    assert result.raw_content == (reference,)
    done = result.finish
    assert done is not None
    assert done == seen[-1]
    assert (done.upstream_us, done.cost_usd_micros, done.cost_currency, done.cost_usage_source) == (
        7, 12, "USD", "estimated"
    )  # fmt: skip
    assert done.attempts == (("a", "m1", "UNAVAILABLE"), ("p", "m", "ok"))
    assert done.attempt_reports == (
        AttemptReport("a", "m1", "UNAVAILABLE", "down", 5, 12),
        AttemptReport("p", "m", "ok", "", 9, None),
    )
