"""The retry budget (Envoy's `retry_budget`): retries in flight capped at a share of the requests in flight.

Without it a failing provider under load turns every request into up to deployments + `retries`
attempts, multiplying the load on it just when it can least take it (a retry storm). A retry (any
attempt after a request's first, a failover included) may start only while the retries in flight
are below max(`min_retry_concurrency`, `retry_budget_percent`% of the requests in flight); else the
request ends with its last attempt's error, as with `retries = 0`.

The counts are this process's (one worker of `serve --workers`, one replica), over every route and
group; the percentage and floor are those of the request's plan. A retry's own request is in flight,
so retries in flight can never reach 100% of the requests: 100 means no budget, and is not checked.
Counting costs a request that succeeds first time one increment and one decrement; each count is
given back in a `finally`, however the request or retry ends.
"""

from __future__ import annotations

from collections.abc import Callable

from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.routing.settings import RoutingSettings


class RetryBudget:
    """The requests and retries in flight in this process. `on_refused(provider)` is told of each
    retry the budget holds back (the metric), the provider being the one it would have gone to."""

    __slots__ = ("on_refused", "requests", "retries")

    def __init__(self) -> None:
        self.requests = 0  # in the retry loop: from a request's plan to its end
        self.retries = 0  # attempts after a request's first, from their start to their end
        self.on_refused: Callable[[str], None] | None = None

    def take(self, settings: RoutingSettings, last_error: GatewayError | None, provider: str) -> None:
        """Count a retry about to start, or raise the request's error when the budget holds it back.
        The caller gives the count back (`retries -= 1`) in a `finally` once the retry ends."""
        percent = settings.retry_budget_percent
        if percent < 100:
            allowed = max(settings.min_retry_concurrency, self.requests * percent / 100)
            if self.retries >= allowed:
                if self.on_refused is not None:
                    self.on_refused(provider)
                raise _held_back(last_error, self.retries, self.requests)
        self.retries += 1


def _held_back(last: GatewayError | None, retries: int, requests: int) -> GatewayError:
    """The last attempt's error (what the client would get with `retries = 0`), saying why it was not
    retried and which options would let it be."""
    why = (
        f"not retried: the gateway's retry budget held it back ({retries} retries in flight for "
        f"{requests} requests); raise [routing] retry_budget_percent or min_retry_concurrency"
    )
    if last is None:  # (a retry follows a failure, which names its error: not expected)
        return GatewayError(ErrorKind.UNAVAILABLE, why)
    error = GatewayError(
        last.kind,
        f"{last.message} ({why})",
        provider=last.provider,
        retry_after=last.retry_after,
        retryable=last.retryable,
        upstream_status=last.upstream_status,
        detail=last.detail,
    )
    error.retry_elsewhere_only = last.retry_elsewhere_only
    error.refused_everywhere = last.refused_everywhere
    return error
