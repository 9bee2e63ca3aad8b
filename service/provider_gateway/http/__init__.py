"""The shared upstream HTTP layer: pooled clients, timeouts, error mapping, streaming helpers."""

from provider_gateway.http.client import ErrorPolicy, Timeouts, Upstream
from provider_gateway.http.exchange import OutgoingRequest, UpstreamResponse
from provider_gateway.http.pool import ConnectionStats, HostClient, UpstreamPool

__all__ = [
    "ConnectionStats",
    "ErrorPolicy",
    "HostClient",
    "OutgoingRequest",
    "Timeouts",
    "Upstream",
    "UpstreamPool",
    "UpstreamResponse",
]
