"""One pooled HTTP client per upstream origin, kept for the server's life, with reuse counters.

The server owns an `UpstreamPool` (no global): adapters ask it for their origin's client through
their factory's `ProviderContext`. The transport is aiohttp behind httpx's API (measured 5-7x the
throughput of httpx's own pool at 100 concurrent requests: benchmarks/RESULTS.md); httpx's own
transport stays selectable for comparison. Connections are counted where they are opened (an
aiohttp trace hook, or httpcore's `trace` extension), requests where they are sent, so
`reuse_ratio` is 1 - new connections / requests.
"""

from __future__ import annotations

import logging
import ssl
import types
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from provider_gateway.config import Section
from provider_gateway.http.malformed_body import FailFastConnector

RequestHook = Callable[[httpx.Request], None]
# httpx logs every request at INFO with its full URL; at a gateway's volume that is noise, and some
# vendors accept keys in query strings. Observability adds its own, redacted, request telemetry.
logging.getLogger("httpx").setLevel(logging.WARNING)
TRANSPORTS = ("aiohttp", "httpx")


def _user_agent() -> str:
    try:
        version = metadata.version("provider-gateway-server")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        version = "0"
    return f"provider-gateway/{version}"


# Upstreams (and their operators) see who calls, rather than "python-httpx/0.28.1".
USER_AGENT = _user_agent()


@dataclass(slots=True)
class ConnectionStats:
    """Counters for one origin, read by metrics."""

    requests: int = 0
    connections: int = 0

    @property
    def reuse_ratio(self) -> float:
        """Share of requests that reused an open connection (1.0 before any request)."""
        return 1.0 - self.connections / self.requests if self.requests else 1.0


class HostClient:
    """The httpx client for one origin plus its counters."""

    def __init__(
        self,
        origin: str,
        transport: str,
        max_connections: int,
        hooks: list[RequestHook],
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.origin = origin
        self.stats = ConnectionStats()
        self.hooks = hooks  # shared with the pool: a hook added later applies to every client
        self._httpx_transport = transport == "httpx"
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        verify: ssl.SSLContext | bool = tls if tls is not None else True
        self.transport: httpx.AsyncBaseTransport = (
            httpx.AsyncHTTPTransport(limits=limits, verify=verify)
            if self._httpx_transport
            else AiohttpTransport(verify=verify, client=lambda: self._aiohttp_session(max_connections))
        )
        # The client owns the transport's life; requests skip its auth, redirect and cookie layers
        # (see `send`), which a gateway never wants and which cost a third of each request's time.
        self.client = httpx.AsyncClient(
            base_url=origin, timeout=None, transport=self.transport, headers={"user-agent": USER_AGENT}
        )

    def _aiohttp_session(self, max_connections: int) -> aiohttp.ClientSession:
        # Created lazily by the transport on first use, inside the running loop, as aiohttp needs.
        trace = aiohttp.TraceConfig()
        trace.on_connection_create_end.append(self._on_aiohttp_connection)
        connector = FailFastConnector(limit=max_connections, keepalive_timeout=60)
        return aiohttp.ClientSession(connector=connector, trace_configs=[trace])

    async def _on_aiohttp_connection(
        self, session: aiohttp.ClientSession, context: types.SimpleNamespace, params: Any
    ) -> None:
        self.stats.connections += 1

    async def _on_httpcore_event(self, name: str, info: dict[str, Any]) -> None:
        if name == "connection.connect_tcp.started":
            self.stats.connections += 1

    def prepare(self, request: httpx.Request) -> httpx.Request:
        """Count the request, let observability add headers, and attach the connection counter."""
        self.stats.requests += 1
        for hook in self.hooks:
            hook(request)
        if self._httpx_transport:
            request.extensions["trace"] = self._on_httpcore_event
        return request

    async def send(self, request: httpx.Request) -> httpx.Response:
        """Send straight to the transport: no redirects followed, no cookies kept, no client auth."""
        response = await self.transport.handle_async_request(self.prepare(request))
        response.request = request
        return response

    async def aclose(self) -> None:
        await self.client.aclose()


def raw_body(response: httpx.Response) -> AsyncIterator[bytes]:
    """A response body's bytes as they arrive. Under the aiohttp transport, straight from aiohttp's
    stream: httpx's byte-stream wrappers (its raw iterator, then httpx-aiohttp's, which re-maps
    errors the caller maps anyway) cost an async generator hop each per chunk."""
    native = getattr(response.stream, "_aiohttp_response", None)  # httpx-aiohttp's response stream
    if isinstance(native, aiohttp.ClientResponse):
        return native.content.iter_any()
    return response.aiter_raw()


class UpstreamPool:
    """The server's HTTP clients, one per upstream origin; close it when the server stops."""

    def __init__(self, transport: str = "aiohttp", max_connections: int = 200) -> None:
        if transport not in TRANSPORTS:
            raise ValueError(f"unknown HTTP transport {transport!r} (known: {', '.join(TRANSPORTS)})")
        self.transport = transport
        self.max_connections = max_connections
        self._hosts: dict[str, HostClient] = {}
        self._hooks: list[RequestHook] = []
        self._tls: ssl.SSLContext | None = None

    @property
    def tls(self) -> ssl.SSLContext:
        """One TLS context for every origin, made on first need: loading the CA bundle costs 60-130 ms
        of event-loop time, which a context per origin paid again for each new host (a Bedrock
        region, STS, a container credentials endpoint) in the middle of serving."""
        if self._tls is None:
            self._tls = httpx.create_ssl_context()
        return self._tls

    @classmethod
    def from_section(cls, section: Section) -> UpstreamPool:
        """The `[upstream]` table: transport = "aiohttp" | "httpx", max_connections_per_host."""
        section.reject_unknown(("transport", "max_connections_per_host"))
        return cls(
            transport=section.choice("transport", TRANSPORTS, "aiohttp"),
            max_connections=section.integer("max_connections_per_host", 200, minimum=1),
        )

    def host(self, base_url: str) -> HostClient:
        """The shared client for this URL's origin (scheme, host and port)."""
        url = httpx.URL(base_url)
        origin = f"{url.scheme}://{url.netloc.decode('ascii')}"
        if origin not in self._hosts:
            self._hosts[origin] = HostClient(
                origin, self.transport, self.max_connections, self._hooks, self.tls
            )
        return self._hosts[origin]

    def add_request_hook(self, hook: RequestHook) -> None:
        """Run `hook(request)` before every upstream request (e.g. to add a W3C traceparent).

        `request.extensions["provider_gateway.provider"]` names the provider sending it."""
        self._hooks.append(hook)

    def stats(self) -> dict[str, ConnectionStats]:
        """Counters by origin, for metrics."""
        return {origin: host.stats for origin, host in self._hosts.items()}

    async def aclose(self) -> None:
        hosts, self._hosts = list(self._hosts.values()), {}
        for host in hosts:
            await host.aclose()
