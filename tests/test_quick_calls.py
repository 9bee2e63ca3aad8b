"""Embed and CountTokens use deployments as chat attempts do: breakers, concurrency limits, holds."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from routing_support import chat, make_router, mock, run_stream, until

from provider_gateway.domain import CountTokensRequest, EmbedRequest
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.providers.mock import MockModel, MockProvider
from provider_gateway.routing.router import Router

pytestmark = pytest.mark.timeout(30)


def group(primary: str, *, routing: str = "") -> str:
    """Embedding model `e` on provider a (behaving as `primary`) and b (healthy); group g prefers a."""
    return f"""
[providers.a]
kind = "mock"
[providers.a.models.e]
embeddings = true
{primary}
[providers.b]
kind = "mock"
[providers.b.models.e]
embeddings = true
{routing}
[groups.g]
deployments = [{{ provider = "a", model = "e", weight = 1 }}, {{ provider = "b", model = "e", weight = 0 }}]
"""


def counting(provider: MockProvider) -> Callable[[], int]:
    """Count the provider's Embed calls; returns the count's reader."""
    calls = 0
    original: Callable[[EmbedRequest], Awaitable[Any]] = provider.embed

    async def counted(request: EmbedRequest) -> Any:
        nonlocal calls
        calls += 1
        return await original(request)

    provider.embed = counted  # type: ignore[method-assign]
    return lambda: calls


async def embed(router: Router, model: str = "g") -> str:
    route, result = await router.embed(EmbedRequest(model, ["x"]))
    assert len(result.vectors) == 1
    return route.provider


async def test_embed_failures_open_the_breaker_and_the_broken_deployment_is_asked_once() -> None:
    router = make_router(
        group(
            'fault = "error_before_first_token"',
            routing="[routing.breaker]\nconsecutive_failures = 1\ncooldown_s = 60",
        )
    )
    calls = counting(mock(router, "a"))
    assert [await embed(router) for _ in range(5)] == ["b"] * 5
    assert calls() == 1  # then its breaker is open: skipped
    # Counting skips it too (the mock would answer it: only the breaker keeps it away).
    route, count = await router.count_tokens(CountTokensRequest("g", text="hello"))
    assert route.provider == "b"
    assert count.input_tokens > 0


async def test_with_every_breaker_open_embed_probes_early_then_fails_at_once_with_the_wait() -> None:
    """As a chat would: the open deployment gets one early probe; once that failed, the next call
    is refused at once, told when the next probe goes."""
    router = make_router(
        group(
            'fault = "error_before_first_token"',
            routing="[routing.breaker]\nconsecutive_failures = 1\ncooldown_s = 60",
        )
    )
    calls = counting(mock(router, "a"))
    with pytest.raises(GatewayError) as first:
        await embed(router, "a/e")
    assert first.value.kind is ErrorKind.UNAVAILABLE
    with pytest.raises(GatewayError, match="injected"):
        await embed(router, "a/e")  # the early probe, failing as the provider does
    assert calls() == 2
    with pytest.raises(GatewayError) as third:
        await embed(router, "a/e")
    assert calls() == 2  # the next probe waits a second: not called again
    assert third.value.kind is ErrorKind.UNAVAILABLE
    assert "the next probe goes in" in third.value.message
    assert 0 < (third.value.retry_after or 0) <= 1


async def test_a_429_holds_the_embedding_deployment_for_the_wait_it_named() -> None:
    router = make_router(group('fault = "rate_limit"\nretry_after_ms = 30000'))
    calls = counting(mock(router, "a"))
    assert [await embed(router) for _ in range(4)] == ["b"] * 4
    assert calls() == 1
    for _ in range(2):  # the plain route is another deployment: asked once, then held as well
        with pytest.raises(GatewayError) as held:
            await embed(router, "a/e")
        assert held.value.kind is ErrorKind.RESOURCE_EXHAUSTED  # with nowhere else to go: told to wait
        assert 25 < (held.value.retry_after or 0) <= 30
    assert calls() == 2


async def test_embed_keeps_to_the_deployments_concurrency_limit_and_gives_the_slot_back() -> None:
    router = make_router(group("first_token_delay_ms = 300", routing="[routing.limiter]\ninitial = 1"))
    calls = counting(mock(router, "a"))
    slow = asyncio.ensure_future(embed(router))
    await until(lambda: calls() == 1)
    assert await embed(router) == "b"  # a's one slot is taken
    assert await slow == "a"
    cancelled = asyncio.ensure_future(embed(router))
    await until(lambda: calls() == 2)
    cancelled.cancel()
    await asyncio.gather(cancelled, return_exceptions=True)
    assert await embed(router) == "a"  # the cancelled call gave its slot back


async def test_a_local_token_estimate_answers_while_its_deployment_is_open(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """OpenAI has no count endpoint: its count is the gateway's own estimate, which no upstream
    outage stops, so an open breaker of the deployment must not refuse it."""
    monkeypatch.setenv("PG_QUICK_KEY", "sk-test")
    router = make_router(
        '[providers.o]\nkind = "openai"\nbase_url = "http://127.0.0.1:9/v1"\napi_key_env = "PG_QUICK_KEY"\n'
        "[routing.breaker]\nconsecutive_failures = 1\ncooldown_s = 60\n"
    )
    breaker = router.plan("o/gpt-4o").deployments[0].breaker
    breaker.record_failure(breaker.acquire())  # an outage of its chat calls
    route, count = await router.count_tokens(CountTokensRequest("o/gpt-4o", text="hello there"))
    assert (route.provider, count.estimated) == ("o", True)
    assert count.input_tokens > 0


async def test_an_embed_waits_in_the_queue_for_a_slot_and_is_refused_naming_the_queue_timeout() -> None:
    router = make_router(
        group(
            "first_token_delay_ms = 5000",
            routing="[routing]\nqueue_timeout_s = 0.2\n[routing.limiter]\ninitial = 1",
        )
    )
    calls = counting(mock(router, "a"))
    holder = asyncio.ensure_future(embed(router, "a/e"))
    await until(lambda: calls() == 1)
    try:
        with pytest.raises(GatewayError) as refused:
            await embed(router, "a/e")
    finally:
        holder.cancel()
        await asyncio.gather(holder, return_exceptions=True)
    assert refused.value.kind is ErrorKind.RESOURCE_EXHAUSTED
    assert "queue_timeout_s" in refused.value.message
    assert calls() == 1


async def test_embed_behind_a_half_open_probe_is_told_so_as_chat_is() -> None:
    """A half-open deployment whose one probe is in flight: Embed is refused at once, naming the
    probe and when to retry, as Chat is; it once waited out queue_timeout_s in the capacity queue
    and then blamed the deployments' concurrency."""
    router = make_router(
        '[providers.a]\nkind = "mock"\n[providers.a.models.m]\nembeddings = true\n'
        'fault = "error_before_first_token"\n'
        "[routing]\nretries = 0\nqueue_timeout_s = 30\n"
        "[routing.breaker]\nconsecutive_failures = 1\ncooldown_s = 0.2\nhalf_open_probes = 1\n"
    )
    a = mock(router, "a")
    with pytest.raises(GatewayError):
        await run_stream(router, chat("a/m"))  # opens the breaker
    await asyncio.sleep(0.3)  # half-open
    a.set_model("m", MockModel(tokens=1, embeddings=True, first_token_delay_ms=60000))
    probe = asyncio.ensure_future(run_stream(router, chat("a/m")))  # holds the one probe slot
    await until(lambda: a.stats.started == 2)
    try:
        with pytest.raises(GatewayError) as caught:
            async with asyncio.timeout(10):  # a regression waits in the queue (30 s) instead
                await router.embed(EmbedRequest("a/m", ["x"]))
    finally:
        probe.cancel()
        await asyncio.gather(probe, return_exceptions=True)
    assert caught.value.kind is ErrorKind.UNAVAILABLE
    assert "being probed" in caught.value.message
    assert caught.value.retry_after == 1.0
    await router.aclose()
