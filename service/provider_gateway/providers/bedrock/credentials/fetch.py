"""Small HTTP calls to credential endpoints (IMDS, container, STS) over the server's shared pool."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
import httpx
from yarl import URL

from provider_gateway.http.exchange import OutgoingRequest, merged_headers
from provider_gateway.http.pool import UpstreamPool

# Credential answers are a few hundred bytes; anything past this is not one (and is not read).
MAX_BODY = 64 * 1024


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes


class Unreachable(Exception):
    """No answer: connection refused or failed, or none within the timeout."""

    def __init__(self, what: str, timed_out: bool) -> None:
        super().__init__(what)
        self.timed_out = timed_out


async def fetch(
    pool: UpstreamPool,
    method: str,
    url: str,
    *,
    timeout_s: float,
    headers: Mapping[str, str] | None = None,
    content: bytes | None = None,
) -> Reply:
    """One request, bounded in time and size. Redirects are never followed (the pool's `send`)."""
    host = pool.host(url)
    request = OutgoingRequest(
        method, URL(url), merged_headers(host.headers, headers or {}), content, timeout_s
    )
    try:
        async with asyncio.timeout(timeout_s):
            response = await host.send(request)
            try:
                body = bytearray()
                async for chunk in response.chunks():
                    body += chunk
                    if len(body) > MAX_BODY:
                        break
            finally:
                await response.aclose()
    except TimeoutError:
        raise Unreachable(f"no answer within {timeout_s:g} s", timed_out=True) from None
    except (httpx.TransportError, aiohttp.ClientError, OSError) as error:
        raise Unreachable(f"{type(error).__name__}: {error}", timed_out=False) from None
    return Reply(response.status_code, bytes(body[:MAX_BODY]))
