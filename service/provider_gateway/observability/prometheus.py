"""Prometheus text on an optional port: the SDK's metrics through a reader with its own registry.

A few lines of asyncio serve `GET /metrics` (one request per connection, then close), which is all
a scraper needs; aiohttp's server would add a quarter of a second of imports for this alone, and
prometheus_client's own server runs a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger("provider_gateway.observability")
MAX_HEAD_BYTES = 16 * 1024
READ_TIMEOUT_S = 10.0


def _response(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


class PrometheusEndpoint:
    def __init__(self, host: str, port: int) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.reader = PrometheusMetricReader(disable_target_info=True, registry=self.registry)
        self.host, self.port = host, port
        self._server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
            method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
            path = rest.split(" ", 1)[0].split("?", 1)[0]
            if method not in ("GET", "HEAD"):
                response = _response("405 Method Not Allowed", b"use GET\n")
            elif path != "/metrics":
                response = _response("404 Not Found", b"metrics are at /metrics\n")
            else:
                # Collection walks every instrument: off the event loop, so scrapes never stall streams.
                body = await asyncio.to_thread(generate_latest, self.registry)
                response = _response("200 OK", b"" if method == "HEAD" else body, CONTENT_TYPE_LATEST)
            writer.write(response)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass  # a scraper that went away or sent garbage: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, self.host, self.port, limit=MAX_HEAD_BYTES)
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("prometheus metrics on http://%s:%d/metrics", self.host, self.port)
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
