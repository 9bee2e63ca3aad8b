"""A lean HTTP/1.1 client for one origin: keep-alive connections on `asyncio.Protocol`, no more.

At 50 concurrent streams one gateway worker is CPU-bound, and aiohttp's request machinery
(ClientRequest, connector, ClientResponse, StreamReader, its flow control) was the largest single
item of the loop's time; a protocol that only frames bytes (http/h1_wire.py) costs less per
request and per stream (figures in benchmarks/RESULTS.md, issue 15). What it does not do, it
refuses rather than guesses: no proxy (a proxied origin keeps aiohttp), no redirect, no cookie, no
pipelining, no transfer coding but chunked, no content coding but gzip and deflate.

A connection carries one exchange at a time and goes back to its origin's pool only when its
response was read to its end, did not say `Connection: close`, and the peer has not closed it. A
request sent on a reused connection that the peer had closed before any byte of an answer (the
race every keep-alive client meets) is sent once more on a new connection; nothing else is retried.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import socket
import ssl
import time
import zlib
from collections.abc import Callable
from typing import Any

import aiohappyeyeballs
import httpx
from multidict import CIMultiDictProxy
from yarl import URL

from provider_gateway.http.exchange import REST_BYTES, REST_S, BodyTooLarge, OutgoingRequest, UpstreamResponse
from provider_gateway.http.h1_wire import DONE, HEAD, UNTIL_CLOSE, ResponseParser, encode_request, malformed

# A reused connection closed before any byte of an answer is the keep-alive race (the server closed
# it, idle, as the request was on its way: its FIN comes within about a round trip), and the request
# is sent once more on a new connection, only if the close came this soon after the request was
# written: a server that read a POST, worked on it and then died may have generated (and billed)
# it, and a second copy must not go out unseen (aiohttp and Go's net/http never re-send a written
# POST; their callers see the race as an error instead).
STALE_S = 1.0
DNS_TTL_S = 10.0  # a name's addresses kept this long, shared by the connects meanwhile (aiohttp's)
HAPPY_EYEBALLS_S = 0.25  # RFC 8305's recommended connection attempt delay, aiohttp's default
KEEPALIVE_S = 60.0  # an idle connection is closed after this long, as aiohttp's connector does
# Body bytes received but not yet taken by the reader: past HIGH the socket is not read (TCP pushes
# back on the upstream) until the reader is below LOW, so a slow consumer cannot grow the process.
HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024
# What holding one more piece costs beyond its bytes (a bytes object's header, its deque slot), counted
# against HIGH_WATER too: else a body of 2-byte chunks held 164 000 pieces, 6.8 MiB, before a pause.
PIECE_COST = 48
MAX_DECODED_READ = 256 * 1024  # of a compressed body, the most one read decodes (a bomb is cut in steps)
# The most `arrived` decodes at once: a 64 KiB gzip bomb decoded to the 64 MiB bound in one call held
# the event loop (every other stream) for 210 ms; past this, reading goes on in steps between which
# the loop runs.
MAX_DECODED_AT_ONCE = 4 * MAX_DECODED_READ
_NO_BODY_METHODS = frozenset(("HEAD",))


AddrInfo = tuple[Any, ...]  # one of getaddrinfo's answers: family, type, proto, canonname, sockaddr


def _literal_address(host: str, port: int) -> list[AddrInfo] | None:
    """getaddrinfo's answer for an IP literal, which needs no lookup; None for a name."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if address.version == 6:
        return [(socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port, 0, 0))]
    return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port))]


class _Stale(Exception):
    """A reused connection the peer closed before answering: safe to send again on a new one."""


def _connect_error(error: BaseException) -> httpx.TransportError:
    message = f"{type(error).__name__}: {error}"
    if isinstance(error, TimeoutError):
        return httpx.ConnectTimeout(message or "connect timed out")
    return httpx.ConnectError(message)


class _Decoder:
    """A body's Content-Encoding undone incrementally, each step bounded (`MAX_DECODED_READ`)."""

    __slots__ = ("_deflate", "_inflate", "_started")

    def __init__(self, encoding: str) -> None:
        self._deflate = encoding == "deflate"
        # gzip and zlib (the "deflate" of RFC 9110) by header detection; raw deflate tried after.
        self._inflate = zlib.decompressobj(zlib.MAX_WBITS | 32)
        self._started = False

    @property
    def pending(self) -> bool:
        """Input in hand not decoded yet: past the last step's bound, or after a gzip member's end."""
        inflate = self._inflate
        return bool(inflate.unconsumed_tail) or (inflate.eof and bool(inflate.unused_data))

    def decode(self, data: bytes) -> bytes:
        try:
            return self._step(data)
        except zlib.error as error:
            raise malformed(f"the body is not valid {self._name}: {error}") from None

    def _step(self, data: bytes) -> bytes:
        inflate = self._inflate
        if inflate.eof:  # bytes past the compressed stream's end: never dropped, never hoarded
            data = inflate.unused_data + data
            if not data:
                return b""
            if self._deflate:
                raise zlib.error("bytes after the end of the compressed stream")
            # A gzip body may be several members, each decoded in turn (RFC 1952 section 2.2).
            self._inflate = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif inflate.unconsumed_tail:
            data = inflate.unconsumed_tail + data
        if not self._started and self._deflate and data:
            self._started = True
            try:
                return self._inflate.decompress(data, MAX_DECODED_READ)
            except zlib.error:  # servers send raw deflate as often as zlib-wrapped
                self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
        self._started = True
        return self._inflate.decompress(data, MAX_DECODED_READ)

    def finish(self) -> None:
        if self._started and (not self._inflate.eof or self.pending):
            raise malformed(f"the {self._name} body ended before its compressed stream")

    @property
    def _name(self) -> str:
        return "deflate" if self._deflate else "gzip"


def _decoder_for(headers: CIMultiDictProxy[str]) -> _Decoder | None:
    value = ", ".join(headers.getall("content-encoding", ()))  # two fields are a list of two codings
    encoding = value.strip().lower()
    if not encoding or encoding == "identity":
        return None
    if encoding in ("gzip", "x-gzip", "deflate"):
        return _Decoder("deflate" if encoding == "deflate" else "gzip")
    raise malformed(f"a Content-Encoding the gateway did not offer to accept: {value!r}")


class H1Response(UpstreamResponse):
    """A response on a connection; its body is read from the connection's buffer."""

    __slots__ = ("_connection", "_decoded", "_decoder", "_done", "_error", "_pieces", "_released", "_waiter")

    def __init__(self, connection: _Connection, parser: ResponseParser) -> None:
        assert parser.head is not None
        super().__init__(parser.status, parser.head)
        self._connection = connection
        self._decoder = _decoder_for(parser.head)
        self._pieces: collections.deque[bytes] = collections.deque()
        self._decoded = b""  # decoded by `arrived` before it left the rest to `read`: read first
        self._done = False  # the body's last byte is in `_pieces`
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._released = False

    # Called by the connection.
    def _feed(self, piece: bytes, done: bool) -> None:
        if piece:
            self._pieces.append(piece)
        self._done = done
        self._wake()

    def _fail(self, error: BaseException) -> None:
        if not self._done and self._error is None:
            self._error = error
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _take(self) -> bytes:
        """Everything received and not yet read, decoded (a bounded step of it when compressed)."""
        pieces = self._pieces
        count = len(pieces)
        data = pieces.popleft() if count == 1 else b"".join(pieces)
        pieces.clear()
        self._connection.taken(len(data) + PIECE_COST * count)
        return self._decoder.decode(data) if self._decoder is not None else data

    def __aiter__(self) -> H1Response:
        return self

    async def __anext__(self) -> bytes:
        if data := self._decoded:
            self._decoded = b""
            return data
        while True:
            while self._decoder is not None and self._decoder.pending:  # each step takes input
                await asyncio.sleep(0)  # the loop runs between steps of a body that decodes large
                if data := self._decoder.decode(b""):
                    return data
            if self._pieces:
                if data := self._take():
                    return data
                continue
            if self._error is not None:
                raise self._error
            if self._done:
                if self._decoder is not None:
                    self._decoder.finish()
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter

    def chunks(self) -> H1Response:
        return self

    def ready(self) -> bool:
        # A body with no content coding: `__anext__` then returns what is in hand (pieces are never
        # empty), or raises, without waiting. A coded one may need more input to give a byte.
        return bool(self._decoded) or (
            self._decoder is None and bool(self._pieces or self._error is not None or self._done)
        )

    def arrived(self, limit: int) -> bytes | None:
        if not self._done or self._error is not None:
            return None
        try:
            return self._whole(limit)
        except httpx.TransportError as error:  # a body that does not decode: `read` raises it, timed
            self._error = error
            return None

    def _whole(self, limit: int) -> bytes | None:
        parts: list[bytes] = []
        size = 0
        while self._pieces or (self._decoder is not None and self._decoder.pending):
            data = self._take() if self._pieces else self._decoder.decode(b"")  # type: ignore[union-attr]
            size += len(data)
            if size > limit:
                raise BodyTooLarge(limit)
            parts.append(data)
            if size > MAX_DECODED_AT_ONCE and self._decoder is not None and self._decoder.pending:
                self._decoded = b"".join(parts)
                return None
        if self._decoder is not None:
            self._decoder.finish()
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def aclose(self, ended: bool = False) -> None:
        if not self._released:
            self._released = True
            if ended and self._error is None:  # the rest is framing: dropped, the connection kept
                if self._done:
                    self._connection.finished(reusable=True)
                else:
                    self._connection.finish_after_rest()
            else:
                self._connection.finished(reusable=self._done and self._error is None and not self._pieces)
            if not self._done or self._pieces:  # what was left unread is gone with the connection
                self._pieces.clear()
                self._done = False
                self._error = self._error or httpx.ReadError("the response was closed before its end")
                self._wake()  # a read waiting in another task ends with that error, as with aiohttp


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection: the exchange in progress parsed as its bytes arrive."""

    def __init__(self, origin: H1Origin) -> None:
        self._origin = origin
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser: ResponseParser | None = None
        self._head: asyncio.Future[H1Response] | None = None
        self._response: H1Response | None = None
        self._received = False  # any byte of the current exchange's answer
        self._reused = False
        self._sent_at = 0.0  # when the current exchange's request was written (STALE_S)
        self._undelivered = 0
        self._paused = False
        self._rest: asyncio.TimerHandle | None = None  # reading the rest of a body nobody reads (REST_S)
        self._rest_bytes = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def start(self, head: bytes, no_body: bool, reused: bool) -> asyncio.Future[H1Response]:
        assert self.transport is not None
        self._parser = ResponseParser(no_body)
        self._response = None
        self._received = False
        self._reused = reused
        self._undelivered = 0
        self._head = asyncio.get_running_loop().create_future()
        self.transport.write(head)
        self._sent_at = time.monotonic()
        return self._head

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        if parser is None or parser.state == DONE:  # bytes nobody asked for: never trust the connection
            self._abort()
            return
        if self._rest is not None:
            self._rest_bytes += len(data)
            if self._rest_bytes > REST_BYTES:  # more than framing: not a body's end after all
                self._rest_over(reusable=False)
                return
        self._received = True
        try:
            parser.feed(data)
        except httpx.TransportError as error:
            self._error(error)
            return
        self._deliver(parser)

    def _deliver(self, parser: ResponseParser) -> None:
        if self._rest is not None:
            parser.body = []
            if parser.state == DONE:
                self._rest_over(reusable=True)
            return
        response = self._response
        if response is None:
            if parser.state == HEAD:
                return
            try:
                response = self._response = H1Response(self, parser)
            except httpx.TransportError as error:
                self._error(error)
                return
            if self._head is not None and not self._head.done():
                self._head.set_result(response)
        if body := parser.body:
            parser.body = []
            piece = body[0] if len(body) == 1 else b"".join(body)  # one per read, however many chunks
            self._undelivered += len(piece) + PIECE_COST
            response._feed(piece, parser.state == DONE)
            if self._undelivered > HIGH_WATER and not self._paused and self.transport is not None:
                self._paused = True
                self.transport.pause_reading()
        elif parser.state == DONE:
            response._feed(b"", True)

    def taken(self, size: int) -> None:
        self._undelivered -= size
        if self._paused and self._undelivered < LOW_WATER and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    def _error(self, error: BaseException) -> None:
        if self._head is not None and not self._head.done():
            self._head.set_exception(error)
        elif self._response is not None:
            self._response._fail(error)
        self._abort()

    def eof_received(self) -> bool | None:
        return None  # close the transport (and so `connection_lost`)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._rest is not None:
            self._rest_over(reusable=False)
        parser = self._parser
        if parser is not None and parser.state != DONE:
            try:
                if exc is not None and parser.state == UNTIL_CLOSE:
                    # A reset is no close: a body framed by the close ends only at a clean one.
                    raise httpx.ReadError("connection reset before the end of a body framed by its close")
                parser.eof()
            except httpx.TransportError as error:
                if self._reused and not self._received and time.monotonic() - self._sent_at < STALE_S:
                    self._error(_Stale())
                else:
                    if exc is not None:
                        error = type(error)(f"{error}: {type(exc).__name__}: {exc}")
                    self._error(error)
            else:
                self._deliver(parser)
        self._origin.lost(self)

    def _abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    @property
    def alive(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    @property
    def reusable(self) -> bool:
        parser = self._parser
        return self.alive and parser is not None and parser.state == DONE and parser.reusable

    def finished(self, reusable: bool) -> None:
        """The exchange's response is closed: back to the pool if its connection can carry more."""
        reusable = reusable and self.reusable
        self._parser = None
        self._response = None
        self._head = None
        if not reusable:
            self._abort()
        self._origin.release(self, reusable)

    def finish_after_rest(self) -> None:
        """The response is closed by a reader that saw its protocol's last event before the body's
        end: the rest (framing, see REST_S) is read and dropped without anyone waiting for it, and the
        connection goes back to the pool once it has come; closed past REST_S or REST_BYTES."""
        if not self.alive or self._paused:  # a paused one holds more than framing unread
            self.finished(reusable=False)
            return
        self._response = None
        if self._parser is not None:
            self._parser.body = []
        self._rest_bytes = 0
        self._rest = asyncio.get_running_loop().call_later(REST_S, self._rest_over, False)

    def _rest_over(self, reusable: bool) -> None:
        if self._rest is not None:
            self._rest.cancel()
            self._rest = None
            self.finished(reusable)

    def close(self) -> None:
        self._abort()

    def shut(self, error: httpx.TransportError) -> None:
        """Closed by the gateway: the exchange in progress, if any, fails with `error`."""
        if self._rest is not None:
            self._rest_over(reusable=False)
            return
        self._error(error)


class H1Origin:
    """The keep-alive connections to one origin: at most `max_connections`, callers beyond that
    waiting in FIFO order (for as long as their own timeouts allow), idle ones closed after
    `KEEPALIVE_S`. `on_connect` is called for every connection opened (the reuse counter)."""

    def __init__(
        self,
        url: URL,
        max_connections: int,
        tls: Callable[[], ssl.SSLContext],
        on_connect: Callable[[], None],
    ) -> None:
        self._host = url.raw_host or ""
        self._port = url.port or (443 if url.scheme == "https" else 80)
        self._tls = tls if url.scheme == "https" else None
        self._max = max_connections
        self._on_connect = on_connect
        self._open = 0  # connections open or opening, idle ones included
        self._idle: list[_Connection] = []
        self._waiters: collections.deque[asyncio.Future[_Connection | None]] = collections.deque()
        self._sweep: asyncio.TimerHandle | None = None
        self._closed = False
        self._connections: set[_Connection] = set()  # every one open, idle or carrying an exchange
        self._checked_headers: set[tuple[str, str]] = set()  # see encode_request
        self._literal = _literal_address(self._host, self._port)
        self._resolved: tuple[float, list[AddrInfo]] | None = None  # (until, addresses): `_addresses`
        self._resolving: asyncio.Future[list[AddrInfo]] | None = None

    async def send(self, request: OutgoingRequest) -> H1Response:
        """Send; raise an `httpx.TransportError` when no response head arrives (`UnsendableRequest`
        for a request that cannot be written safely)."""
        url = request.url
        host = url.host_port_subcomponent or self._host
        head = encode_request(
            request.method,
            url.raw_path_qs or "/",
            host,
            request.headers,
            request.content,
            self._checked_headers,
        )
        no_body = request.method in _NO_BODY_METHODS
        connection = await self._acquire(request.connect_timeout)
        try:
            return await connection.start(head, no_body, reused=connection.idle_since > 0)
        except _Stale:
            connection.close()  # its slot goes to the new connection below
        except BaseException:
            connection.finished(reusable=False)
            raise
        connection = await self._connect(request.connect_timeout, counted=True)
        try:
            return await connection.start(head, no_body, reused=False)
        except BaseException:
            connection.finished(reusable=False)
            raise

    async def _acquire(self, connect_timeout: float | None) -> _Connection:
        while self._idle and not self._waiters:
            connection = self._idle.pop()
            if connection.alive:
                return connection
            self._open -= 1
        if self._open < self._max and not self._waiters:
            return await self._connect(connect_timeout)
        waiter: asyncio.Future[_Connection | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            handed = await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._pass_on(waiter.result())  # handed over as this caller gave up: the next one's
            elif waiter in self._waiters:  # (else `_pass_on` took it out, passing it over as cancelled)
                self._waiters.remove(waiter)
            raise
        if handed is not None and handed.alive:
            return handed
        if handed is not None:  # the peer closed it on its way here: its slot serves a new one
            handed.close()
        return await self._connect(connect_timeout, counted=True)

    async def _connect(self, connect_timeout: float | None, counted: bool = False) -> _Connection:
        if not counted:
            self._open += 1
        try:
            if self._closed:
                raise httpx.ConnectError(
                    "the gateway's connections to this upstream are closed (it is stopping)"
                )
            async with asyncio.timeout(connect_timeout):
                tls = self._tls() if self._tls is not None else None
                addresses = await self._addresses()
                loop = asyncio.get_running_loop()
                # Every address the name has, IPv6 and IPv4 interleaved, the next one tried after
                # HAPPY_EYEBALLS_S without waiting for the last to fail (RFC 8305, as aiohttp and
                # the vendors' SDKs connect): a family that is routed but goes nowhere (a host with
                # an IPv6 address and no IPv6 way out) costs a quarter second, not the timeout.
                sock = await aiohappyeyeballs.start_connection(
                    addresses, happy_eyeballs_delay=HAPPY_EYEBALLS_S, interleave=1
                )
                try:
                    _, connection = await loop.create_connection(
                        lambda: _Connection(self),
                        sock=sock,
                        ssl=tls,
                        server_hostname=self._host if tls is not None else None,
                    )
                except BaseException:  # a TLS handshake that failed or timed out: the socket too
                    sock.close()
                    raise
        except BaseException as error:
            self._pass_on(None)
            if isinstance(error, OSError | TimeoutError | ssl.SSLError):
                raise _connect_error(error) from error
            raise
        self._on_connect()
        self._connections.add(connection)
        return connection

    async def _addresses(self) -> list[AddrInfo]:
        """The origin's addresses: an IP literal's without a lookup; a name's looked up once for
        all the connects that need it meanwhile (each waits for the one lookup, which goes on if
        one of them gives up), then kept for DNS_TTL_S. The lookup runs in the loop's default
        executor, shared with every `to_thread`: a lookup per connect let a slow resolver queue
        a burst of first connects, and any other origin's, behind one another."""
        if self._literal is not None:
            return self._literal
        if self._resolved is not None and time.monotonic() < self._resolved[0]:
            return self._resolved[1]
        loop = asyncio.get_running_loop()
        if self._resolving is None or self._resolving.get_loop() is not loop:  # (an old loop's never ends)
            self._resolving = asyncio.ensure_future(
                loop.getaddrinfo(self._host, self._port, type=socket.SOCK_STREAM)
            )
            self._resolving.add_done_callback(self._lookup_done)
        return await asyncio.shield(self._resolving)

    def _lookup_done(self, lookup: asyncio.Future[list[AddrInfo]]) -> None:
        if self._resolving is lookup:
            self._resolving = None
        if not lookup.cancelled() and lookup.exception() is None:
            self._resolved = (time.monotonic() + DNS_TTL_S, lookup.result())

    def release(self, connection: _Connection, reusable: bool) -> None:
        if reusable and not self._closed:
            connection.idle_since = time.monotonic()
            self._pass_on(connection)
        else:
            connection.close()
            self._pass_on(None)

    def lost(self, connection: _Connection) -> None:
        """A connection closed, by the peer or the gateway: if it was idle, its slot is free."""
        self._connections.discard(connection)
        if connection in self._idle:
            self._idle.remove(connection)
            self._pass_on(None)

    def _pass_on(self, connection: _Connection | None) -> None:
        """A connection (or, with None, the slot of one that closed) to the first waiter."""
        if connection is not None and self._closed:  # e.g. handed to a caller that gave up
            connection.close()
            connection = None
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        if connection is None:
            self._open -= 1
        else:
            self._idle.append(connection)
            if self._sweep is None:
                self._sweep = asyncio.get_running_loop().call_later(KEEPALIVE_S, self._close_expired)

    def _close_expired(self) -> None:
        self._sweep = None
        now = time.monotonic()
        keep = []
        for connection in self._idle:
            if now - connection.idle_since >= KEEPALIVE_S:
                connection.close()
                self._open -= 1
            else:
                keep.append(connection)
        self._idle = keep
        if keep:
            due = min(c.idle_since for c in keep) + KEEPALIVE_S - now
            self._sweep = asyncio.get_running_loop().call_later(max(due, 0.0), self._close_expired)

    async def aclose(self) -> None:
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
            self._open -= 1
        # As aiohttp's session does: the exchanges in flight end too, each reader told why; their
        # slots come back as their responses are closed, and any waiter then fails to connect.
        closing = httpx.ReadError("the gateway closed the connection to the upstream: it is stopping")
        for connection in list(self._connections):
            connection.shut(closing)
