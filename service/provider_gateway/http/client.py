"""An adapter's view of its upstream: requests with timeouts, error mapping and safe streaming.

Three timeouts, each configurable per provider and each capped by the caller's gRPC deadline:
connect, time to first byte (until the response headers), and idle (between two chunks of a
stream). A timeout set by the deadline is DEADLINE_EXCEEDED; one set by configuration is
UNAVAILABLE (retryable: another deployment may answer). Streams are context managers that close
the response on every exit, so a client cancel closes the upstream connection too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import httpx
import orjson
from yarl import URL

from provider_gateway.config import Section
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.http import deadline
from provider_gateway.http.errors import error_from_response, obey_retry_advice, redact, shown_glimpse
from provider_gateway.http.exchange import BodyTooLarge, OutgoingRequest, UpstreamResponse, merged_headers
from provider_gateway.http.head_timer import HeadTimer, HeadWait
from provider_gateway.http.idle import IdleTimer, IdleWatch
from provider_gateway.http.pool import HostClient
from provider_gateway.http.rate_limits import announced, report_rate_limit
from provider_gateway.wire import json_text

T = TypeVar("T")
TIMEOUT_KEYS = ("connect_timeout_s", "first_byte_timeout_s", "idle_timeout_s")
MAX_ERROR_BODY = 64 * 1024
MAX_CACHED_URLS = 256


@dataclass(slots=True, frozen=True)
class Timeouts:
    connect: float = 10.0
    first_byte: float = 120.0
    idle: float = 120.0

    @classmethod
    def from_section(cls, section: Section) -> Timeouts:
        return cls(
            connect=section.number("connect_timeout_s", DEFAULT.connect, minimum=0.001),
            first_byte=section.number("first_byte_timeout_s", DEFAULT.first_byte, minimum=0.001),
            idle=section.number("idle_timeout_s", DEFAULT.idle, minimum=0.001),
        )


DEFAULT = Timeouts()


class ErrorPolicy:
    """How an adapter words upstream failures; subclass to add vendor hints (e.g. Ollama's)."""

    def from_response(
        self, provider: str, response: UpstreamResponse, raw: bytes, model: str, secrets: tuple[str, ...]
    ) -> GatewayError:
        return error_from_response(
            provider, response.status_code, response.headers, raw, model=model, secrets=secrets
        )

    def from_transport(self, provider: str, origin: str, error: httpx.TransportError) -> GatewayError:
        """A failure with no upstream answer. The client reads what failed; the URL and the library's
        exception go to `detail`, the gateway's log."""
        cause = f"{origin}: {type(error).__name__}: {error}"
        if isinstance(error, httpx.ConnectError | httpx.ConnectTimeout) or _refused(error):
            what = "connection refused" if _refused(error) else "cannot connect"
            return GatewayError(ErrorKind.UNAVAILABLE, what, provider=provider, retryable=True, detail=cause)
        return GatewayError(
            ErrorKind.UNAVAILABLE, "connection failed", provider=provider, retryable=True, detail=cause
        )


def _refused(error: BaseException) -> bool:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError) or "Connect call failed" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class Upstream:
    """One provider's upstream: a shared host client plus this provider's headers and timeouts."""

    def __init__(
        self,
        host: HostClient,
        base_url: str,
        provider: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        timeouts: Timeouts = DEFAULT,
        secrets: tuple[str, ...] = (),
        errors: ErrorPolicy | None = None,
        requests_window_s: float = 60.0,
    ) -> None:
        self.host = host
        self.requests_window_s = requests_window_s  # of the host's request budget (Groq's: a day)
        self.base_url = base_url.rstrip("/")
        self.provider = provider
        self.headers = dict(headers or {})
        self.params = dict(params or {})
        self.timeouts = timeouts
        self.secrets = secrets
        self.errors = errors or ErrorPolicy()
        # Built once: the client's defaults (user-agent, accept...) under this provider's headers.
        plain = merged_headers(host.headers, self.headers)
        self._headers = {False: plain, True: merged_headers(plain, {"content-type": "application/json"})}
        self._urls: dict[str, URL] = {}
        self._head_timer = HeadTimer()  # the first-byte timeout of whole requests, one timer for all
        self._idle_timer = IdleTimer()  # the idle timeout of its streams' reads, one timer for all

    def _url(self, path: str, params: Mapping[str, str] | None) -> URL:
        """The parsed URL of `path` with the provider's query parameters, and `params` over them.
        Parsing and validating a URL cost about a tenth of the upstream leg's Python work per
        request, so each path without `params` is parsed once; the cache is bounded, as paths can
        name models. httpx encodes the query, as it did when it sent the request."""
        url = self._urls.get(path) if not params else None
        if url is None:
            built = httpx.URL(self.base_url + path, params=self.params or None)
            url = URL(str(built.copy_merge_params(params) if params else built))
            if not params and len(self._urls) < MAX_CACHED_URLS:
                self._urls[path] = url
        return url

    async def _within(self, work: Awaitable[T], setting: float, what: str) -> T:
        limit, by_deadline = deadline.cap(setting)
        try:
            async with asyncio.timeout(limit):
                return await work
        except TimeoutError:
            raise self._timed_out(what, setting, by_deadline) from None
        except (httpx.TransportError, aiohttp.ClientError, OSError) as error:
            raise self._unreachable(error) from None

    async def _watched(self, work: Awaitable[T], watch: IdleWatch | HeadWait, setting: float, what: str) -> T:
        """`_within`, timed by a stream's idle watch or the upstream's head timer (set to `setting`)
        instead of a timer of its own."""
        watch.started()
        try:
            return await work
        except asyncio.CancelledError:
            if watch.finished(cancelled=True):
                raise self._timed_out(what, setting, watch.by_deadline) from None
            raise
        except TimeoutError:  # raised by `work` itself, as `_within` words it
            raise self._timed_out(what, setting, deadline.cap(setting)[1]) from None
        except (httpx.TransportError, aiohttp.ClientError, OSError) as error:
            raise self._unreachable(error) from None
        finally:
            watch.finished()

    def _unreachable(self, error: httpx.TransportError | aiohttp.ClientError | OSError) -> GatewayError:
        if not isinstance(error, httpx.TransportError):  # what the aiohttp transport leaves unmapped
            error = httpx.TransportError(f"{type(error).__name__}: {error}")
        return self._transport_error(error)

    def _timed_out(self, what: str, setting: float, by_deadline: bool) -> GatewayError:
        if by_deadline:
            return GatewayError(
                ErrorKind.DEADLINE_EXCEEDED,
                f"deadline passed waiting for {what} from {self.provider}",
                provider=self.provider,
            )
        return GatewayError(
            ErrorKind.UNAVAILABLE,
            f"no {what} from {self.provider} within {setting:g} s",
            provider=self.provider,
            retryable=True,
        )

    def _transport_error(self, error: httpx.TransportError) -> GatewayError:
        mapped = self.errors.from_transport(self.provider, self.host.origin, error)
        mapped.message = redact(mapped.message, self.secrets)
        mapped.detail = redact(mapped.detail, self.secrets)  # library messages may quote URLs and keys
        mapped.args = (mapped.message,)
        return mapped

    async def _send(
        self, method: str, path: str, json: Any, params: Mapping[str, str] | None, model: str
    ) -> UpstreamResponse:
        connect, _ = deadline.cap(self.timeouts.connect)
        request = OutgoingRequest(
            method,
            self._url(path, params),
            dict(self._headers[json is not None]),  # a copy: request hooks add to it
            None if json is None else orjson.dumps(json),
            connect,
            self.provider,
        )
        return await self._deliver(request, model)

    async def _deliver(self, request: OutgoingRequest, model: str) -> UpstreamResponse:
        """Send a built request; an error status is read (bounded) and raised as a GatewayError."""
        first_byte = self.timeouts.first_byte
        response = await self._watched(
            self.host.send(request), self._head_timer.wait(first_byte), first_byte, "response"
        )
        if info := announced(
            response.headers, requests_window_s=self.requests_window_s
        ):  # on successes too: the limiter slows before a 429
            report_rate_limit(info)
        if response.status_code < 400:
            return response
        try:
            raw = await self._within(_read_limited(response), self.timeouts.idle, "error body")
        finally:
            await response.aclose()
        error = self.errors.from_response(self.provider, response, raw, model, self.secrets)
        # Last, so that the vendor's own word on retrying wins over every policy's status rules.
        raise obey_retry_advice(error, response.headers)

    async def request_json(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        model: str = "",
    ) -> Any:
        """A whole request: JSON in, JSON out, errors mapped."""
        response = await self._send(method, path, json, params, model)
        try:
            raw = await self.read_body(response)
        finally:
            await response.aclose()
        try:
            return json_text.loads(raw)
        except orjson.JSONDecodeError:
            preview = shown_glimpse(raw, 120, self.secrets)
            raise GatewayError(
                ErrorKind.UNAVAILABLE,
                f"{self.provider} returned a body that is not JSON: {preview!r}",
                provider=self.provider,
                retryable=True,
            ) from None

    async def read_body(self, response: UpstreamResponse) -> bytes:
        """A whole response body, within the idle timeout and the pool's size bound
        (`[upstream] max_response_bytes`): a larger body fails the attempt, retryably (another
        deployment may answer), instead of growing in memory."""
        limit = self.host.max_response_bytes
        try:
            # A body already whole needs no idle timer and no wait: most unary answers, which
            # arrive with their headers; the timer and the wait were a tenth of this layer's work.
            body = response.arrived(limit)
            if body is None:
                body = await self._within(response.read(limit), self.timeouts.idle, "response body")
            return body
        except BodyTooLarge:
            raise GatewayError(
                ErrorKind.UNAVAILABLE,
                f"{self.provider} sent a response body over {limit} bytes "
                "(the bound is [upstream] max_response_bytes)",
                provider=self.provider,
                retryable=True,
            ) from None

    def stream(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        model: str = "",
    ) -> UpstreamStream:
        """`async with upstream.stream(...) as chunks`: the body's bytes as they arrive.

        The response is closed when the block exits for any reason (end, error, cancel), which
        closes an unfinished upstream connection instead of returning it to the pool.
        """
        return UpstreamStream(self, method, path, json, params, model)

    def _cut(self, error: GatewayError) -> GatewayError:
        error.message = f"stream from {self.provider} was cut: {error.message}"
        error.args = (error.message,)
        return error


class UpstreamStream:
    """What `Upstream.stream` returns: a context manager that is, once entered, the iterator of the
    body's chunks, each read watched for the idle timeout (one timer per upstream, see http/idle.py).
    A class, not an `asynccontextmanager` around an async generator: their creation, closing and
    finalizing cost a fixed share of every stream for nothing."""

    __slots__ = ("_raw", "_request", "_response", "_upstream", "_watch")

    def __init__(
        self,
        upstream: Upstream,
        method: str,
        path: str,
        json: Any,
        params: Mapping[str, str] | None,
        model: str,
    ) -> None:
        self._upstream = upstream
        self._request = (method, path, json, params, model)
        # The reads' idle timeout, on the upstream's idle timer; the head is timed as a whole
        # request's is (the upstream's head timer): no timer of the stream's own.
        self._watch = IdleWatch(upstream._idle_timer, upstream.timeouts.idle)

    async def __aenter__(self) -> UpstreamStream:
        self._response = response = await self._upstream._send(*self._request)
        self._raw = response.chunks()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, *exc_info: object) -> None:
        self._watch.close()  # here, not after the last chunk: a block may leave before reading one
        # A block left without an exception has read what its protocol needed, up to its last event:
        # what is left is framing, and the connection worth keeping for it. One left by an error, a
        # cancel or a client gone closes the connection at once, so the upstream stops generating.
        await self._response.aclose(ended=kind is None)

    def __aiter__(self) -> UpstreamStream:
        return self

    async def __anext__(self) -> bytes:
        """The next chunk of the body (never an empty one); a read that fails or outlasts the idle
        timeout ends the stream as cut, an error. A read of what has arrived already waits for
        nothing, so is not watched: at 50 concurrent streams most are, and arming the watch's timer
        (and cancelling it) was about 1% of a stream's work."""
        watch, raw, response = self._watch, self._raw, self._response
        while True:
            waits = not response.ready()
            if waits:
                watch.started()
            try:
                chunk = await anext(raw)  # StopAsyncIteration at the body's end ends the iteration
            except StopAsyncIteration:
                if waits:  # nothing is read any more: the events still handed on are not idleness
                    watch.finished()
                raise
            except asyncio.CancelledError:
                if waits and watch.finished(cancelled=True):
                    upstream = self._upstream
                    raise upstream._cut(
                        upstream._timed_out("stream data", upstream.timeouts.idle, watch.by_deadline)
                    ) from None
                raise
            except (httpx.TransportError, aiohttp.ClientError, OSError) as error:
                if waits:
                    watch.finished()
                upstream = self._upstream
                raise upstream._cut(upstream._unreachable(error)) from None
            if waits:
                watch.finished()
            if chunk:
                return chunk


async def _read_limited(response: UpstreamResponse) -> bytes:
    body = bytearray()
    async for chunk in response.chunks():
        body += chunk
        if len(body) >= MAX_ERROR_BODY:
            break
    return bytes(body)
