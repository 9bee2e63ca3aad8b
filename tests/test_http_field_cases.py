"""The upstream HTTP layer in cases the field brings and loopback hides: a POST held and then lost, a
slow or hung resolver, a queued caller cancelled as a slot frees. Each asserts what the reference
clients (aiohttp, httpx) do, on every transport. Raw sockets on 127.0.0.1, as in tests/test_http_h1.py."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from test_http_h1 import OK, RawUpstream

from provider_gateway.errors import GatewayError
from provider_gateway.http import Timeouts, Upstream, UpstreamPool, h1
from provider_gateway.http.pool import TRANSPORTS


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def pool(transport: str) -> AsyncIterator[UpstreamPool]:
    upstreams = UpstreamPool(transport=transport)
    yield upstreams
    await upstreams.aclose()


def upstream(pool: UpstreamPool, url: str, **kwargs: object) -> Upstream:
    return Upstream(pool.host(url), url, "acme", **kwargs)  # type: ignore[arg-type]


async def test_a_post_the_upstream_held_before_its_connection_died_is_not_sent_again(
    pool: UpstreamPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(h1, "STALE_S", 0.1)  # the upstream holds the POST longer than the race takes

    # The second POST goes out on the kept connection; the upstream reads it, works on it (a
    # non-streamed generation sends its head only at the end), then its process dies: it may have
    # generated (and billed) the answer. h1 reads "closed before any byte" on a reused connection
    # as the keep-alive race and sends the POST again, unseen by the router's retry budget;
    # aiohttp re-sends only idempotent methods, httpx nothing.
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        if n == 2:
            await asyncio.sleep(0.3)  # "generating"
            writer.close()
        else:
            writer.write(OK)

    async with RawUpstream(answer) as fake:
        up = upstream(pool, fake.url)
        assert await up.request_json("POST", "/v1/chat/completions", json={"n": 1}) == {"ok": True}
        with contextlib.suppress(GatewayError):  # the upstream died: an error either way
            await up.request_json("POST", "/v1/chat/completions", json={"n": 2})
    posts_of_two = [r for r in fake.requests if r.endswith(b'{"n":2}')]
    assert len(posts_of_two) == 1, f"the upstream received the second POST {len(posts_of_two)} times"


class Resolver:
    """socket.getaddrinfo (what every transport's resolver thread calls), counted, and held while
    `hung` is set (a resolver that does not answer), for names only."""

    def __init__(self) -> None:
        self.real = socket.getaddrinfo
        self.calls = 0
        self.hung = False
        self.release = threading.Event()

    def __call__(self, host: object, *args: object, **kwargs: object) -> object:
        self.calls += 1
        if self.hung and host == "localhost":
            self.release.wait(10)
        return self.real(host, *args, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Resolver]:
    wrapped = Resolver()
    monkeypatch.setattr(socket, "getaddrinfo", wrapped)
    yield wrapped
    wrapped.release.set()


def answering_ok() -> Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await asyncio.sleep(0.05)  # every request of a burst needs a connection of its own
        writer.write(OK)

    return answer


@pytest.mark.parametrize("transport", ["h1", "aiohttp"])  # httpx's httpcore looks a name up per connection
async def test_a_burst_of_first_connections_to_one_origin_resolves_its_name_once(
    pool: UpstreamPool, resolver: Resolver
) -> None:
    # 20 streams start at once (a cold start, the pool emptied by a restart): aiohttp resolves the
    # name once for all of them (and caches it 10 s); h1 makes 20 lookups, each a thread of the
    # loop's default executor (6 threads on 2 cores), so the 20 wait in line for a slow resolver.
    async with RawUpstream(answering_ok()) as fake:
        url = fake.url.replace("127.0.0.1", "localhost")
        up = upstream(pool, url)
        await asyncio.gather(*(up.request_json("GET", "/x") for _ in range(20)))
        assert fake.connections == 20
    assert resolver.calls == 1


async def test_an_origin_given_by_its_address_connects_while_another_name_does_not_resolve(
    pool: UpstreamPool, resolver: Resolver
) -> None:
    # The resolver hangs for one vendor's name; a first request to a local model server given by
    # its IP address needs no lookup at all. h1 still queues a getaddrinfo for it behind the hung
    # ones in the default executor, so it fails with "cannot connect" after its connect timeout.
    resolver.hung = True
    async with RawUpstream(answering_ok()) as fake:
        named = upstream(pool, fake.url.replace("127.0.0.1", "localhost"))
        stuck = [asyncio.create_task(named.request_json("GET", "/x")) for _ in range(12)]
        await asyncio.sleep(0.1)
        local = upstream(pool, fake.url, timeouts=Timeouts(connect=1.0))
        try:
            assert await local.request_json("GET", "/x") == {"ok": True}
        finally:
            resolver.release.set()
            for task in stuck:
                task.cancel()
            await asyncio.gather(*stuck, return_exceptions=True)


async def test_a_caller_cancelled_while_queued_for_a_connection_is_cancelled_whenever_a_slot_frees(
    transport: str,
) -> None:
    # max_connections reached, a second caller queued for the slot. Its client goes away (or its
    # head timer expires: TimerSet._check cancels every due task in one callback) in the same turn
    # of the loop as the first stream is left and its slot freed. h1's _pass_on pops the cancelled
    # waiter; the waiter's own cleanup then calls deque.remove on it: ValueError, which
    # H1HostClient.send words as LocalProtocolError, a retryable "connection failed". The cancel is
    # swallowed: the caller goes on, and a router fails over, sending a request nobody will read.
    pool = UpstreamPool(transport=transport, max_connections=1)
    open_stream = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n"

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        if n == 1:
            writer.write(open_stream)
            await reader.read()
        else:
            writer.write(OK)

    async def caller(up: Upstream) -> object:
        try:
            return await up.request_json("POST", "/x", json={"try": 1})
        except GatewayError as error:
            if not error.retryable:
                raise
            return await up.request_json("POST", "/x", json={"try": 2})  # a failover, as the router's

    try:
        async with RawUpstream(answer) as fake:
            up = upstream(pool, fake.url)
            with contextlib.suppress(LookupError):
                async with up.stream("POST", "/s", json={}) as chunks:
                    await anext(chunks)
                    queued = asyncio.create_task(caller(up))
                    await asyncio.sleep(0.05)  # queued for the one connection
                    queued.cancel()  # the client is gone...
                    raise LookupError("...and its stream is left in the same turn: the slot is freed")
            with pytest.raises(asyncio.CancelledError):
                await queued
            await asyncio.sleep(0.1)
            assert len(fake.requests) == 1, "requests sent for a caller that was cancelled"
    finally:
        await pool.aclose()
