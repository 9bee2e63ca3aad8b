"""A scriptable fake HTTP upstream on 127.0.0.1, built on aiohttp.web.

It records every request (method, path, query, headers, body) so tests can check them against
the vendor's documented format, and answers with scripted `Reply`s: whole bodies, streams written
piece by piece, error statuses with headers, streams cut mid-way (connection closed without the
final chunk) or never ending (until the client goes away, which `disconnected` reports).

Replies come from, in order: the queue for the request's path (`script`), a route handler
(`on`, used by the per-vendor defaults in `fakes.kinds`), else 404.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

Handler = Callable[["RecordedRequest"], "Reply"]
ENDINGS = ("end", "cut", "hang")


@dataclass(slots=True, frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    raw_path: str = ""  # the path as sent, percent-escapes kept (`path` is decoded)

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass(slots=True)
class Reply:
    """One scripted answer. `chunks` are written and flushed one at a time, then `then` happens."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    chunks: list[bytes] = field(default_factory=list)
    content_type: str = "application/json"
    then: str = "end"  # "end", "cut" (close without the final chunk), "hang" (until the client leaves)
    chunk_delay_s: float = 0.0  # for people watching a stream by hand; tests leave it at 0
    # Set by a test once it has what the first chunk gave: the later chunks wait for it, so they
    # reach the gateway in a later read, whatever the timing.
    gate: asyncio.Event | None = None
    stall: bool = False  # never send the status line (until the client leaves): a first-byte timeout

    @classmethod
    def json(cls, value: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Reply:
        return cls(status=status, headers=dict(headers or {}), body=orjson.dumps(value))

    @classmethod
    def error(cls, status: int, value: Any, headers: Mapping[str, str] | None = None) -> Reply:
        return cls.json(value, status, headers)

    @classmethod
    def sse(cls, events: Iterable[Any], *, then: str = "end", done: bool = True) -> Reply:
        """Each event: a dict/list (sent as `data: <json>`), or a str/bytes written verbatim."""
        chunks = [_sse_piece(event) for event in events]
        if done and then == "end":
            chunks.append(b"data: [DONE]\n\n")
        return cls(chunks=chunks, content_type="text/event-stream", then=then)

    @classmethod
    def ndjson(cls, values: Iterable[Any], *, then: str = "end") -> Reply:
        chunks = [v if isinstance(v, bytes) else orjson.dumps(v) + b"\n" for v in values]
        return cls(chunks=chunks, content_type="application/x-ndjson", then=then)


def _sse_piece(event: Any) -> bytes:
    if isinstance(event, bytes):
        return event
    if isinstance(event, str):
        return event.encode()
    return b"data: " + orjson.dumps(event) + b"\n\n"


class FakeUpstream:
    """Start with `async with FakeUpstream() as fake:`; `fake.url` is its base URL."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.disconnected = asyncio.Event()  # a streaming reply's client went away
        self.disconnects = 0
        self._scripts: defaultdict[str, deque[Reply]] = defaultdict(deque)
        self._routes: list[tuple[str, str, Handler]] = []
        self._arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def on(self, method: str, path: str, handler: Handler) -> None:
        """Answer `method path` with `handler(request)`; a path ending in `*` matches a prefix."""
        self._routes.append((method.upper(), path, handler))

    def script(self, path: str, *replies: Reply) -> None:
        """Queue replies for the next requests to `path` (before any route handler)."""
        self._scripts[path].extend(replies)

    def last(self, path: str | None = None) -> RecordedRequest:
        matching = [r for r in self.requests if path is None or r.path == path]
        if not matching:
            raise AssertionError(f"no request to {path or 'any path'}; saw {[r.path for r in self.requests]}")
        return matching[-1]

    async def wait_for_requests(self, count: int, within_s: float = 10.0) -> None:
        async with asyncio.timeout(within_s), self._arrived:
            await self._arrived.wait_for(lambda: len(self.requests) >= count)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeUpstream:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _reply_for(self, recorded: RecordedRequest) -> Reply:
        queue = self._scripts.get(recorded.path)
        if queue:
            return queue.popleft()
        for method, path, handler in self._routes:
            if method in ("*", recorded.method) and (
                recorded.path == path or (path.endswith("*") and recorded.path.startswith(path[:-1]))
            ):
                return handler(recorded)
        return Reply.error(404, {"error": {"message": f"fake upstream has no route for {recorded.path}"}})

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=await request.read(),
            raw_path=request.rel_url.raw_path,
        )
        async with self._arrived:
            self.requests.append(recorded)
            self._arrived.notify_all()
        reply = self._reply_for(recorded)
        if reply.stall:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self._saw_disconnect()
                raise
        if not reply.chunks and reply.then == "end":
            return web.Response(
                status=reply.status, body=reply.body, headers=reply.headers, content_type=reply.content_type
            )
        return await self._stream(request, reply)

    async def _stream(self, request: web.Request, reply: Reply) -> web.StreamResponse:
        response = web.StreamResponse(status=reply.status, headers=reply.headers)
        response.content_type = reply.content_type
        try:
            await response.prepare(request)
            for number, chunk in enumerate(reply.chunks):
                if reply.chunk_delay_s:
                    await asyncio.sleep(reply.chunk_delay_s)
                if number == 1 and reply.gate is not None:
                    await reply.gate.wait()
                await response.write(chunk)
            if reply.then == "hang":
                await asyncio.Event().wait()  # until the client disconnects (handler cancelled)
            if reply.then == "cut" and request.transport is not None:
                request.transport.close()  # no terminating chunk: the client sees a truncated body
                return response
            await response.write_eof()
        except asyncio.CancelledError:
            self._saw_disconnect()
            raise
        except ConnectionResetError:
            self._saw_disconnect()
        return response

    def _saw_disconnect(self) -> None:
        self.disconnects += 1
        self.disconnected.set()
