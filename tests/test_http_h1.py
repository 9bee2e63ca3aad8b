"""The h1 transport (http/h1.py) against hostile and awkward upstreams on raw sockets: every malformed
answer a clear, retryable error at once, the connection closed (never pooled, never leaked); and
keep-alive reuse, the stale-connection retry, 1xx and bodiless answers, flow control, TLS."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import ssl
import struct
import sys
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_tls import issue, make_ca

from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.http import OutgoingRequest, Timeouts, Upstream, UpstreamPool, h1
from provider_gateway.http.h1 import HIGH_WATER, MAX_DECODED_READ
from provider_gateway.http.h1_wire import DONE, MAX_CHECKED_HEADERS, ResponseParser, encode_request
from provider_gateway.http.pool import H1HostClient, HostClient
from provider_gateway.http.proxy import ProxySettings

Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]
OK = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{"ok":true}'


class RawUpstream:
    """A socket server on 127.0.0.1 answering each request with `answer(reader, writer, n)` (n counts
    requests over all connections); it notes the requests and when the client closes each connection."""

    def __init__(self, answer: Answer, tls: ssl.SSLContext | None = None) -> None:
        self.answer = answer
        self.tls = tls
        self.requests: list[bytes] = []
        self.connections = 0
        self.open = 0
        self.all_closed = asyncio.Event()
        self.url = ""

    async def __aenter__(self) -> RawUpstream:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        scheme = "https" if self.tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.all_closed.clear()
        try:
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
                while head := await reader.readuntil(b"\r\n\r\n"):
                    length = [
                        int(line.split(b":")[1])
                        for line in head.lower().split(b"\r\n")
                        if line.startswith(b"content-length:")
                    ]
                    self.requests.append(head + (await reader.readexactly(length[0]) if length else b""))
                    await self.answer(reader, writer, len(self.requests))
                    if writer.is_closing():
                        break
                    await writer.drain()
                await reader.read()  # until the client closes
        finally:
            writer.close()
            self.open -= 1
            if not self.open:
                self.all_closed.set()

    async def closed_by_client(self) -> None:
        async with asyncio.timeout(10):
            await self.all_closed.wait()


def answering(*raw: bytes, then: str = "keep") -> Answer:
    """An answer of these writes (a pause between them), then keep the connection, close it, reset it,
    or hang."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        for i, part in enumerate(raw):
            if i:
                await writer.drain()
                await asyncio.sleep(0.02)
            writer.write(part)
        if then == "close":
            await writer.drain()
            writer.close()
        elif then == "reset":  # an RST, not a FIN: the peer's close with SO_LINGER 0
            await writer.drain()
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        elif then == "hang":
            await reader.read()  # nothing more, until the client closes

    return answer


@pytest.fixture
async def pool() -> AsyncIterator[UpstreamPool]:
    upstreams = UpstreamPool(transport="h1")
    yield upstreams
    await upstreams.aclose()


def upstream(pool: UpstreamPool, url: str, **kwargs: object) -> Upstream:
    return Upstream(pool.host(url), url, "acme", **kwargs)  # type: ignore[arg-type]


async def fails(work: Awaitable[object]) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        async with asyncio.timeout(10):  # a regression fails instead of hanging the suite
            await work
    return caught.value


async def streamed(up: Upstream, path: str = "/s") -> bytes:
    async with up.stream("POST", path, json={}) as chunks:
        return b"".join([chunk async for chunk in chunks])


MALFORMED_HEADS = {
    "bad status line": b"HTTP/1.1 2OO OK\r\ncontent-length: 2\r\n\r\n{}",
    "not http": b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    "huge head": b"HTTP/1.1 200 OK\r\nx-pad: " + b"a" * (70 * 1024) + b"\r\ncontent-length: 2\r\n\r\n{}",
    "too many fields": b"HTTP/1.1 200 OK\r\n" + b"x-f: 1\r\n" * 101 + b"content-length: 2\r\n\r\n{}",
    "obs-fold": b"HTTP/1.1 200 OK\r\nx-a: 1\r\n folded\r\ncontent-length: 2\r\n\r\n{}",
    "space before colon": b"HTTP/1.1 200 OK\r\ncontent-length : 2\r\n\r\n{}",
    "CL and TE": b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    "differing CL": b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n{}",
    "CL not a number": b"HTTP/1.1 200 OK\r\ncontent-length: +2\r\n\r\n{}",
    "TE not chunked": b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n{}",
    "chunked not last": b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n{}",
    "encoding in two fields": b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-encoding: gzip\r\n\r\n",
    "unasked encoding": b"HTTP/1.1 200 OK\r\ncontent-encoding: br\r\ncontent-length: 2\r\n\r\n{}",
    "switching protocols": b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n",
    "endless interim": b"HTTP/1.1 100 Continue\r\n\r\n" * 11,
    "bare LF in a field": b"HTTP/1.1 200 OK\r\nx-a: 1\nx-b: 2\r\ncontent-length: 2\r\n\r\n{}",
    "bare CR in a field": b"HTTP/1.1 200 OK\r\nx-a: 1\rx-b: 2\r\ncontent-length: 2\r\n\r\n{}",
    "NUL in a field": b"HTTP/1.1 200 OK\r\nx-a: 1\x00\r\ncontent-length: 2\r\n\r\n{}",
    "lines ended by LF alone": b"HTTP/1.1 200 OK\ncontent-length: 2\n\n{}",
    "status under 100": b"HTTP/1.1 099 X\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}",
    "CL after a vertical tab": b"HTTP/1.1 200 OK\r\ncontent-length: \x0b2\r\n\r\n{}",
    "CL after a no-break space": b"HTTP/1.1 200 OK\r\ncontent-length: \xc2\xa02\r\n\r\n{}",
}


@pytest.mark.parametrize("raw", MALFORMED_HEADS.values(), ids=MALFORMED_HEADS.keys())
async def test_a_malformed_head_fails_the_request_at_once_and_closes_the_connection(
    pool: UpstreamPool, raw: bytes
) -> None:
    async with RawUpstream(answering(raw, then="hang")) as fake:
        error = await fails(upstream(pool, fake.url).request_json("GET", "/x"))
        await fake.closed_by_client()
    assert error.kind is ErrorKind.UNAVAILABLE
    assert error.retryable  # another deployment may answer
    assert "malformed response from the upstream" in error.detail


CHUNKED = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
MALFORMED_BODIES = {
    "bad chunk size": [b"3\r\none\r\n", b"ZZZZ\r\nnot a size\r\n"],
    "chunk size too long": [b"3\r\none\r\n", b"1" + b"0" * 16 + b"\r\n"],
    "chunk-size line without end": [b"3\r\none\r\n", b"3;" + b"x" * 2000],
    "chunk longer than its size": [b"3\r\none\r\n", b"3\r\ntwo-and-more\r\n0\r\n\r\n"],
    "signed chunk size": [b"3\r\none\r\n", b"-3\r\ntwo\r\n"],
    "endless trailers": [b"3\r\none\r\n", b"0\r\n" + b"x-t: 1\r\n" * 10_000],
}


@pytest.mark.parametrize("parts", MALFORMED_BODIES.values(), ids=MALFORMED_BODIES.keys())
async def test_a_malformed_body_fails_the_stream_where_it_breaks(
    pool: UpstreamPool, parts: list[bytes]
) -> None:
    async with RawUpstream(answering(CHUNKED, *parts, then="hang")) as fake:
        received: list[bytes] = []

        async def collect() -> None:
            async with upstream(pool, fake.url).stream("POST", "/s", json={}) as chunks:
                async for chunk in chunks:
                    received.append(chunk)

        error = await fails(collect())
        await fake.closed_by_client()
    assert received == [b"one"]
    assert (error.kind, error.retryable) == (ErrorKind.UNAVAILABLE, True)
    assert "was cut" in error.message
    assert "malformed response from the upstream" in error.detail


TRUNCATED = {
    "close mid-chunk": [CHUNKED + b"3\r\none\r\n", b"a\r\ntw"],
    "close between chunks": [CHUNKED + b"3\r\none\r\n"],
    "close mid-length": [b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\none"],
    "close mid-gzip": [
        b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\n\r\n" + gzip.compress(b"one" * 1000)[:-12]
    ],
}


@pytest.mark.parametrize("parts", TRUNCATED.values(), ids=TRUNCATED.keys())
async def test_a_body_cut_short_is_an_error_never_a_clean_end(pool: UpstreamPool, parts: list[bytes]) -> None:
    async with RawUpstream(answering(*parts, then="close")) as fake:
        error = await fails(streamed(upstream(pool, fake.url)))
    assert "was cut" in error.message
    assert (error.kind, error.retryable) == (ErrorKind.UNAVAILABLE, True)


async def test_a_body_framed_by_the_close_ends_there_and_its_connection_is_not_reused(
    pool: UpstreamPool,
) -> None:
    async with RawUpstream(answering(b"HTTP/1.1 200 OK\r\n\r\n{", b'"a":1}', then="close")) as fake:
        up = upstream(pool, fake.url)
        assert await up.request_json("GET", "/x") == {"a": 1}
        assert await up.request_json("GET", "/x") == {"a": 1}
    assert (fake.connections, pool.stats()[fake.url].connections) == (2, 2)


async def test_a_body_framed_by_the_close_that_is_reset_is_cut_not_ended(pool: UpstreamPool) -> None:
    """A reset is no close: the body it interrupts may have had more to say (the openai SDK's httpx
    raises a ReadError there). Only a clean close (FIN) ends a body framed by the close."""
    async with RawUpstream(answering(b"HTTP/1.1 200 OK\r\n\r\ndata: {}\n\n", then="reset")) as fake:
        error = await fails(streamed(upstream(pool, fake.url)))
    assert "was cut" in error.message
    assert (error.kind, error.retryable) == (ErrorKind.UNAVAILABLE, True)


async def test_keep_alive_reuse_connection_close_and_bodiless_answers(pool: UpstreamPool) -> None:
    answers = {
        b"/ok": OK,
        b"/continue": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n" + OK,
        b"/nothing": b"HTTP/1.1 204 No Content\r\n\r\n",
        b"/same": b"HTTP/1.1 304 Not Modified\r\ncontent-length: 99\r\n\r\n",
        b"/chunked": CHUNKED + b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: dropped\r\n\r\n",
        b"/bye": OK.replace(b"\r\n\r\n", b"\r\nconnection: close\r\n\r\n", 1),
    }

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        writer.write(answers[fake.requests[-1].split(b" ")[1]])

    async with RawUpstream(answer) as fake:
        up = upstream(pool, fake.url)
        assert await up.request_json("GET", "/ok") == {"ok": True}
        assert await up.request_json("GET", "/continue") == {"ok": True}
        for path in ("/nothing", "/same"):
            async with up.stream("GET", path) as chunks:
                assert [chunk async for chunk in chunks] == []
        assert await streamed(up, "/chunked") == b"hello world"
        assert await up.request_json("GET", "/bye") == {"ok": True}
        assert fake.connections == 1  # every answer so far came on one connection
        assert await up.request_json("GET", "/ok") == {"ok": True}
    assert fake.connections == 2  # the Connection: close answer's was not reused
    stats = pool.stats()[fake.url]
    assert (stats.requests, stats.connections) == (7, 2)
    assert fake.requests[0].startswith(b"GET /ok HTTP/1.1\r\nHost: 127.0.0.1:")


async def test_a_reused_connection_the_peer_closed_before_answering_is_retried_once_on_a_new_one(
    pool: UpstreamPool,
) -> None:
    # The upstream drops its keep-alive connection just as the next request is sent on it: the
    # request never reached it, so it is sent again on a new connection, and only then.
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        if n == 2:
            writer.close()  # the race, made certain: closed without a byte of an answer
        else:
            writer.write(OK)

    async with RawUpstream(answer) as fake:
        up = upstream(pool, fake.url)
        for _ in range(3):
            assert await up.request_json("POST", "/x", json={"n": 1}) == {"ok": True}
    assert (len(fake.requests), fake.connections) == (4, 2)
    assert pool.stats()[fake.url].connections == 2


@pytest.mark.parametrize("cut", [1, 2], ids=["new-connection", "reused-after-a-byte"])
async def test_nothing_else_is_ever_retried(pool: UpstreamPool, cut: int) -> None:
    # Cut on a new connection (the upstream may have seen the request), or on a reused one after
    # the first byte of an answer: either is an error, and the request is not sent again.
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        if n < cut:
            writer.write(OK)
            return
        writer.write(b"HTTP/1.1 200 OK\r\n" if cut > 1 else b"")
        await writer.drain()
        writer.close()

    async with RawUpstream(answer) as fake:
        up = upstream(pool, fake.url)
        if cut > 1:
            assert await up.request_json("GET", "/x") == {"ok": True}
        error = await fails(up.request_json("GET", "/x"))
    assert error.kind is ErrorKind.UNAVAILABLE
    assert (len(fake.requests), fake.connections) == (cut, 1)


async def test_a_gzip_bomb_is_decoded_in_bounded_steps_and_cut_by_the_bound(pool: UpstreamPool) -> None:
    bomb = gzip.compress(b"0" * (64 * 1024 * 1024))  # 64 KiB that decode to 64 MiB
    head = b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n" % len(bomb)
    async with RawUpstream(answering(head + bomb)) as fake:
        pool.max_response_bytes = 1024 * 1024
        up = upstream(pool, fake.url)
        error = await fails(up.request_json("GET", "/x"))
        assert "sent a response body over 1048576 bytes" in error.message
        sizes: list[int] = []
        async with up.stream("GET", "/x") as chunks:
            async for chunk in chunks:
                sizes.append(len(chunk))
                if len(sizes) == 8:
                    break
    assert max(sizes) <= MAX_DECODED_READ  # a streamed read never decodes the whole bomb at once


async def test_deflate_bodies_wrapped_or_raw_arrive_decoded(pool: UpstreamPool) -> None:
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    bodies = [zlib.compress(b'{"ok":true}'), raw.compress(b'{"ok":true}') + raw.flush()]

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        body = bodies[(n - 1) % 2]
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-encoding: deflate\r\ncontent-length: %d\r\n\r\n%s"
            % (len(body), body)
        )

    async with RawUpstream(answer) as fake:
        up = upstream(pool, fake.url)
        assert [await up.request_json("GET", "/x") for _ in range(2)] == [{"ok": True}] * 2


TINY_CHUNKS = b"2\r\nxx\r\n" * (512 * 1024)  # 1 MiB of body in 2-byte chunks: many small objects
SLOW_CONSUMED = {
    "by length": (b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % (32 << 20), b"x" * (32 << 20), 32 << 20),
    "in 2-byte chunks": (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n", TINY_CHUNKS * 8, 8 << 20),
}


@pytest.mark.parametrize(("head", "body", "size"), SLOW_CONSUMED.values(), ids=SLOW_CONSUMED.keys())
async def test_a_slow_consumer_does_not_make_the_process_buffer_the_body(
    pool: UpstreamPool, head: bytes, body: bytes, size: int
) -> None:
    async with RawUpstream(answering(head, body + (b"0\r\n\r\n" if b"chunked" in head else b""))) as fake:
        host = pool.host(fake.url)
        response = await host.send(OutgoingRequest("GET", upstream(pool, fake.url)._url("/x", None), {}))
        try:
            await asyncio.sleep(0.5)  # the upstream writes as fast as it can; nobody reads
            pieces = response._pieces  # type: ignore[attr-defined]
            held = sys.getsizeof(pieces) + sum(sys.getsizeof(piece) for piece in pieces)
            assert held <= HIGH_WATER + 1024 * 1024  # paused at the mark (plus one socket read)
            total = sum([len(chunk) async for chunk in response.chunks()])
        finally:
            await response.aclose()
    assert total == size


async def test_slowloris_headers_meet_the_first_byte_timeout(pool: UpstreamPool) -> None:
    async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for _ in range(1000):
            await writer.drain()
            writer.write(b"x-drip: 1\r\n")
            await asyncio.sleep(0.01)

    async with RawUpstream(drip) as fake:
        error = await fails(
            upstream(pool, fake.url, timeouts=Timeouts(first_byte=0.3)).request_json("GET", "/x")
        )
        await fake.closed_by_client()
    assert "no response from acme within 0.3 s" in error.message


async def test_a_header_that_would_smuggle_a_request_is_refused_before_sending(pool: UpstreamPool) -> None:
    async with RawUpstream(answering(OK)) as fake:
        for name, value in (
            ("x-a", "1\r\nGET /admin HTTP/1.1"),
            ("x-a", "1\nx"),
            ("x a", "1"),
            ("x-a", "\x00"),
        ):
            up = Upstream(pool.host(fake.url), fake.url, "acme", headers={name: value})
            error = await fails(up.request_json("GET", "/x"))
            assert "not a token, or a value with CR, LF or NUL" in error.detail
            assert "secret" not in error.detail  # a header's value may be a key
        assert fake.requests == []


async def test_a_header_checked_once_is_still_checked_when_its_value_changes(pool: UpstreamPool) -> None:
    """The origin remembers the headers that passed (they repeat on every request), never a name:
    the same header with a value that smuggles a request is refused after good ones were sent."""
    async with RawUpstream(answering(OK)) as fake:
        host = pool.host(fake.url)
        for _ in range(2):
            assert await Upstream(host, fake.url, "acme", headers={"x-a": "1"}).request_json("GET", "/x")
        error = await fails(
            Upstream(host, fake.url, "acme", headers={"x-a": "1\r\nGET /admin HTTP/1.1"}).request_json(
                "GET", "/x"
            )
        )
    assert "not a token, or a value with CR, LF or NUL" in error.detail
    assert len(fake.requests) == 2


def test_the_headers_an_origin_remembers_as_checked_are_bounded() -> None:
    checked: set[tuple[str, str]] = set()
    for n in range(3 * MAX_CHECKED_HEADERS):
        head = encode_request("GET", "/x", "h", {"x-request-id": str(n), "x-key": "k"}, None, checked)
        assert f"x-request-id: {n}\r\n".encode() in head
        assert len(checked) <= MAX_CHECKED_HEADERS
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        encode_request("GET", "/x", "h", {"x-key": "k\nx"}, None, checked)


async def test_waiters_beyond_the_connection_limit_are_served_in_turn() -> None:
    pool = UpstreamPool(transport="h1", max_connections=2)
    release = asyncio.Event()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await release.wait()
        writer.write(OK)

    try:
        async with RawUpstream(answer) as fake:
            up = upstream(pool, fake.url)
            calls = [asyncio.create_task(up.request_json("GET", "/x")) for _ in range(6)]
            await asyncio.sleep(0.2)  # all six sent or waiting (the check below holds either way)
            release.set()
            assert await asyncio.gather(*calls) == [{"ok": True}] * 6
        assert fake.connections == 2
    finally:
        await pool.aclose()


async def test_tls_is_verified_against_the_trusted_roots(tmp_path: Path) -> None:
    ca = make_ca("test-ca")
    leaf = issue(ca, "localhost", server=True)
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_bytes(leaf.cert)
    key.write_bytes(leaf.key)
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(cert, key)
    async with RawUpstream(answering(OK), tls=served) as fake:
        untrusting = UpstreamPool(transport="h1")
        trusting = UpstreamPool(transport="h1")
        trusting.h1_tls().load_verify_locations(cadata=ca[0].cert.decode())
        try:
            error = await fails(upstream(untrusting, fake.url).request_json("GET", "/x"))
            assert (error.message, error.kind) == ("cannot connect", ErrorKind.UNAVAILABLE)
            assert "CERTIFICATE_VERIFY_FAILED" in error.detail
            by_name = fake.url.replace("127.0.0.1", "localhost")
            assert await upstream(trusting, by_name).request_json("GET", "/x") == {"ok": True}
            assert await upstream(trusting, fake.url).request_json("GET", "/x") == {"ok": True}
            assert isinstance(trusting.host(by_name), H1HostClient)
        finally:
            await untrusting.aclose()
            await trusting.aclose()
    assert b"Host: localhost:" in fake.requests[-2]


async def test_a_gzip_body_of_several_members_arrives_whole_and_bytes_after_one_are_an_error(
    pool: UpstreamPool,
) -> None:
    members = gzip.compress(b'{"a":') + gzip.compress(b"1}")
    junk = gzip.compress(b'{"a":1}') + b"\x00" * (1024 * 1024)  # hoarded by zlib, then dropped, before
    head = b"HTTP/1.1 200 OK\r\ncontent-encoding: %s\r\ncontent-length: %d\r\n\r\n"

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        body = members if n < 3 else junk if n < 5 else zlib.compress(b'{"a":1}') + b"more"
        writer.write(head % (b"deflate" if n > 4 else b"gzip", len(body)) + body)

    async with RawUpstream(answer) as fake:
        up = upstream(pool, fake.url)
        assert await up.request_json("GET", "/x") == {"a": 1}
        assert await streamed(up) == b'{"a":1}'
        for work in (up.request_json("GET", "/x"), streamed(up), up.request_json("GET", "/x")):
            error = await fails(work)
            assert "malformed response from the upstream: the body is not valid" in error.detail


async def test_a_body_that_does_not_decode_fails_whole_or_streamed(pool: UpstreamPool) -> None:
    garbage = b"\x1f\x8b\x08\x00not gzip at all"
    answer = b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n%s" % (
        len(garbage),
        garbage,
    )
    async with RawUpstream(answering(answer)) as fake:
        up = upstream(pool, fake.url)
        for work in (up.request_json("GET", "/x"), streamed(up)):
            error = await fails(work)
            assert (error.kind, error.retryable) == (ErrorKind.UNAVAILABLE, True)
            assert "the body is not valid gzip" in error.detail


async def test_an_idle_connection_is_closed_after_the_keep_alive_time(
    pool: UpstreamPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(h1, "KEEPALIVE_S", 0.2)  # 60 s in service
    async with RawUpstream(answering(OK)) as fake:
        up = upstream(pool, fake.url)
        assert await up.request_json("GET", "/x") == {"ok": True}
        await fake.closed_by_client()  # by the gateway, once idle that long
        assert await up.request_json("GET", "/x") == {"ok": True}
    assert fake.connections == 2


@pytest.mark.parametrize("step", [1, 2, 3, 5, 7, 11, 64, 10_000])
def test_the_parser_reads_the_same_response_however_the_bytes_are_split(step: int) -> None:
    # An answer arrives in whatever pieces TCP makes of it: every split gives the same head and body.
    raw = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        + CHUNKED
        + b"5;name=value\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n"
        + b"0\r\nx-trailer: 1\r\n\r\n"
    )
    parser = ResponseParser()
    for at in range(0, len(raw), step):
        parser.feed(raw[at : at + step])
    assert (parser.state, parser.reusable) == (DONE, True)
    assert (parser.status, parser.head and parser.head["transfer-encoding"]) == (200, "chunked")
    assert b"".join(parser.body) == b"hello 0123456789"


async def test_reading_a_response_closed_before_its_end_is_an_error(pool: UpstreamPool) -> None:
    async with RawUpstream(answering(CHUNKED + b"3\r\none\r\n", then="hang")) as fake:
        up = upstream(pool, fake.url)
        response = await pool.host(fake.url).send(OutgoingRequest("GET", up._url("/x", None), {}))
        await response.aclose()
        with pytest.raises(httpx.ReadError, match="closed before its end"):
            await anext(response.chunks())
        await fake.closed_by_client()
        # A read already waiting (in another task) when the response is closed ends likewise.
        response = await pool.host(fake.url).send(OutgoingRequest("GET", up._url("/x", None), {}))
        chunks = response.chunks()
        assert await anext(chunks) == b"one"
        waiting = asyncio.create_task(anext(chunks))
        await asyncio.sleep(0.05)
        await response.aclose()
        with pytest.raises(httpx.ReadError, match="closed before its end"):
            async with asyncio.timeout(10):
                await waiting


def test_a_proxied_origin_keeps_aiohttp_and_every_origin_shares_one_tls_context() -> None:
    pool = UpstreamPool(transport="h1", proxies=ProxySettings("http://egress.internal:3128"))
    assert type(pool.host("https://api.example.com")) is HostClient  # CONNECT and proxy credentials
    assert isinstance(pool.host("http://127.0.0.1:11434"), H1HostClient)  # loopback: never proxied
    assert pool.h1_tls() is pool.h1_tls()
    assert (pool.h1_tls().verify_mode, pool.h1_tls().check_hostname) == (ssl.CERT_REQUIRED, True)


PIECES = [
    b"HTTP/1.1 200 OK\r\n",
    b"HTTP/1.0 100 Continue\r\n\r\n",
    b"transfer-encoding: chunked\r\n",
    b"content-length: 3\r\n",
    b"connection: close\r\n",
    b"\r\n",
    b"3\r\nabc\r\n",
    b"0\r\n\r\n",
    b"ff;x=y\r\n",
    b" ",
    b"\n",
    b"\x00",
]


@settings(max_examples=400, deadline=None, derandomize=True)
@given(st.lists(st.one_of(st.sampled_from(PIECES), st.binary(max_size=12)), max_size=12), st.integers(1, 9))
def test_the_parser_meets_any_bytes_with_an_answer_or_a_protocol_error(
    pieces: list[bytes], step: int
) -> None:
    # Whatever arrives, in whatever pieces: parsed, still waiting, or an httpx transport error;
    # never another exception, and never more body than bytes received.
    raw = b"".join(pieces)
    parser = ResponseParser()
    with contextlib.suppress(httpx.TransportError):
        for at in range(0, len(raw), step):
            parser.feed(raw[at : at + step])
        parser.eof()
        assert parser.state == DONE
    assert sum(map(len, parser.body)) <= len(raw)


async def test_an_http_1_0_answer_closes_its_connection_unless_it_says_keep_alive(pool: UpstreamPool) -> None:
    answers = [
        OK.replace(b"HTTP/1.1", b"HTTP/1.0"),
        OK.replace(b"HTTP/1.1 200 OK", b"HTTP/1.0 200 OK\r\nconnection: keep-alive"),
    ]

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        writer.write(answers[n > 1])

    async with RawUpstream(answer) as fake:
        up = upstream(pool, fake.url)
        for _ in range(3):
            assert await up.request_json("GET", "/x") == {"ok": True}
    assert pool.stats()[fake.url].connections == 2  # the first answer's connection was not reused


async def test_a_caller_that_gives_up_waiting_for_a_connection_leaves_no_slot_behind() -> None:
    pool = UpstreamPool(transport="h1", max_connections=1)
    arrived, release = asyncio.Event(), asyncio.Event()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        if n == 1:
            arrived.set()
            await release.wait()
        writer.write(OK)

    try:
        async with RawUpstream(answer) as fake:
            up = upstream(pool, fake.url)
            first = asyncio.create_task(up.request_json("GET", "/x"))
            async with asyncio.timeout(10):
                await arrived.wait()  # the one connection is busy
            impatient = upstream(pool, fake.url, timeouts=Timeouts(first_byte=0.2))
            error = await fails(impatient.request_json("GET", "/x"))  # queued behind the first
            assert "no response from acme within 0.2 s" in error.message
            release.set()
            assert await first == {"ok": True}
            assert await up.request_json("GET", "/x") == {"ok": True}
        assert (len(fake.requests), fake.connections) == (2, 1)
    finally:
        await pool.aclose()


async def test_a_connect_that_does_not_complete_is_a_connect_timeout(
    pool: UpstreamPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def never_connects(*args: object, **kwargs: object) -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(h1.aiohappyeyeballs, "start_connection", never_connects)
    up = upstream(pool, "http://127.0.0.1:9", timeouts=Timeouts(connect=0.1))
    error = await fails(up.request_json("GET", "/x"))
    assert (error.message, error.kind, error.retryable) == ("cannot connect", ErrorKind.UNAVAILABLE, True)
    assert "ConnectTimeout" in error.detail


async def test_closing_the_pool_ends_the_exchanges_in_flight_and_refuses_new_ones() -> None:
    pool = UpstreamPool(transport="h1", max_connections=1)
    async with RawUpstream(answering(CHUNKED + b"3\r\none\r\n", then="hang")) as fake:
        up = upstream(pool, fake.url)
        async with up.stream("POST", "/s", json={}) as chunks:
            assert await anext(chunks) == b"one"
            queued = asyncio.create_task(up.request_json("GET", "/x"))  # waits for the one connection
            await asyncio.sleep(0.05)
            await pool.aclose()
            error = await fails(anext(chunks))
        await fake.closed_by_client()
        assert "it is stopping" in error.detail
        queued_error = await fails(queued)
        assert "it is stopping" in queued_error.detail
        assert "it is stopping" in (await fails(up.request_json("GET", "/x"))).detail
    assert fake.connections == 1


async def test_a_body_that_decodes_large_is_read_in_steps_between_which_the_loop_runs(
    pool: UpstreamPool,
) -> None:
    size = 16 * 1024 * 1024
    compressed = gzip.compress(b'"' + b"a" * size + b'"')  # 16 KiB on the wire, all there at once
    head = b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n" % len(compressed)
    others = 0  # turns the rest of the server (another stream, say) got while the body was read

    async def another_stream() -> None:
        nonlocal others
        while True:
            others += 1
            await asyncio.sleep(0)

    async with RawUpstream(answering(head + compressed)) as fake:
        up = upstream(pool, fake.url)
        response = await pool.host(fake.url).send(OutgoingRequest("GET", up._url("/x", None), {}))
        await asyncio.sleep(0.2)  # the whole body has arrived: `arrived` may take it at once
        ticking = asyncio.create_task(another_stream())
        await asyncio.sleep(0)
        try:
            others = 0
            body = await up.read_body(response)
        finally:
            ticking.cancel()
            await response.aclose()
    assert len(body) == size + 2
    assert others >= size // MAX_DECODED_READ // 2  # never one decode of the whole from end to end


READINESS = {  # the parts answered, then what the connection does, and whether a read can be ready
    "chunks in pauses": (
        [CHUNKED + b"3\r\none\r\n", b"3\r\ntwo\r\n5\r\nthree\r\n", b"0\r\n\r\n"],
        "keep",
        True,
    ),
    "whole with its head": ([CHUNKED + b"3\r\none\r\n3\r\ntwo\r\n0\r\n\r\n"], "keep", True),
    "cut mid-chunk": ([CHUNKED + b"3\r\none\r\n", b"a\r\ntw"], "close", True),
    "malformed": ([CHUNKED + b"3\r\none\r\n", b"ZZZZ\r\nnot a size\r\n"], "hang", True),
    "by length": ([b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\none", b"two"], "keep", True),
    # A coded body may need more input to give a byte: never said to be ready.
    "gzip": (
        [b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: 23\r\n\r\n" + gzip.compress(b"one")],
        "keep",
        False,
    ),
}


@pytest.mark.parametrize(("parts", "then", "claims"), READINESS.values(), ids=READINESS.keys())
async def test_a_read_said_to_be_ready_completes_without_waiting(
    pool: UpstreamPool, parts: list[bytes], then: str, claims: bool
) -> None:
    """`ready()` lets a stream skip its idle watch (http/client.py): a read it calls ready must end,
    with a chunk, the body's end or its error, without suspending; any other is awaited as ever."""
    async with RawUpstream(answering(*parts, then=then)) as fake:
        up = upstream(pool, fake.url)
        response = await pool.host(fake.url).send(OutgoingRequest("GET", up._url("/x", None), {}))
        body, ready_reads = b"", 0
        try:
            async with asyncio.timeout(10):
                while True:
                    read = cast(Coroutine[Any, Any, bytes], anext(response.chunks()))
                    if not response.ready():
                        try:
                            body += await read
                        except (StopAsyncIteration, httpx.TransportError):
                            break
                        continue
                    ready_reads += 1
                    try:
                        suspended = read.send(None)
                    except StopIteration as done:
                        body += done.value
                        continue
                    except (StopAsyncIteration, httpx.TransportError):
                        break
                    read.close()
                    raise AssertionError(f"a read said to be ready waited on {suspended!r}")
        finally:
            await response.aclose()
    assert bool(ready_reads) is claims
    assert body.startswith(b"one")


@contextlib.contextmanager
def unanswered_listener(host: str, port: int = 0) -> Iterator[int]:
    """A port on `host` where a connect never completes: a listener whose accept queue is full
    (backlog 0, filled) drops the SYNs, as a blackholed route does. Yields the port (`port`, or
    a free one)."""
    listener = socket.socket()
    listener.bind((host, port))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = [socket.socket() for _ in range(3)]
    try:
        for filler in fillers:
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect((host, port))
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def test_a_host_whose_first_address_goes_nowhere_is_reached_on_its_next_one(
    pool: UpstreamPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Happy eyeballs (RFC 8305): a name with an address that is routed but unanswered (an IPv6
    address on a host with no IPv6 way out, say) and a working one is reached on the working one
    well within the connect timeout, not failed at it."""
    async with RawUpstream(answering(OK)) as fake:
        fake.server.close()  # the answering server must listen on the same port, on 127.0.0.1
        # A free port on 127.0.0.1 first: then the same port on 127.0.0.2, which nothing else uses.
        served = await asyncio.start_server(fake._serve, "127.0.0.1", 0)
        port = served.sockets[0].getsockname()[1]
        try:
            with unanswered_listener("127.0.0.2", port):
                loop = asyncio.get_running_loop()

                async def two_addresses(host: str, port: int, **kwargs: object) -> list[Any]:
                    assert host == "api.vendor.test"
                    return [
                        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", port)),  # goes nowhere
                        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
                    ]

                monkeypatch.setattr(loop, "getaddrinfo", two_addresses)
                up = upstream(pool, f"http://api.vendor.test:{port}", timeouts=Timeouts(connect=10))
                assert await up.request_json("GET", "/x") == {"ok": True}
        finally:
            served.close()
