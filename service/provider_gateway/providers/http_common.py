"""Small pieces every HTTP adapter shares (the Anthropic, Gemini and Cohere adapters too)."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

from provider_gateway.domain import HealthStatus
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.http import Upstream

HEALTH_TIMEOUT_S = 5.0
# What a path segment may hold unencoded besides unreserved characters (RFC 3986 pchar), and what
# aiohttp (yarl) therefore decodes before sending anyway: `%3A` and `%3D` go out as `:` and `=`.
PATH_SAFE = ":@!$&'()*,;="


def path_segment(name: str, what: str, provider: str) -> str:
    """A name the caller chose (a model id, a deployment) as ONE segment of an upstream path.

    `/`, `?`, `#` and `%` are percent-encoded, so that a model named `../../v1/files` or
    `x?key=...` cannot reach another of the vendor's endpoints with the gateway's credentials, nor
    add a query; `.` and `..` are refused, since URL normalisation climbs a path with them.
    `+` is encoded too: a server could read it as a space."""
    if name in (".", ".."):
        raise GatewayError(
            ErrorKind.INVALID_ARGUMENT,
            f"{what} {name!r} is not a name {provider} can serve",
            provider=provider,
        )
    return quote(name, safe=PATH_SAFE)


async def probe(upstream: Upstream, path: str) -> HealthStatus:
    """Healthy when a cheap GET answers within a few seconds (start-up must not hang on it)."""
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_S):
            await upstream.request_json("GET", path)
    except (GatewayError, TimeoutError) as error:
        return HealthStatus(healthy=False, message=str(error) or "health check timed out")
    return HealthStatus(healthy=True)
