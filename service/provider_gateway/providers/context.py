"""What a provider factory receives besides its own configuration: the server's shared resources.

Factories are `(name, options, context) -> Provider`. The context is created by the server at
start and owned by it (no globals), so tests can run several gateways in one process.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from provider_gateway.http.pool import UpstreamPool


@dataclass(slots=True)
class ProviderContext:
    """Shared resources for adapters: the HTTP client pool (one client per upstream origin), and
    whether the deltas of one upstream read go on merged ([server] coalesce_deltas)."""

    http: UpstreamPool = field(default_factory=UpstreamPool)
    merge_reads: bool = True
