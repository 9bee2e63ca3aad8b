"""The cache's counter in the gateway's metrics: lookups by rpc and result (hit, miss, bypass)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # the metrics modules load the OpenTelemetry SDK: only when metrics are on
    from provider_gateway.observability.metrics import GatewayMetrics

NAME = "provider_gateway.cache.lookups"


class Lookups(Protocol):
    def add(self, amount: int, *values: str) -> None: ...


def lookup_counter(metrics: GatewayMetrics | None) -> Lookups | None:
    """A counter on the gateway's own meter, summed as its other counters are (observability/sums.py);
    None when metrics are off."""
    if metrics is None:
        return None
    from provider_gateway.observability.sums import Sums
    from provider_gateway.observability.tracing import INSTRUMENTATION

    return Sums(
        metrics.provider.get_meter(INSTRUMENTATION),
        NAME,
        "{request}",
        "Answer cache lookups, by rpc and result: hit, miss, or bypass (cache-control: no-cache, no-store)",
        ("rpc", "result"),
    )
