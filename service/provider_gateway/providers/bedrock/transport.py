"""Bedrock over the shared HTTP pool: each request signed (SigV4) or carrying an API key.

`SignedUpstream` is the shared `Upstream` (timeouts capped by the gRPC deadline, error bodies
bounded, streams closed on every exit) with one change: the body is serialised before sending and
the headers are computed for it, because a SigV4 signature covers the exact bytes sent. Headers
follow what botocore sends for the same call, minus its SDK telemetry (`amz-sdk-*`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from yarl import URL

from provider_gateway.http import deadline
from provider_gateway.http.client import ErrorPolicy, Timeouts, Upstream
from provider_gateway.http.exchange import OutgoingRequest, UpstreamResponse, merged_headers
from provider_gateway.http.pool import UpstreamPool
from provider_gateway.providers.bedrock.credentials import CredentialResolver
from provider_gateway.providers.bedrock.signing import bearer_headers, sigv4_headers
from provider_gateway.providers.http_common import path_segment

JSON = "application/json"


@dataclass(slots=True, frozen=True)
class Payload:
    """A request body as bytes, with the headers that describe it (signed with it)."""

    content: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)


def model_path(model_id: str, operation: str) -> str:
    """`/model/<id>/<operation>`, the id one percent-encoded segment (`path_segment`).

    botocore sends `%3A`; aiohttp (the pool's transport) rewrites `%3A` (and every `PATH_SAFE`
    escape) to the character before sending, and a signature must cover the path as sent, so those
    are left as is (equivalent in a path, RFC 3986); httpx's own transport is given the same URL.
    A `/` (in ARNs) stays `%2F`."""
    return f"/model/{path_segment(model_id, 'model', 'bedrock')}/{operation}"


class SignedUpstream(Upstream):
    def __init__(
        self,
        pool: UpstreamPool,
        base_url: str,
        provider: str,
        *,
        region: str,
        credentials: CredentialResolver,
        bearer: str | None,
        timeouts: Timeouts,
        errors: ErrorPolicy,
        max_in_flight: int = 50,
    ) -> None:
        super().__init__(
            pool.host(base_url),
            base_url,
            provider,
            # botocore asks for no compression; event streams are never compressed.
            headers={"accept-encoding": "identity"},
            timeouts=timeouts,
            secrets=(bearer,) if bearer else (),
            errors=errors,
        )
        self.region = region
        self.credentials = credentials
        self.bearer = bearer
        self._sent_headers = {"user-agent": self._headers[False]["user-agent"], **self.headers}
        # The provider's `max_connections`: botocore's pool size, now the calls this endpoint has open
        # at once (a stream counts until it is closed); more wait, as they waited for a connection.
        self._in_flight = asyncio.Semaphore(max_in_flight)

    async def authenticate(
        self, method: str, url: httpx.URL, headers: Mapping[str, str], body: bytes
    ) -> dict[str, str]:
        if self.bearer:
            return bearer_headers(self.bearer, headers)
        credentials = await self.credentials.get()
        return await sigv4_headers(credentials, self.region, method, url, headers, body)

    async def _send(
        self, method: str, path: str, json: Any, params: Mapping[str, str] | None, model: str
    ) -> UpstreamResponse:
        """The base class's `json` is a `Payload` here: bytes already serialised, so signed as sent."""
        if json is not None and not isinstance(json, Payload):
            raise TypeError("SignedUpstream sends a Payload (serialised bytes), not a JSON value")
        payload = json or Payload()
        url = httpx.URL(self.base_url + path)  # `params=None` would drop the path's own query
        if params:
            url = url.copy_merge_params(params)
        signed = await self.authenticate(method, url, payload.headers, payload.content)
        connect, _ = deadline.cap(self.timeouts.connect)
        request = OutgoingRequest(
            method,
            URL(str(url)),
            merged_headers(self._sent_headers, signed),
            payload.content or None,
            connect,
            self.provider,
        )
        return await self._deliver(request, model)

    async def fetch(
        self,
        method: str,
        path: str,
        payload: Payload,
        *,
        params: Mapping[str, str] | None = None,
        model: str = "",
    ) -> tuple[bytes, Mapping[str, str]]:
        """A whole response's body and headers (InvokeModel reports token counts in headers)."""
        async with self._in_flight:
            response = await self._send(method, path, payload, params, model)
            try:
                raw = await self.read_body(response)
            finally:
                await response.aclose()
        return raw, response.headers

    @asynccontextmanager
    async def stream_bytes(
        self, path: str, payload: Payload, *, model: str = ""
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        async with self._in_flight, self.stream("POST", path, json=payload, model=model) as chunks:
            yield chunks
