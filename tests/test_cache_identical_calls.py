"""Identical unary calls that arrive while the first is being answered ([cache], docs/caching.md):
they wait for its answer and are served it as a hit, instead of each asking upstream; when it fails
or leaves, they ask upstream at once, side by side. The cache's interceptor is driven directly, its
handler below held open by the test, so that "meanwhile" does not depend on timing."""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple

import grpc
import pytest
from rpc_util import chat

from provider_gateway.server.cache import interceptor
from provider_gateway.server.cache.interceptor import CacheInterceptor
from provider_gateway.server.cache.settings import CacheSettings
from provider_gateway.v1 import provider_service_pb2 as pb

METHOD = "/provider_gateway.v1.ProviderService/Chat"


class Details(NamedTuple):
    """grpc.HandlerCallDetails' fields."""

    method: str
    invocation_metadata: tuple[tuple[str, str], ...] = ()


class Context:
    """What the interceptor asks of a call's context: its metadata, and where its header goes."""

    def __init__(self, *metadata: tuple[str, str]) -> None:
        self.metadata = metadata
        self.said: list[str] = []

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata

    async def send_initial_metadata(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self.said.append(dict(metadata)["x-gateway-cache"])


class Upstream:
    """The handler below the cache: each call waits until the test lets it answer (or fail)."""

    def __init__(self) -> None:
        self.calls = 0
        self.called = asyncio.Event()
        self.answers: asyncio.Queue[pb.ChatResponse | Exception] = asyncio.Queue()

    async def chat(self, request: pb.ChatRequest, context: Any) -> pb.ChatResponse:
        self.calls += 1
        self.called.set()
        answer = await self.answers.get()
        if isinstance(answer, Exception):
            raise answer
        return answer


def answer(text: str) -> pb.ChatResponse:
    return pb.ChatResponse(
        text=text,
        finish=pb.Finish(
            reason=pb.FINISH_REASON_STOP,
            response_id=f"resp-{text}",
            cost=pb.Cost(amount_micros=120, currency="USD", known=True),
            attempts=[pb.Attempt(provider="mock", model="echo", outcome="ok")],
        ),
    )


async def served(upstream: Upstream, settings: CacheSettings | None = None) -> Any:
    interceptor = CacheInterceptor(settings or CacheSettings())

    async def below(_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any]:
        return grpc.unary_unary_rpc_method_handler(upstream.chat)

    handler = await interceptor.intercept_service(below, Details(METHOD))
    assert handler is not None
    return handler.unary_unary


async def waiting(*calls: asyncio.Task[Any]) -> None:
    """Until each call is suspended (a small request is keyed without suspending, so one turn of
    the loop takes each as far as it goes)."""
    for _ in range(3):
        await asyncio.sleep(0)
    assert not any(call.done() for call in calls)


async def test_calls_arriving_while_the_first_is_answered_are_served_its_answer_as_hits() -> None:
    upstream = Upstream()
    unary = await served(upstream)
    contexts = [Context() for _ in range(3)]
    first = asyncio.ensure_future(unary(chat("mock/echo", "hello"), contexts[0]))
    await upstream.called.wait()
    later = [asyncio.ensure_future(unary(chat("mock/echo", "hello"), c)) for c in contexts[1:]]
    await waiting(*later)
    upstream.answers.put_nowait(answer("once"))
    given = await first
    for call in later:
        again = await call
        assert again.text == given.text == "once"
        assert again.finish.response_id == "resp-once"
        assert not again.finish.attempts  # nothing was tried upstream for it
        assert again.finish.cost.amount_micros == 0
        assert again.finish.cost.known
        timing = again.finish.timing
        assert timing.upstream_us > 0  # the wait for the first call's answer
        assert timing.gateway_overhead_us == timing.total_us - timing.upstream_us
    assert given.finish.attempts  # the first call's own answer, as it came
    assert upstream.calls == 1
    assert [c.said for c in contexts] == [["miss"], ["hit"], ["hit"]]


async def test_when_the_first_call_fails_the_waiting_calls_ask_upstream_at_once_side_by_side() -> None:
    upstream = Upstream()
    unary = await served(upstream)
    first = asyncio.ensure_future(unary(chat("mock/echo", "hello"), Context()))
    await upstream.called.wait()
    contexts = [Context(), Context()]
    later = [asyncio.ensure_future(unary(chat("mock/echo", "hello"), c)) for c in contexts]
    await waiting(*later)
    upstream.answers.put_nowait(RuntimeError("upstream failed"))
    with pytest.raises(RuntimeError):
        await first
    await waiting(*later)
    assert upstream.calls == 3  # both asked, neither waits for the other's answer in turn
    upstream.answers.put_nowait(answer("a"))
    upstream.answers.put_nowait(answer("b"))
    assert sorted([(await call).text for call in later]) == ["a", "b"]
    assert [c.said for c in contexts] == [["miss"], ["miss"]]


async def test_a_waiting_caller_that_leaves_takes_nobody_else_with_it() -> None:
    upstream = Upstream()
    unary = await served(upstream)
    first = asyncio.ensure_future(unary(chat("mock/echo", "hello"), Context()))
    await upstream.called.wait()
    leaving, staying = (asyncio.ensure_future(unary(chat("mock/echo", "hello"), Context())) for _ in range(2))
    await waiting(leaving, staying)
    leaving.cancel()
    await asyncio.sleep(0)
    upstream.answers.put_nowait(answer("kept"))
    assert (await first).text == (await staying).text == "kept"
    assert leaving.cancelled()
    assert upstream.calls == 1


async def test_when_the_first_caller_leaves_a_waiting_one_asks_upstream() -> None:
    upstream = Upstream()
    unary = await served(upstream)
    first = asyncio.ensure_future(unary(chat("mock/echo", "hello"), Context()))
    await upstream.called.wait()
    second = asyncio.ensure_future(unary(chat("mock/echo", "hello"), Context()))
    await waiting(second)
    upstream.called.clear()
    first.cancel()
    await upstream.called.wait()
    upstream.answers.put_nowait(answer("fresh"))
    assert (await second).text == "fresh"
    assert first.cancelled()
    assert upstream.calls == 2


@pytest.mark.parametrize("directive", ["no-store", "no-cache"])
async def test_a_call_that_may_not_be_served_from_the_cache_does_not_wait(directive: str) -> None:
    upstream = Upstream()
    unary = await served(upstream)
    first = asyncio.ensure_future(unary(chat("mock/echo", "hello"), Context()))
    await upstream.called.wait()
    context = Context(("cache-control", directive))
    own = asyncio.ensure_future(unary(chat("mock/echo", "hello"), context))
    await waiting(own)
    assert upstream.calls == 2  # it went upstream beside the first, not after it
    upstream.answers.put_nowait(answer("a"))
    upstream.answers.put_nowait(answer("b"))
    assert {(await first).text, (await own).text} == {"a", "b"}
    assert context.said == ["miss"]


async def test_different_requests_never_wait_for_each_other() -> None:
    upstream = Upstream()
    unary = await served(upstream)
    first = asyncio.ensure_future(unary(chat("mock/echo", "hello"), Context()))
    await upstream.called.wait()
    other = asyncio.ensure_future(unary(chat("mock/echo", "goodbye"), Context()))
    await waiting(other)
    assert upstream.calls == 2
    upstream.answers.put_nowait(answer("a"))
    upstream.answers.put_nowait(answer("b"))
    await asyncio.gather(first, other)


async def test_an_answer_too_large_to_keep_is_still_served_to_the_calls_that_waited() -> None:
    upstream = Upstream()
    unary = await served(upstream, CacheSettings(max_entry_bytes=64, max_bytes=1024))
    first = asyncio.ensure_future(unary(chat("mock/echo", "hello"), Context()))
    await upstream.called.wait()
    context = Context()
    second = asyncio.ensure_future(unary(chat("mock/echo", "hello"), context))
    await waiting(second)
    upstream.answers.put_nowait(answer("x" * 200))
    await first
    assert (await second).text == "x" * 200
    assert context.said == ["hit"]
    assert upstream.calls == 1
    later = asyncio.ensure_future(unary(chat("mock/echo", "hello"), Context()))
    await waiting(later)
    assert upstream.calls == 2  # not kept: a later call asks again
    upstream.answers.put_nowait(answer("y"))
    await later


async def test_a_no_cache_call_beside_one_under_way_keeps_its_fresh_answer() -> None:
    upstream = Upstream()
    unary = await served(upstream)
    first = asyncio.ensure_future(unary(chat("mock/echo", "hello"), Context()))
    await upstream.called.wait()
    fresh = asyncio.ensure_future(unary(chat("mock/echo", "hello"), Context(("cache-control", "no-cache"))))
    await waiting(fresh)
    upstream.answers.put_nowait(RuntimeError("upstream failed"))
    upstream.answers.put_nowait(answer("fresh"))
    with pytest.raises(RuntimeError):
        await first
    assert (await fresh).text == "fresh"
    context = Context()
    assert (await unary(chat("mock/echo", "hello"), context)).text == "fresh"
    assert context.said == ["hit"]
    assert upstream.calls == 2


async def test_past_the_cap_of_waiting_calls_a_call_takes_the_usual_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(interceptor, "MAX_WAITING_CALLS", 1)
    upstream = Upstream()
    unary = await served(upstream)
    first = asyncio.ensure_future(unary(chat("mock/echo", "hello"), Context()))
    await upstream.called.wait()
    waits, goes = (asyncio.ensure_future(unary(chat("mock/echo", "hello"), Context())) for _ in range(2))
    await waiting(waits, goes)
    assert upstream.calls == 2  # the first, and the one past the cap
    for text in ("a", "b"):
        upstream.answers.put_nowait(answer(text))
    await asyncio.gather(first, waits, goes)
    assert upstream.calls == 2
