"""What one RPC's telemetry accumulates while it runs, shared through a ContextVar.

The interceptor creates a `RequestState` per call; each provider attempt (see instrumented.py) adds
its facts; at the end the interceptor turns it into one log line, metrics and span attributes.
Nothing here imports OpenTelemetry, so the default server pays only for a few attribute writes.
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

# Outcomes a client controls (unknown model, bad argument): their model names are not metric labels,
# so a caller cannot blow up label cardinality or plant text in the metrics.
UNTRUSTED_OUTCOMES = frozenset({"NOT_FOUND", "INVALID_ARGUMENT"})


@dataclass(slots=True)
class RequestState:
    rpc: str
    request_id: str  # the caller's x-request-id, or "" until `id()` makes one
    trace_id: str = ""
    requested_model: str = ""  # as the client wrote it (alias, provider/model...): spans only
    attempts: int = 0
    retries: int = 0
    failovers: int = 0
    provider: str = ""
    model: str = ""
    response_model: str = ""
    outcome: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_micros: int | None = None  # the request's cost (micro-USD) when known
    usage_estimated: bool = False  # some tokens counted were estimated: an attempt ended without usage
    usage_source: str = "provider"  # the least certain: "provider", "partial" or "estimated"
    key: str = ""  # the caller's API key's configured name (never the key), when keys are configured
    # The request's own tags (ChatRequest.metadata), once checked: the log and the span carry them,
    # never a metric (their values are the client's, unbounded in number).
    tags: Mapping[str, str] | None = None
    unreported: list[Any] = field(default_factory=list)  # the attempts' `Consumed`, for the metrics
    tried: set[str] = field(default_factory=set)

    def id(self) -> str:
        """The request's id: the caller's, else a fresh one, made on first use (a log line, a span)
        rather than for every request (a uuid4 costs about 2 us)."""
        if not self.request_id:
            self.request_id = uuid.uuid4().hex
        return self.request_id

    def add_estimate(self, consumed: Any) -> None:
        """A `routing.consumption.Consumed`: an attempt that ended without the provider's whole usage
        (partial: what it reported before the end; else estimated)."""
        self.input_tokens += consumed.usage.input_tokens
        self.output_tokens += consumed.usage.output_tokens
        self.unreported.append(consumed)
        if consumed.source == "estimated":
            self.usage_estimated = True
            self.usage_source = "estimated"
        elif self.usage_source == "provider":
            self.usage_source = "partial"

    def unreported_cost(self) -> int | None:
        """What the attempts that ended without the provider's whole usage cost, when each is known."""
        costs = [c.cost for c in self.unreported]
        return sum(c.amount_micros for c in costs) if costs and all(c.known for c in costs) else None

    def begin_attempt(self, provider: str) -> tuple[bool, bool]:
        """Count an attempt: (is_retry, is_failover) — a retry goes back to a provider this request
        already tried, a failover moves on to one it has not."""
        self.attempts += 1
        tried = self.tried
        retry = provider in tried
        failover = bool(tried) and not retry
        self.retries += retry
        self.failovers += failover
        tried.add(provider)
        self.provider = provider
        return retry, failover


CURRENT: ContextVar[RequestState | None] = ContextVar("provider_gateway_request", default=None)


def _router_attempt_var() -> ContextVar[Any] | None:
    """The router's `CURRENT_ATTEMPT` (AttemptInfo(number, deployment, breaker_state)), if it has one.

    Looked up by name so that this package works with routers that do not publish attempts yet.
    """
    try:
        module = importlib.import_module("provider_gateway.routing.attempt")
    except ImportError:
        return None
    var = getattr(module, "CURRENT_ATTEMPT", None)
    return var if isinstance(var, ContextVar) else None


ROUTER_ATTEMPT = _router_attempt_var()


@dataclass(slots=True, frozen=True)
class AttemptFacts:
    number: int
    deployment: str
    breaker_state: str


def router_attempt(fallback_number: int) -> AttemptFacts:
    """What the router says about the attempt in progress, read defensively."""
    info = ROUTER_ATTEMPT.get(None) if ROUTER_ATTEMPT is not None else None
    if info is None:
        return AttemptFacts(fallback_number, "", "")
    number = getattr(info, "number", fallback_number)
    deployment = getattr(info, "deployment", "")
    if not isinstance(deployment, str):  # a deployment object: use its name, never its repr (keys)
        deployment = str(getattr(deployment, "name", "") or "")
    breaker = getattr(info, "breaker_state", "")
    breaker = str(getattr(breaker, "value", breaker) or "")
    return AttemptFacts(number if isinstance(number, int) else fallback_number, deployment, breaker)
