"""The shared HTTP layer against a fake upstream: reuse counting, hooks, timeouts, streams, cancels."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import ssl
from collections.abc import AsyncIterator
from importlib import metadata
from typing import Any

import grpc
import pytest
from conftest import run_gateway
from vendor_cases import chat_request

from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.fakes import FakeUpstream, Reply
from provider_gateway.http import HostClient, OutgoingRequest, Timeouts, Upstream, UpstreamPool, deadline
from provider_gateway.http.pool import TRANSPORTS, H1HostClient


@pytest.fixture
async def fake() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream() as server:
        yield server


@pytest.fixture(params=TRANSPORTS)
async def pool(request: pytest.FixtureRequest) -> AsyncIterator[UpstreamPool]:
    upstreams = UpstreamPool(transport=request.param)
    yield upstreams
    await upstreams.aclose()


def upstream(pool: UpstreamPool, url: str, **kwargs: object) -> Upstream:
    return Upstream(pool.host(url), url, "acme", headers={"authorization": "Bearer k-123"}, **kwargs)  # type: ignore[arg-type]


async def collect(up: Upstream, path: str, into: list[bytes]) -> None:
    async with up.stream("POST", path, json={}) as chunks:
        async for chunk in chunks:
            into.append(chunk)


async def test_one_client_per_origin_and_connections_are_reused(
    pool: UpstreamPool, fake: FakeUpstream
) -> None:
    fake.on("GET", "/v1/ping", lambda r: Reply.json({"ok": True}))
    assert pool.host(fake.url + "/v1") is pool.host(fake.url + "/other")
    up = upstream(pool, fake.url + "/v1")
    for _ in range(20):
        assert await up.request_json("GET", "/ping") == {"ok": True}
    stats = pool.stats()[fake.url]
    assert (stats.requests, stats.connections) == (20, 1)
    assert stats.reuse_ratio == pytest.approx(0.95)


async def test_a_connection_the_upstream_closed_is_counted_again(
    pool: UpstreamPool, fake: FakeUpstream
) -> None:
    fake.on("GET", "/ping", lambda r: Reply.json({"ok": True}))
    fake.script("/s", Reply(chunks=[b"one"], content_type="text/plain", then="cut"))
    up = upstream(pool, fake.url)
    await up.request_json("GET", "/ping")
    with pytest.raises(GatewayError, match="was cut"):
        await collect(up, "/s", [])
    await up.request_json("GET", "/ping")
    await up.request_json("GET", "/ping")
    stats = pool.stats()[fake.url]
    assert (stats.requests, stats.connections) == (4, 2)  # the cut one's connection is not reused
    assert stats.reuse_ratio == pytest.approx(0.5)


async def test_cookies_an_upstream_sets_are_never_sent_back(pool: UpstreamPool, fake: FakeUpstream) -> None:
    """The pool is shared by every caller: a cookie set in answer to one must not reach the next."""
    cookie = {"set-cookie": "__cf_bm=caller-a; Path=/; HttpOnly"}
    fake.on("GET", "/ping", lambda r: Reply.json({"ok": True}, headers=cookie))
    # By name: a cookie jar refuses cookies from a bare IP address, so 127.0.0.1 would prove nothing.
    up = upstream(pool, fake.url.replace("127.0.0.1", "localhost"))
    await up.request_json("GET", "/ping")
    await up.request_json("GET", "/ping")
    assert "cookie" not in fake.last("/ping").headers


async def test_request_hook_adds_headers_to_every_request(pool: UpstreamPool, fake: FakeUpstream) -> None:
    fake.on("POST", "/x", lambda r: Reply.json({}))
    seen_by_hook: list[str] = []

    def hook(request: OutgoingRequest) -> None:
        request.headers["traceparent"] = "00-abc-def-01"
        seen_by_hook.append(request.provider)

    pool.add_request_hook(hook)
    await upstream(pool, fake.url).request_json("POST", "/x", json={"a": 1})
    seen = fake.last("/x")
    assert seen_by_hook == ["acme"]
    assert seen.headers["traceparent"] == "00-abc-def-01"
    assert seen.headers["authorization"] == "Bearer k-123"
    assert seen.json() == {"a": 1}
    # The upstream sees the gateway and its version, not the HTTP library.
    assert seen.headers["user-agent"] == f"provider-gateway/{metadata.version('provider-gateway-server')}"


async def test_error_before_first_byte_maps_status_and_retry_after(
    pool: UpstreamPool, fake: FakeUpstream
) -> None:
    fake.script("/x", Reply.error(429, {"error": {"message": "slow down"}}, {"retry-after": "3"}))
    with pytest.raises(GatewayError) as caught:
        async with upstream(pool, fake.url).stream("POST", "/x", json={}) as chunks:
            [c async for c in chunks]
    assert (caught.value.kind, caught.value.retry_after) == (ErrorKind.RESOURCE_EXHAUSTED, 3.0)


async def test_stream_yields_chunks_and_a_cut_is_an_error(pool: UpstreamPool, fake: FakeUpstream) -> None:
    fake.script("/s", Reply(chunks=[b"one", b"two"], content_type="text/plain"))
    fake.script("/s", Reply(chunks=[b"one"], content_type="text/plain", then="cut"))
    up = upstream(pool, fake.url)
    async with up.stream("POST", "/s", json={}) as chunks:
        assert b"".join([c async for c in chunks]) == b"onetwo"
    received: list[bytes] = []
    with pytest.raises(GatewayError, match="was cut") as caught:
        await collect(up, "/s", received)
    assert received == [b"one"]
    assert caught.value.kind is ErrorKind.UNAVAILABLE
    assert caught.value.retryable


async def test_cancel_closes_the_upstream_connection(pool: UpstreamPool, fake: FakeUpstream) -> None:
    fake.script("/s", Reply(chunks=[b"first"], content_type="text/plain", then="hang"))
    got_first = asyncio.Event()

    async def consume() -> None:
        async with upstream(pool, fake.url).stream("POST", "/s", json={}) as chunks:
            async for _ in chunks:
                got_first.set()

    task = asyncio.create_task(consume())
    async with asyncio.timeout(10):
        await got_first.wait()
    task.cancel()
    async with asyncio.timeout(10):
        await fake.disconnected.wait()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_idle_timeout_and_deadline_cap(pool: UpstreamPool, fake: FakeUpstream) -> None:
    fake.script("/s", Reply(chunks=[b"a"], content_type="text/plain", then="hang"))
    fake.script("/s", Reply(chunks=[b"a"], content_type="text/plain", then="hang"))
    up = upstream(pool, fake.url, timeouts=Timeouts(idle=0.2))
    with pytest.raises(GatewayError) as idle:
        async with up.stream("POST", "/s", json={}) as chunks:
            [c async for c in chunks]
    assert idle.value.kind is ErrorKind.UNAVAILABLE
    slow = upstream(pool, fake.url, timeouts=Timeouts(idle=60))
    token = deadline.set_deadline(0.2)
    try:
        with pytest.raises(GatewayError) as late:
            async with slow.stream("POST", "/s", json={}) as chunks:
                [c async for c in chunks]
    finally:
        deadline.reset(token)
    assert late.value.kind is ErrorKind.DEADLINE_EXCEEDED


async def test_idle_timeout_is_per_read_not_per_stream(pool: UpstreamPool, fake: FakeUpstream) -> None:
    # Gaps under the idle timeout never end a stream, however long it runs in total; and time the
    # consumer spends with a chunk (a slow gRPC client) is not upstream idleness.
    pieces = [b"a", b"b", b"c", b"d", b"e"]
    fake.script("/s", Reply(chunks=pieces, content_type="text/plain", chunk_delay_s=0.3))
    fake.script("/s", Reply(chunks=pieces, content_type="text/plain"))
    up = upstream(pool, fake.url, timeouts=Timeouts(idle=1.0))
    async with up.stream("POST", "/s", json={}) as chunks:
        assert b"".join([c async for c in chunks]) == b"abcde"
    eager = upstream(pool, fake.url, timeouts=Timeouts(idle=0.2))
    received = b""
    async with eager.stream("POST", "/s", json={}) as chunks:
        async for chunk in chunks:
            received += chunk
            await asyncio.sleep(0.3)
    assert received == b"abcde"


async def test_a_stream_read_to_its_end_is_idle_no_more(pool: UpstreamPool, fake: FakeUpstream) -> None:
    # The read that meets the body's end (or fails) may have waited: the watch must stop with it,
    # or the work done with the last events inside the block (a decoder's final flush, a slow
    # consumer of them) would be cancelled as an idle upstream once the timeout passed.
    fake.script("/s", Reply(chunks=[b"a", b"b"], content_type="text/plain", chunk_delay_s=0.1))
    up = upstream(pool, fake.url, timeouts=Timeouts(idle=0.2))
    async with up.stream("POST", "/s", json={}) as chunks:
        assert b"".join([c async for c in chunks]) == b"ab"
        await asyncio.sleep(0.5)  # past the idle timeout, with nothing left to read


async def test_the_streams_of_one_upstream_are_timed_each_by_its_own_reads(
    pool: UpstreamPool, fake: FakeUpstream
) -> None:
    # One timer serves all the streams of an upstream (http/idle.py): a stream that goes quiet is
    # cut by the idle timeout, one under a shorter deadline by the deadline, while a stream whose
    # reads keep coming within the timeout runs on well past it, all at the same time.
    fake.script("/quiet", Reply(chunks=[b"a"], content_type="text/plain", then="hang"))
    fake.script("/late", Reply(chunks=[b"a"], content_type="text/plain", then="hang"))
    pieces = [b"%d" % n for n in range(12)]  # 1.1 s of reads: well past the timeout
    fake.script("/steady", Reply(chunks=pieces, content_type="text/plain", chunk_delay_s=0.1))
    # An idle timeout of 6x the gap between reads: room for a busy machine.
    up = upstream(pool, fake.url, timeouts=Timeouts(idle=0.6))

    async def under_deadline(path: str, into: list[bytes]) -> None:
        token = deadline.set_deadline(0.15)
        try:
            await collect(up, path, into)
        finally:
            deadline.reset(token)

    quiet: list[bytes] = []
    late: list[bytes] = []
    steady: list[bytes] = []
    async with asyncio.timeout(10):  # only so that a regression fails instead of hanging the suite
        results = await asyncio.gather(
            collect(up, "/quiet", quiet),
            under_deadline("/late", late),
            collect(up, "/steady", steady),
            return_exceptions=True,
        )
    idle, cut_by_deadline, whole = results
    assert isinstance(idle, GatewayError)
    assert idle.kind is ErrorKind.UNAVAILABLE
    assert "no stream data from acme within 0.6 s" in idle.message
    assert isinstance(cut_by_deadline, GatewayError)
    assert cut_by_deadline.kind is ErrorKind.DEADLINE_EXCEEDED
    assert whole is None
    assert steady == pieces
    assert quiet == late == [b"a"]
    # The timer carries on for the upstream's next streams.
    fake.script("/quiet", Reply(chunks=[b"b"], content_type="text/plain", then="hang"))
    with pytest.raises(GatewayError, match=r"no stream data from acme within 0\.6 s"):
        async with asyncio.timeout(10):
            await collect(up, "/quiet", quiet)


async def test_compressed_bodies_arrive_decoded(pool: UpstreamPool, fake: FakeUpstream) -> None:
    # The gateway accepts gzip (as httpx's client did): a stream and an error body are decoded
    # too, not only whole bodies, so a compressed SSE stream relays and a 429 says why.
    events = b'data: {"text":"hi"}\n\n' * 40
    packed = gzip.compress(events)
    gzipped = {"content-encoding": "gzip"}
    fake.script(
        "/s", Reply(chunks=[packed[:30], packed[30:]], content_type="text/event-stream", headers=gzipped)
    )
    fake.script(
        "/x", Reply(status=429, body=gzip.compress(b'{"error":{"message":"slow down"}}'), headers=gzipped)
    )
    fake.script("/j", Reply(body=gzip.compress(b'{"ok":true}'), headers=gzipped))
    up = upstream(pool, fake.url)
    async with up.stream("POST", "/s", json={}) as chunks:
        assert b"".join([c async for c in chunks]) == events
    with pytest.raises(GatewayError, match="rate limited by acme: slow down"):
        await up.request_json("POST", "/x", json={})
    assert await up.request_json("GET", "/j") == {"ok": True}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_whole_body_past_the_bound_fails_the_attempt_where_it_passes(
    transport: str, fake: FakeUpstream
) -> None:
    # One broken or hostile upstream must not take the server's memory: a body is counted as it
    # arrives (decoded), and reading stops at the bound, even while more keeps coming.
    limit = 128 * 1024
    piece = b"x" * (64 * 1024)
    fake.script("/endless", Reply(chunks=[b'{"a":"', piece, piece, piece], then="hang"))
    bomb = gzip.compress(b'{"a":"' + b"0" * (4 * limit) + b'"}')  # 2 KiB that decodes to 512 KiB
    fake.script("/bomb", Reply(body=bomb, headers={"content-encoding": "gzip"}))
    fake.script("/fits", Reply(body=b'{"a":"' + b"y" * (limit - 8) + b'"}'))
    pool = UpstreamPool(transport=transport, max_response_bytes=limit)
    try:
        up = upstream(pool, fake.url)
        for path in ("/endless", "/bomb"):
            with pytest.raises(GatewayError) as caught:
                await asyncio.wait_for(up.request_json("POST", path, json={}), 30)
            assert caught.value.kind is ErrorKind.UNAVAILABLE
            assert caught.value.retryable  # another deployment may answer
            assert f"acme sent a response body over {limit} bytes" in caught.value.message
        assert await up.request_json("POST", "/fits", json={}) == {"a": "y" * (limit - 8)}
    finally:
        await pool.aclose()


async def test_connection_refused_is_unavailable(pool: UpstreamPool) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(GatewayError, match="connection refused") as caught:
        await upstream(pool, url).request_json("GET", "/")
    assert caught.value.kind is ErrorKind.UNAVAILABLE
    assert caught.value.retryable


async def test_non_json_body_is_unavailable(pool: UpstreamPool, fake: FakeUpstream) -> None:
    fake.script("/x", Reply(body=b"<html>", content_type="text/html"))
    with pytest.raises(GatewayError, match="not JSON"):
        await upstream(pool, fake.url).request_json("GET", "/x")


def test_unknown_transport_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown HTTP transport"):
        UpstreamPool(transport="carrier-pigeon")
    assert type(UpstreamPool().host("http://h:1")) is H1HostClient  # the default
    assert type(UpstreamPool(transport="aiohttp").host("http://h:1")) is HostClient


async def test_first_byte_timeout_and_cancel_while_waiting_for_headers(
    pool: UpstreamPool, fake: FakeUpstream
) -> None:
    fake.script("/slow", Reply(stall=True), Reply(stall=True))
    with pytest.raises(GatewayError, match=r"no response from acme within 0\.2 s") as caught:
        await upstream(pool, fake.url, timeouts=Timeouts(first_byte=0.2)).request_json("GET", "/slow")
    assert caught.value.kind is ErrorKind.UNAVAILABLE
    assert caught.value.retryable
    async with asyncio.timeout(10):
        await fake.disconnected.wait()  # the timed-out request's connection was closed too
    fake.disconnected.clear()
    task = asyncio.create_task(upstream(pool, fake.url).request_json("GET", "/slow"))
    await fake.wait_for_requests(2)
    task.cancel()
    async with asyncio.timeout(10):
        await fake.disconnected.wait()


async def test_whole_requests_share_one_head_timer_yet_each_times_out_on_its_own(
    pool: UpstreamPool, fake: FakeUpstream
) -> None:
    # One timer serves all the heads an upstream's whole requests wait for (http/head_timer.py).
    # A later wait due sooner (a short deadline) re-arms it; when it fires for that one, the
    # other, due later, still times out, by its own setting and in its own words.
    fake.script("/slow", *[Reply(stall=True) for _ in range(3)])
    up = upstream(pool, fake.url, timeouts=Timeouts(first_byte=0.4))
    patient = asyncio.create_task(up.request_json("GET", "/slow"))
    await fake.wait_for_requests(1)
    token = deadline.set_deadline(0.1)
    try:
        hurried = asyncio.create_task(up.request_json("GET", "/slow"))  # the task keeps the deadline
    finally:
        deadline.reset(token)
    async with asyncio.timeout(10):  # only so that a regression fails instead of hanging the suite
        with pytest.raises(GatewayError, match="deadline passed waiting for response") as late:
            await hurried
        assert not patient.done()  # the timer that ended the hurried wait left this one waiting
        with pytest.raises(GatewayError, match=r"no response from acme within 0\.4 s") as slow:
            await patient
    assert late.value.kind is ErrorKind.DEADLINE_EXCEEDED
    assert (slow.value.kind, slow.value.retryable) == (ErrorKind.UNAVAILABLE, True)


async def test_a_request_answered_in_time_is_never_cancelled_by_the_head_timer_later(
    pool: UpstreamPool, fake: FakeUpstream
) -> None:
    # The answered request's task goes on past its first-byte timeout while another request keeps
    # the shared timer armed and firing: only the waiting one is ended.
    fake.script("/ok", Reply(body=b'{"ok": 1}'))
    fake.script("/slow", Reply(stall=True))
    up = upstream(pool, fake.url, timeouts=Timeouts(first_byte=0.2))
    waiting = asyncio.create_task(up.request_json("GET", "/slow"))
    await fake.wait_for_requests(1)
    assert await up.request_json("GET", "/ok") == {"ok": 1}
    await asyncio.sleep(0.5)  # past the answered request's timeout and the waiting one's
    with pytest.raises(GatewayError, match=r"no response from acme within 0\.2 s"):
        await waiting


async def test_a_stream_times_its_response_head_by_the_first_byte_timeout_and_its_body_by_the_idle_one(
    pool: UpstreamPool, fake: FakeUpstream
) -> None:
    # One timer serves a stream from its request to its last chunk (http/idle.py): it must still
    # word a stalled head as the first byte's timeout, a deadline as the deadline, and a body that
    # stops after a quick head by the (shorter) idle timeout rather than the first byte's.
    fake.script("/s", Reply(stall=True), Reply(stall=True))
    fake.script("/s", Reply(chunks=[b"a"], content_type="text/plain", then="hang"))
    headless = upstream(pool, fake.url, timeouts=Timeouts(first_byte=0.2, idle=60))
    with pytest.raises(GatewayError, match=r"no response from acme within 0\.2 s") as head:
        async with asyncio.timeout(10), headless.stream("POST", "/s", json={}) as chunks:
            [c async for c in chunks]
    assert (head.value.kind, head.value.retryable) == (ErrorKind.UNAVAILABLE, True)
    token = deadline.set_deadline(0.2)
    try:
        with pytest.raises(GatewayError, match="deadline passed waiting for response") as late:
            async with asyncio.timeout(10), upstream(pool, fake.url).stream("POST", "/s", json={}) as chunks:
                [c async for c in chunks]
    finally:
        deadline.reset(token)
    assert late.value.kind is ErrorKind.DEADLINE_EXCEEDED
    quick_head = upstream(pool, fake.url, timeouts=Timeouts(first_byte=60, idle=0.2))
    received: list[bytes] = []
    with pytest.raises(GatewayError, match=r"was cut: no stream data from acme within 0\.2 s"):
        async with asyncio.timeout(10):  # only so that a regression fails instead of hanging the suite
            await collect(quick_head, "/s", received)
    assert received == [b"a"]


async def call_unary(stub: Any) -> None:
    await stub.Chat(chat_request("o/m"), timeout=20)


async def call_stream(stub: Any) -> None:
    [e async for e in stub.ChatStream(chat_request("o/m"), timeout=20)]


@pytest.mark.parametrize("unary", [False, True], ids=["stream", "unary"])
async def test_a_client_whose_upstream_sends_no_head_hears_the_first_byte_timeout(
    monkeypatch: pytest.MonkeyPatch, unary: bool
) -> None:
    """Through the gateway: the stream's one timer (first byte, then idle), or the upstream's head
    timer of a unary call, ends a stalled head as the configured first-byte timeout, UNAVAILABLE,
    not as a hang or a clean end."""
    monkeypatch.setenv("PG_X_KEY", "k")
    async with FakeUpstream() as fake:
        fake.script("/v1/chat/completions", *[Reply(stall=True) for _ in range(5)])
        config = (
            f'[providers.o]\nkind = "openai"\nbase_url = "{fake.url}/v1"\napi_key_env = "PG_X_KEY"\n'
            "first_byte_timeout_s = 0.2\nidle_timeout_s = 60\n"
        )
        async with run_gateway(config) as gateway:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await (call_unary if unary else call_stream)(gateway.stub)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "no response from o within 0.2 s" in (caught.value.details() or "")


async def test_a_malformed_chunked_body_fails_on_every_transport(pool: UpstreamPool) -> None:
    """Headers, then bytes where a chunk size belongs, then the end: an error, never a wait."""

    async def broken_proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        await writer.drain()
        await asyncio.sleep(0.05)  # the client holds the body reader when the bad bytes come
        writer.write(b"ZZZZ\r\nnot a chunk size\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(broken_proxy, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        with pytest.raises(GatewayError) as caught:
            async with asyncio.timeout(30):  # only so that a regression fails instead of hanging the suite
                await collect(upstream(pool, url), "/s", [])
    finally:
        server.close()
    assert caught.value.kind is ErrorKind.UNAVAILABLE
    assert caught.value.retryable


def test_every_origin_shares_one_tls_context() -> None:
    # Loading the CA bundle stalls the event loop for 60-130 ms; a new upstream host met while
    # serving (a Bedrock region, STS, a credentials endpoint) must not pay it again. (The aiohttp
    # transport loads none: it uses aiohttp's verified context, made once when aiohttp is imported.)
    pool = UpstreamPool(transport="httpx")
    contexts = set()
    for host in ("https://a.test", "https://b.test:8443", "http://c.test"):
        transport = pool.host(host).transport  # type: ignore[attr-defined]
        contexts.add(id(transport._pool._ssl_context))
    assert len(contexts) == 1
    assert pool.tls.verify_mode is ssl.CERT_REQUIRED


@pytest.mark.parametrize("pause", [0.0, 0.05], ids=["with-the-headers", "after-the-headers"])
async def test_a_whole_body_reads_the_same_whether_it_came_with_its_headers_or_later(
    pool: UpstreamPool, pause: float
) -> None:
    """A small answer usually arrives in the headers' read (taken at once) and a large or slow one
    later (read under the idle timeout): the same JSON, decoding and bound either way."""
    answers = {
        b"/plain": (b"", b'{"a":"' + b"y" * 100 + b'"}'),
        b"/packed": (b"content-encoding: gzip\r\n", gzip.compress(b'{"b":[1,2,3]}')),
        b"/empty": (b"", b""),
        b"/large": (b"", b'{"c":"' + b"z" * (80 * 1024) + b'"}'),
    }

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):  # the client left
            await answer(reader, writer)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while head := await reader.readuntil(b"\r\n\r\n"):
            length = next(
                int(line.split(b":")[1])
                for line in head.lower().split(b"\r\n")
                if line.startswith(b"content-length")
            )
            await reader.readexactly(length)
            headers, body = answers[head.split(b" ")[1]]
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                + headers
                + b"content-length: %d\r\n\r\n" % len(body)
            )
            if pause:
                await writer.drain()
                await asyncio.sleep(pause)
            writer.write(body)
            await writer.drain()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    pool.max_response_bytes = 64 * 1024
    try:
        up = upstream(pool, url)
        assert await up.request_json("POST", "/plain", json={}) == {"a": "y" * 100}
        assert await up.request_json("POST", "/packed", json={}) == {"b": [1, 2, 3]}
        with pytest.raises(GatewayError, match="not JSON"):
            await up.request_json("POST", "/empty", json={})
        with pytest.raises(GatewayError, match=f"acme sent a response body over {64 * 1024} bytes"):
            await up.request_json("POST", "/large", json={})
    finally:
        server.close()


def test_each_request_gets_its_own_connect_timeout_and_nothing_else() -> None:
    # The caller's deadline caps the connect setting per request (http/deadline.py); aiohttp times
    # only the connect, the gateway the first byte and the body.
    client = HostClient("http://127.0.0.1:1", 10, [])
    for connect in (10.0, 10.0, 2.5, None, 10.0):
        timeout = client._timeout_for(connect)
        assert (timeout.sock_connect, timeout.total, timeout.sock_read, timeout.connect) == (
            connect,
            None,
            None,
            None,
        )
