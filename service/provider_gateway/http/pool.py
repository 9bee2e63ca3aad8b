"""One pooled HTTP client per upstream origin, kept for the server's life, with reuse counters.

The server owns an `UpstreamPool` (no global): adapters ask it for their origin's client through
their factory's `ProviderContext`. By default requests go through the gateway's own HTTP/1.1
connections (http/h1.py: less CPU per request than aiohttp, and at 50 concurrent streams CPU is
what one worker runs out of first); an origin behind a forward proxy keeps aiohttp, which speaks to
proxies. aiohttp for every origin (5-7x the throughput of httpx's own pool at 100 concurrent
requests) and httpx's own transport stay selectable (benchmarks/RESULTS.md). Connections are
counted where they are opened (h1's connect, the aiohttp connector's connection factory, or
httpcore's `trace` extension), requests where they are sent, so `reuse_ratio` is
1 - new connections / requests."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import aiohttp
import httpx
from aiohttp.client_proto import ResponseHandler
from yarl import URL

from provider_gateway.config import Section
from provider_gateway.http.exchange import (
    AiohttpResponse,
    HttpxResponse,
    OutgoingRequest,
    Rests,
    UpstreamResponse,
    transport_error,
)
from provider_gateway.http.h1 import H1Origin
from provider_gateway.http.h1_wire import UnsendableRequest
from provider_gateway.http.malformed_body import FailFastConnector
from provider_gateway.http.proxy import Proxy, ProxySettings, parse_proxy

RequestHook = Callable[[OutgoingRequest], None]
# httpx logs every request at INFO with its full URL; at a gateway's volume that is noise, and some
# vendors accept keys in query strings. Observability adds its own, redacted, request telemetry.
logging.getLogger("httpx").setLevel(logging.WARNING)
TRANSPORTS = ("h1", "aiohttp", "httpx")
# A whole (non-streamed) response body, decoded, is read up to this many bytes, so that one broken or
# hostile upstream (an endless body, a gzip bomb) cannot take the server's memory. 64 MiB is eight
# times the largest message the server sends by default ([server] max_message_bytes): JSON spells a
# number in more bytes than protobuf does, and a body past that could never reach the client anyway.
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024


def _user_agent() -> str:
    try:
        version = metadata.version("provider-gateway-server")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        version = "0"
    return f"provider-gateway/{version}"


# Upstreams (and their operators) see who calls, rather than "python-httpx/0.28.1".
USER_AGENT = _user_agent()
# Every request's headers before the provider's own: what httpx's client sent, kept byte for byte
# when requests stopped going through it.
DEFAULT_HEADERS = {
    "accept": "*/*",
    "accept-encoding": "gzip, deflate",
    "connection": "keep-alive",
    "user-agent": USER_AGENT,
}


@dataclass(slots=True)
class ConnectionStats:
    """Counters for one origin, read by metrics."""

    requests: int = 0
    connections: int = 0

    @property
    def reuse_ratio(self) -> float:
        """Share of requests that reused an open connection (1.0 before any request)."""
        return 1.0 - self.connections / self.requests if self.requests else 1.0


class _CountingConnector(FailFastConnector):
    """Counts each connection it opens. Counting through an aiohttp `TraceConfig` instead made
    aiohttp build and send trace objects for every signal of every request."""

    def __init__(self, stats: ConnectionStats, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._stats = stats

    async def _create_connection(self, *args: Any, **kwargs: Any) -> ResponseHandler:
        connection = await super()._create_connection(*args, **kwargs)
        self._stats.connections += 1
        return connection


class HostClient:
    """One origin's aiohttp session plus its counters.

    `send` runs the request hooks and sends, following no redirect (a gateway never wants one).
    No cookie is kept: an upstream's Set-Cookie (a CDN's bot-management cookie, say) answers one
    caller's request and must not ride along on another caller's."""

    def __init__(
        self, origin: str, max_connections: int, hooks: list[RequestHook], proxy: Proxy | None = None
    ) -> None:
        self.origin = origin
        self.proxy = proxy  # the forward proxy to this origin (http/proxy.py), or None: direct
        # A proxy's credentials go where it reads them (aiohttp sends neither by itself): in the
        # CONNECT request for an https origin, in each request for an http one. (httpx's transport
        # takes them from the proxy's URL.)
        self._proxy_headers: dict[str, str] | None = None
        self._proxy_authorization = ""
        if proxy is not None and proxy.user:
            if origin.startswith("https:"):
                self._proxy_headers = {"proxy-authorization": proxy.authorization}
            else:
                self._proxy_authorization = proxy.authorization
        self.stats = ConnectionStats()
        self.hooks = hooks  # shared with the pool: a hook added later applies to every client
        self.headers = dict(DEFAULT_HEADERS)
        self.max_response_bytes = DEFAULT_MAX_RESPONSE_BYTES  # a whole body's bound (the pool's)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._timeout = aiohttp.ClientTimeout(sock_connect=None)  # the last request's, see `_timeout_for`
        self.rests = Rests()  # bodies' rests read in the background (http/exchange.py, REST_S)

    def _prepare(self, request: OutgoingRequest) -> None:
        """Count the request and let observability add headers."""
        self.stats.requests += 1
        for hook in self.hooks:
            hook(request)

    def _open(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running loop, as aiohttp needs. TLS: aiohttp's own
        # verified context, one per process.
        connector = _CountingConnector(self.stats, limit=self._max_connections, keepalive_timeout=60)
        # Bodies arrive decoded (gzip, deflate: what DEFAULT_HEADERS accept), streams and error bodies
        # included, as httpx decoded whole bodies.
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=True,
            cookie_jar=aiohttp.DummyCookieJar(),
            proxy=self.proxy.url if self.proxy else None,
        )
        return self._session

    async def send(self, request: OutgoingRequest) -> UpstreamResponse:
        """Send; a failure before the response headers is raised as an `httpx.TransportError`."""
        self._prepare(request)
        session = self._session or self._open()
        headers = request.headers
        if self._proxy_authorization:
            headers = {**headers, "proxy-authorization": self._proxy_authorization}
        try:
            native = await session.request(
                request.method,
                request.url,
                headers=headers,
                data=request.content,
                allow_redirects=False,
                proxy_headers=self._proxy_headers,
                timeout=self._timeout_for(request.connect_timeout),
            )
        except aiohttp.ClientError as error:
            raise transport_error(error) from error
        return AiohttpResponse(native, self.rests)

    def _timeout_for(self, connect: float | None) -> aiohttp.ClientTimeout:
        """aiohttp's timeout of a request: only the connect part, replacing the session's default
        (300 s in all), as the caller times the rest. The requests to one origin mostly share one
        connect setting, so the last one made is used again rather than one made per request."""
        if self._timeout.sock_connect != connect:
            self._timeout = aiohttp.ClientTimeout(sock_connect=connect)
        return self._timeout

    async def aclose(self) -> None:
        await self.rests.aclose()
        if self._session is not None:
            await self._session.close()


class HttpxHostClient(HostClient):
    """The same through httpx's own connection pool (`[upstream] transport = "httpx"`)."""

    def __init__(
        self,
        origin: str,
        max_connections: int,
        hooks: list[RequestHook],
        tls: ssl.SSLContext,
        proxy: Proxy | None = None,
    ) -> None:
        super().__init__(origin, max_connections, hooks, proxy)
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self.transport: httpx.AsyncBaseTransport = httpx.AsyncHTTPTransport(
            limits=limits, verify=tls, proxy=proxy.with_credentials if proxy else None
        )

    async def _on_httpcore_event(self, name: str, info: dict[str, Any]) -> None:
        if name == "connection.connect_tcp.started":
            self.stats.connections += 1

    async def send(self, request: OutgoingRequest) -> UpstreamResponse:
        self._prepare(request)
        timeout = {"connect": request.connect_timeout, "read": None, "write": None, "pool": None}
        native = httpx.Request(
            request.method,
            str(request.url),
            headers=request.headers,
            content=request.content,
            extensions={"timeout": timeout, "trace": self._on_httpcore_event},
        )
        response = await self.transport.handle_async_request(native)
        response.request = native
        return HttpxResponse(response, self.rests)

    async def aclose(self) -> None:
        await self.rests.aclose()
        await self.transport.aclose()


class H1HostClient(HostClient):
    """The same through the gateway's own HTTP/1.1 connections (http/h1.py), `[upstream] transport =
    "h1"`, the default for an origin reached without a forward proxy."""

    def __init__(
        self, origin: str, max_connections: int, hooks: list[RequestHook], tls: Callable[[], ssl.SSLContext]
    ) -> None:
        super().__init__(origin, max_connections, hooks)
        self.connections = H1Origin(URL(origin), max_connections, tls, self._count_connection)

    def _count_connection(self) -> None:
        self.stats.connections += 1

    async def send(self, request: OutgoingRequest) -> UpstreamResponse:
        self._prepare(request)
        try:
            return await self.connections.send(request)
        except UnsendableRequest as error:  # a header that would end the request early: never sent
            raise httpx.LocalProtocolError(str(error)) from None

    async def aclose(self) -> None:
        await self.connections.aclose()


class UpstreamPool:
    """The server's HTTP clients, one per upstream origin; close it when the server stops."""

    def __init__(
        self,
        transport: str = "h1",
        max_connections: int = 200,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        proxies: ProxySettings | None = None,
    ) -> None:
        if transport not in TRANSPORTS:
            raise ValueError(f"unknown HTTP transport {transport!r} (known: {', '.join(TRANSPORTS)})")
        self.transport = transport
        self.max_connections = max_connections
        self.max_response_bytes = max_response_bytes
        self.proxies = proxies or ProxySettings()
        self._hosts: dict[str, HostClient] = {}
        self._hooks: list[RequestHook] = []
        self._tls: ssl.SSLContext | None = None
        self._h1_tls: ssl.SSLContext | None = None

    @property
    def tls(self) -> ssl.SSLContext:
        """One TLS context for every origin of the httpx transport, made on first need: loading the CA
        bundle costs 60-130 ms of event-loop time, which a context per origin paid again for each
        new host (a Bedrock region, STS, a container credentials endpoint) in the middle of serving.
        (The aiohttp transport uses aiohttp's own verified context, likewise one per process.)"""
        if self._tls is None:
            self._tls = httpx.create_ssl_context()
        return self._tls

    def h1_tls(self) -> ssl.SSLContext:
        """The h1 transport's TLS context, for every origin, made when the first https connection
        is opened (not per origin: see `tls`): the verification aiohttp applies, the system's CA
        store, hostname checked, ALPN http/1.1."""
        if self._h1_tls is None:
            self._h1_tls = ssl.create_default_context()
            self._h1_tls.set_alpn_protocols(("http/1.1",))
        return self._h1_tls

    @classmethod
    def from_section(cls, section: Section) -> UpstreamPool:
        """The `[upstream]` table: transport = "h1" | "aiohttp" | "httpx", max_connections_per_host,
        max_response_bytes, and the forward proxy (proxy, no_proxy, proxy_from_environment)."""
        section.reject_unknown(
            (
                "transport",
                "max_connections_per_host",
                "max_response_bytes",
                "proxy",
                "no_proxy",
                "proxy_from_environment",
            )
        )
        proxy = section.string("proxy")
        if proxy:
            try:
                if parse_proxy(proxy).password:
                    raise section.error(
                        "proxy", "credentials do not belong in the file; set HTTPS_PROXY in the environment"
                    )
            except ValueError as error:
                raise section.error("proxy", str(error)) from None
        return cls(
            transport=section.choice("transport", TRANSPORTS, "h1"),
            max_connections=section.integer("max_connections_per_host", 200, minimum=1),
            max_response_bytes=section.integer(
                "max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES, minimum=64 * 1024
            ),
            proxies=ProxySettings(
                proxy, tuple(section.strings("no_proxy")), section.flag("proxy_from_environment", True)
            ),
        )

    def host(self, base_url: str) -> HostClient:
        """The shared client for this URL's origin (scheme, host and port)."""
        url = httpx.URL(base_url)
        origin = f"{url.scheme}://{url.netloc.decode('ascii')}"
        if origin not in self._hosts:
            proxy = self.proxies.for_origin(origin)
            client: HostClient
            if self.transport == "httpx":
                client = HttpxHostClient(origin, self.max_connections, self._hooks, self.tls, proxy)
            elif self.transport == "h1" and proxy is None:
                client = H1HostClient(origin, self.max_connections, self._hooks, self.h1_tls)
            else:  # aiohttp's, which also speaks to a forward proxy (CONNECT, proxy credentials)
                client = HostClient(origin, self.max_connections, self._hooks, proxy)
            client.max_response_bytes = self.max_response_bytes
            self._hosts[origin] = client
        return self._hosts[origin]

    def add_request_hook(self, hook: RequestHook) -> None:
        """Run `hook(request)` before every upstream request (e.g. to add a W3C traceparent to
        `request.headers`); `request` is an `OutgoingRequest`, whose `provider` names the sender."""
        self._hooks.append(hook)

    def stats(self) -> dict[str, ConnectionStats]:
        """Counters by origin, for metrics."""
        return {origin: host.stats for origin, host in self._hosts.items()}

    async def aclose(self) -> None:
        hosts, self._hosts = list(self._hosts.values()), {}
        for host in hosts:
            await host.aclose()
