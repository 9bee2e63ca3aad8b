"""The attempt in progress, visible to whatever wraps a provider call (tracing spans, logs).

The router sets `CURRENT_ATTEMPT` for each attempt, from before its provider's first call until the
attempt ends, so an instrumented provider wrapper can name its span after the attempt number, the
deployment and its breaker state without new parameters.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(slots=True, frozen=True)
class AttemptInfo:
    number: int  # 1 for the first attempt of a request, then 2, 3...
    deployment: str  # "<group>/<provider>/<model>", stable across requests
    breaker_state: str  # "closed", "open" or "half_open" when the attempt started


CURRENT_ATTEMPT: ContextVar[AttemptInfo | None] = ContextVar("provider_gateway_attempt", default=None)
