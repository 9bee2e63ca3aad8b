"""One upstream request and its response, as the HTTP layer's callers see them whichever library sends.

Requests go out through http/h1.py or aiohttp directly, not through httpx's models: building an
`httpx.Request` and an `httpx.Response` around each aiohttp call, and reading headers through
httpx's case-insensitive `Headers`, was nearly half of the HTTP layer's CPU per unary request
(benchmarks/RESULTS.md, issue 15). What callers rely on stays: a request that hooks may add
headers to, a status code, case-insensitive headers, the body as it arrives.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
from yarl import URL


@dataclass(slots=True)
class OutgoingRequest:
    """A request about to be sent. Request hooks may change `headers` (e.g. add a traceparent);
    `provider` names the provider sending it, for hooks' labels ("" for the gateway's own calls)."""

    method: str
    url: URL
    headers: dict[str, str]
    content: bytes | None = None
    connect_timeout: float | None = None
    provider: str = ""


# What is left of a body once its reader has seen the protocol's last event (OpenAI's `data: [DONE]`,
# Anthropic's message_stop) is framing: a chunked body's last chunk, a blank line. It often comes in
# a later TCP segment, and a connection closed for want of it is a new connection (and a TLS
# handshake) for the next request. So it is read, in the background, for this long and this much, as
# the openai SDK drains a body after [DONE] (100 ms); past either bound the connection is closed.
REST_S = 0.1
REST_BYTES = 16 * 1024


class Rests:
    """The background reads of bodies' rests (REST_S) on aiohttp's and httpx's connections, kept so
    that closing the pool ends them (h1 reads them in its protocol, with no task)."""

    __slots__ = ("_tasks",)

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, read: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(read)
        if not task.done():  # started eagerly, it may have found the rest in hand already
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class BodyTooLarge(Exception):
    """A whole body (decoded) longer than the reader's limit; reading stopped there."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the body exceeds {limit} bytes")
        self.limit = limit


class UpstreamResponse:
    """A response whose headers have arrived: `status_code`, `headers` (a case-insensitive mapping),
    then the body by `chunks()` or `read(limit)`. `aclose()` releases the connection: to the pool
    when the body was read to its end, closed when it was not (a cancelled stream closes upstream).
    `aclose(ended=True)` says the reader saw its protocol's last event: what is left is framing,
    read and dropped in the background (REST_S), the connection kept if it comes."""

    __slots__ = ("headers", "status_code")

    def __init__(self, status_code: int, headers: Mapping[str, str]) -> None:
        self.status_code = status_code
        self.headers = headers

    def chunks(self) -> AsyncIterator[bytes]:
        raise NotImplementedError

    async def read(self, limit: int) -> bytes:
        """The whole body, decoded; `BodyTooLarge` as soon as it passes `limit` bytes. Counted as it
        arrives, not by Content-Length: a gzip body's length says nothing of what it decodes to."""
        parts: list[bytes] = []
        size = 0
        async for chunk in self.chunks():
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(limit)
            parts.append(chunk)
        return b"".join(parts)  # a body of one chunk (most) is returned as it is, not copied

    def ready(self) -> bool:
        """True when the next read of `chunks()` completes without waiting (data, the end or an
        error in hand); False when it may wait, or cannot tell."""
        return False

    def arrived(self, limit: int) -> bytes | None:
        """The whole body, decoded, if all of it is in hand already (nothing to wait for); None
        when some of it may still be on its way. `BodyTooLarge` past `limit`, as `read`."""
        return None

    async def aclose(self, ended: bool = False) -> None:
        raise NotImplementedError


class AiohttpResponse(UpstreamResponse):
    __slots__ = ("_native", "_rests")

    def __init__(self, native: aiohttp.ClientResponse, rests: Rests) -> None:
        super().__init__(native.status, native.headers)
        self._native = native
        self._rests = rests

    def chunks(self) -> AsyncIterator[bytes]:
        return self._native.content.iter_any()

    def arrived(self, limit: int) -> bytes | None:
        # A small answer usually comes in the same read as its headers: aiohttp has then decoded
        # it and seen its end by the time the headers are returned.
        content = self._native.content
        if not content.is_eof() or content.exception() is not None:
            return None
        body = content.read_nowait()
        if len(body) > limit:
            raise BodyTooLarge(limit)
        return body

    async def aclose(self, ended: bool = False) -> None:
        content = self._native.content
        if ended and not content.is_eof() and content.exception() is None:
            self._rests.start(self._read_rest())
            return
        self._native.release()  # back to the pool if the body was read to its end, else closed
        await self._native.wait_for_close()

    async def _read_rest(self) -> None:
        native = self._native
        kept = False
        try:
            async with asyncio.timeout(REST_S):
                size = 0
                while chunk := await native.content.readany():
                    size += len(chunk)
                    if size > REST_BYTES:
                        return
            kept = True
        except (TimeoutError, aiohttp.ClientError, OSError):
            pass
        finally:
            if kept:
                native.release()
            else:
                native.close()


class HttpxResponse(UpstreamResponse):
    __slots__ = ("_native", "_reading", "_rests")

    def __init__(self, native: httpx.Response, rests: Rests) -> None:
        super().__init__(native.status_code, native.headers)
        self._native = native
        self._rests = rests
        self._reading: AsyncIterator[bytes] | None = None

    def chunks(self) -> AsyncIterator[bytes]:
        self._reading = reading = self._native.aiter_bytes()  # the rest is read from it (httpx reads once)
        return reading

    async def aclose(self, ended: bool = False) -> None:
        if ended and self._reading is not None and not self._native.is_closed:
            self._rests.start(self._read_rest(self._reading))
            return
        await self._native.aclose()

    async def _read_rest(self, reading: AsyncIterator[bytes]) -> None:
        try:
            async with asyncio.timeout(REST_S):
                size = 0
                async for chunk in reading:
                    size += len(chunk)
                    if size > REST_BYTES:
                        break
        except (TimeoutError, httpx.HTTPError):
            pass
        finally:  # httpcore keeps the connection if the body was read to its end, else closes it
            await self._native.aclose()


def merged_headers(*layers: Mapping[str, str]) -> dict[str, str]:
    """Header layers merged as HTTP reads names: a later `Accept` replaces an earlier `accept`."""
    merged: dict[str, str] = {}
    spelled: dict[str, str] = {}  # lower-case name -> the spelling in `merged`
    for layer in layers:
        for name, value in layer.items():
            earlier = spelled.get(key := name.lower())
            if earlier is not None and earlier != name:
                del merged[earlier]
            spelled[key] = name
            merged[name] = value
    return merged


def transport_error(error: aiohttp.ClientError) -> httpx.TransportError:
    """An aiohttp failure before the response headers, as the httpx error `ErrorPolicy.from_transport`
    words: any connection-level failure (refused, reset, closed before answering, connect timeout)
    is one that could not connect, a broken body a read error, as httpx-aiohttp mapped them."""
    message = f"{type(error).__name__}: {error}"
    if isinstance(error, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message)
    if isinstance(error, aiohttp.ClientConnectionError):
        return httpx.ConnectError(message)
    if isinstance(error, aiohttp.ClientPayloadError):
        return httpx.ReadError(message)
    return httpx.TransportError(message)
