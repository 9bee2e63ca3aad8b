"""`max_retries`: the Python client retries UNAVAILABLE and RESOURCE_EXHAUSTED (after the delay
the gateway asked for), streams only before their first event, and never anything else. The
gateway's own retries are off here, so every attempt the mock counts is one the client made."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from routing_support import until

from provider_gateway.errors import ErrorKind
from provider_gateway.errors import GatewayError as ServerError
from provider_gateway.providers.mock import MockScript
from provider_gateway_client import (
    GatewayClient,
    GatewayError,
    NotFoundError,
    RateLimitError,
    SyncGatewayClient,
    UnavailableError,
)
from provider_gateway_client.retries import RetryPolicy

CONFIG = """
[routing]
retries = 0
[routing.breaker]
consecutive_failures = 1000000
min_calls = 1000000

[providers.mock.models.limited]
fault = "rate_limit"
retry_after_ms = 40

[providers.mock.models.held]
fault = "rate_limit"
retry_after_ms = 30000

[providers.mock.models.down]
fault = "error_before_first_token"
fault_status = "UNAVAILABLE"
fault_message = "upstream is down"

[providers.mock.models.cancelled]
fault = "error_before_first_token"
fault_status = "CANCELLED"
fault_message = "the provider cancelled the request"

[providers.mock.models.cut]
fault = "error_after_tokens"
fault_after_tokens = 2
fault_status = "UNAVAILABLE"
"""


@pytest.fixture
async def gw(gateway_factory):
    async with gateway_factory(CONFIG) as running:
        yield running


def started(gw) -> int:
    return int(gw.provider("mock").stats.started)


async def test_a_rate_limited_call_is_tried_max_retries_more_times(gw) -> None:
    async with GatewayClient(gw.target, max_retries=2) as client:
        with pytest.raises(RateLimitError) as info:
            await client.chat("mock/limited", "Hi")
    assert started(gw) == 3
    assert info.value.retry_after == 0.04
    assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_max_retries_zero_makes_one_attempt(gw) -> None:
    async with GatewayClient(gw.target, max_retries=0) as client:
        with pytest.raises(RateLimitError):
            await client.chat("mock/limited", "Hi")
    assert started(gw) == 1


async def test_an_unavailable_stream_is_retried_before_its_first_event(gw) -> None:
    async with GatewayClient(gw.target, max_retries=2) as client:
        with pytest.raises(UnavailableError, match="upstream is down"):
            await client.chat_stream("mock/down", "Hi").final()
    assert started(gw) == 3


async def test_a_stream_that_failed_after_output_is_not_retried(gw) -> None:
    seen: list[str] = []

    async def read(client: GatewayClient) -> None:
        async for text in client.stream_text("mock/cut", "Hi"):
            seen.append(text)

    async with GatewayClient(gw.target, max_retries=2) as client:
        with pytest.raises(UnavailableError):
            await read(client)
    assert "".join(seen) == "Mock answer:"  # shown once, never repeated by a retry
    assert started(gw) == 1


async def test_a_cancel_the_client_did_not_ask_for_is_retried(gw) -> None:
    # The server's side ended the call CANCELLED (here a provider's cancel; at a drain, gRPC's own
    # for a call that arrived as the server stopped taking calls): nothing was served.
    async with GatewayClient(gw.target, max_retries=2) as client:
        with pytest.raises(GatewayError) as info:
            await client.chat("mock/cancelled", "Hi")
    assert info.value.code == grpc.StatusCode.CANCELLED
    assert started(gw) == 3


async def test_a_retry_that_succeeds_returns_the_answer(gw) -> None:
    down = ServerError(ErrorKind.UNAVAILABLE, "blip", provider="mock")
    gw.provider("mock").push(MockScript(events=[], error=down))
    gw.provider("mock").push(MockScript(events=[], error=down))
    async with GatewayClient(gw.target, max_retries=2) as client:
        answer = await client.chat("mock/echo", "Hi")
    assert answer.text.startswith("Mock answer: Hi")
    assert started(gw) == 3


async def test_the_sync_client_retries_streams_too(gw) -> None:
    def use() -> None:
        with (
            SyncGatewayClient(gw.target, max_retries=1) as client,
            client.chat_stream("mock/down", "Hi") as s,
        ):
            s.final()

    with pytest.raises(UnavailableError):
        await asyncio.to_thread(use)
    assert started(gw) == 2


async def test_closing_the_sync_client_under_a_call_ends_it_cancelled_without_a_retry(gw) -> None:
    client = SyncGatewayClient(gw.target, max_retries=2)
    calling = asyncio.create_task(asyncio.to_thread(client.chat, "mock/slow", "Hi"))
    await until(lambda: started(gw))  # the call is at the gateway
    client.close()
    with pytest.raises(GatewayError) as info:
        async with asyncio.timeout(10):
            await calling
    assert info.value.code == grpc.StatusCode.CANCELLED
    assert started(gw) == 1


async def test_a_wait_longer_than_the_timeout_is_not_taken(gw) -> None:
    async with GatewayClient(gw.target, max_retries=5) as client:
        with pytest.raises(RateLimitError):
            await client.chat("mock/held", "Hi", timeout=5)  # less than the 30 s asked for
    assert started(gw) == 1


def test_the_policy_retries_only_what_is_safe() -> None:
    policy = RetryPolicy(max_retries=2)
    limited = GatewayError(grpc.StatusCode.RESOURCE_EXHAUSTED, "later", retry_after=1.5)
    missing = NotFoundError(grpc.StatusCode.NOT_FOUND, "no such model")
    down = GatewayError(grpc.StatusCode.UNAVAILABLE, "down")
    wait = policy.wait_before(0, limited, None)
    assert wait is not None
    assert 1.5 <= wait <= 1.65  # the gateway's delay, plus a little jitter
    assert policy.wait_before(2, limited, None) is None  # retries used up
    assert policy.wait_before(0, missing, None) is None
    assert policy.wait_before(0, GatewayError(grpc.StatusCode.INTERNAL, "x"), None) is None
    assert policy.wait_before(0, GatewayError(grpc.StatusCode.RESOURCE_EXHAUSTED, "x", 3600), None) is None
    too_large = GatewayError(grpc.StatusCode.RESOURCE_EXHAUSTED, "Received message larger than max (9 vs. 4)")
    assert policy.wait_before(0, too_large, None) is None  # not a rate limit: it would fail again
    assert policy.wait_before(0, GatewayError(grpc.StatusCode.CANCELLED, "CANCELLED"), None) is not None
    local = GatewayError(grpc.StatusCode.CANCELLED, "Locally cancelled by application!")
    assert policy.wait_before(0, local, None) is None  # the caller's own cancel (sync API)
    closed = GatewayError(grpc.StatusCode.CANCELLED, "Channel closed!")
    assert policy.wait_before(0, closed, None) is None  # the client closed under the call
    waits = [policy.wait_before(1, down, None) for _ in range(50)]
    assert all(w is not None and 0.5 <= w <= 1.0 for w in waits)  # 2nd retry: 1 s, halved at most
    assert len(set(waits)) > 1  # jitter: clients that failed together do not retry together
