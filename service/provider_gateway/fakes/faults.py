"""An upstream that misbehaves on purpose, for fault tests against any HTTP adapter.

It listens on 127.0.0.1 (port 0) and answers every POST with the fault named by the request: the
first fault name found in the model (JSON body `model`, or the URL path for vendors that put the
model there). Vendor-neutral: the faults are what a broken proxy, a crashed upstream or a bad
network does, not any vendor's error format.

Faults:
  reset            the TCP connection is reset (RST) before any response
  garbage          200, text/event-stream, random bytes, then the end
  truncated_json   200, an SSE event whose JSON stops half-way, then the end
  truncated_body   200, application/json that stops half-way (for unary calls)
  bad_chunked      200 with chunked headers, then bytes that are not a chunk, then the end
  never_ending     200, a comment/ping event every 50 ms, forever (until the client leaves)
  huge             200, text/event-stream, 10 MB in one event line that never ends
  drip             200, a valid-looking event, one byte a second
  wrong_type       200, text/html with a login page instead of a stream
  wrong_shape      200, a well-formed SSE event whose JSON has the wrong shape (a string where an
                   OpenAI choice belongs, a number where an Anthropic delta belongs)
  empty            200, text/event-stream, no body at all
  status_500_html  500 with an HTML body (a proxy's error page)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

HUGE_BYTES = 10 * 1024 * 1024
PING = b'event: ping\ndata: {"type": "ping"}\n\n'


def _reset(request: web.Request) -> None:
    """Close with SO_LINGER 0, so the peer sees a reset rather than a clean end."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.close()


async def _stream(request: web.Request, content_type: str = "text/event-stream") -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": content_type})
    await response.prepare(request)
    return response


@dataclass
class FaultyUpstream:
    """The server; `seen` counts requests per fault and `open_streams` those still being served."""

    drip_interval_s: float = 1.0
    seen: dict[str, int] = field(default_factory=dict)
    open_streams: int = 0
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("POST", "/{tail:.*}", self._handle)
        app.router.add_route("GET", "/{tail:.*}", self._list)
        # The handler is cancelled when the gateway hangs up, which ends the endless faults.
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = int(self._runner.addresses[0][1])
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FaultyUpstream:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _list(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"data": [], "models": []})

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            model = str(json.loads(raw).get("model", ""))
        except (ValueError, AttributeError):
            model = ""
        name = next((f for f in FAULTS if f in model or f in request.path), "garbage")
        self.seen[name] = self.seen.get(name, 0) + 1
        self.open_streams += 1
        try:
            return await FAULTS[name](self, request)
        finally:
            self.open_streams -= 1

    async def reset(self, request: web.Request) -> web.StreamResponse:
        _reset(request)
        return web.Response()  # never sent: the connection is gone

    async def garbage(self, request: web.Request) -> web.StreamResponse:
        response = await _stream(request)
        await response.write(random.Random(7).randbytes(4096))
        await response.write_eof()
        return response

    async def truncated_json(self, request: web.Request) -> web.StreamResponse:
        response = await _stream(request)
        await response.write(
            b'event: message_start\ndata: {"type": "message_start", "message": {"id": "x", "con'
        )
        await response.write(b"\n\n")
        await response.write_eof()
        return response

    async def truncated_body(self, request: web.Request) -> web.StreamResponse:
        response = await _stream(request, "application/json")
        await response.write(b'{"id": "x", "choices": [{"message": {"content": "hal')
        await response.write_eof()
        return response

    async def bad_chunked(self, request: web.Request) -> web.StreamResponse:
        response = await _stream(request)  # chunked: HTTP/1.1 with no content-length
        await asyncio.sleep(0.05)  # the headers reach the client first, as from a real proxy
        transport = request.transport
        if transport is not None:
            transport.write(b"ZZZZ\r\nnot a chunk size\r\n")
            await asyncio.sleep(0.05)
            transport.close()
        return response

    async def never_ending(self, request: web.Request) -> web.StreamResponse:
        response = await _stream(request)
        while True:
            await response.write(PING)
            await asyncio.sleep(0.05)

    async def huge(self, request: web.Request) -> web.StreamResponse:
        response = await _stream(request)
        await response.write(b"data: ")
        chunk = b"x" * 65536
        for _ in range(HUGE_BYTES // len(chunk)):
            await response.write(chunk)
        await response.write_eof()
        return response

    async def drip(self, request: web.Request) -> web.StreamResponse:
        response = await _stream(request)
        for byte in PING * 1000:
            await response.write(bytes([byte]))
            await asyncio.sleep(self.drip_interval_s)
        await response.write_eof()
        return response

    async def wrong_type(self, request: web.Request) -> web.StreamResponse:
        return web.Response(
            text="<html><body><form action=/login>Please sign in</form></body></html>",
            content_type="text/html",
        )

    async def wrong_shape(self, request: web.Request) -> web.StreamResponse:
        response = await _stream(request)
        await response.write(
            b'data: {"type": "content_block_delta", "index": 0, "delta": 1, "choices": ["x"]}\n\n'
        )
        await response.write_eof()
        return response

    async def empty(self, request: web.Request) -> web.StreamResponse:
        response = await _stream(request)
        await response.write_eof()
        return response

    async def status_500_html(self, request: web.Request) -> web.StreamResponse:
        return web.Response(
            status=500, text="<html><h1>502 Bad Gateway</h1></html>", content_type="text/html"
        )


Fault = Callable[[FaultyUpstream, web.Request], Awaitable[web.StreamResponse]]
# Longest names first, so that `truncated_json` is not taken for another fault's prefix.
FAULTS: dict[str, Fault] = {
    name: getattr(FaultyUpstream, name)
    for name in sorted(
        (
            "reset",
            "garbage",
            "truncated_json",
            "truncated_body",
            "bad_chunked",
            "never_ending",
            "huge",
            "drip",
            "wrong_type",
            "wrong_shape",
            "empty",
            "status_500_html",
        ),
        key=len,
        reverse=True,
    )
}


def fault_names() -> list[str]:
    return sorted(FAULTS)
