"""The attempt in progress, visible to whatever wraps a provider call (tracing spans, logs).

The router sets `CURRENT_ATTEMPT` for each attempt, from before its provider's first call until the
attempt ends, so an instrumented provider wrapper can name its span after the attempt number, the
deployment and its breaker state without new parameters; `AttemptScope` sets it. The same value
carries the sinks for the rate limits and the partial usage the provider reports: one context
variable (http/rate_limits.py's, where the lowest of its readers is), not one per value.

A wrapper may also hand out its stream as a `ReportedStream`: the router then reads the provider's
own stream and tells the wrapper's `AttemptReport` what it saw, instead of every event passing
through one more generator (the wrapper's) that only looks at it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar, Token
from dataclasses import field
from typing import Protocol, cast

from provider_gateway.domain import ProviderFinish, StreamEvent, Usage, value
from provider_gateway.http.rate_limits import ATTEMPT_SINKS, RateLimitInfo
from provider_gateway.providers.reported_usage import Heard


@value  # built for every attempt: see domain.value
class AttemptInfo:
    number: int  # 1 for the first attempt of a request, then 2, 3...
    deployment: str  # "<group>/<provider>/<model>", stable across requests
    breaker_state: str  # "closed", "open" or "half_open" when the attempt started
    # Where the provider's code reports (http/rate_limits.py's AttemptSinks): not the attempt's
    # identity, so neither compared, hashed nor printed.
    rate_limits: Callable[[RateLimitInfo], None] | None = field(default=None, compare=False, repr=False)
    partial_usage: Callable[[Heard], None] | None = field(default=None, compare=False, repr=False)


# The router sets only AttemptInfo values in it.
CURRENT_ATTEMPT = cast("ContextVar[AttemptInfo | None]", ATTEMPT_SINKS)


class AttemptScope:
    """Sets the attempt's context variable for the provider's code: its identity, and the sinks for
    the rate limits and the partial usage the provider reports.

    Set before the provider's first call and kept until the attempt ends, rather than set and reset
    around every event (context-variable operations per relayed token): between events only the
    router's consumer runs in this task, and nothing there reads it. A generator may be resumed or
    closed from another task (grpc closes a cancelled stream elsewhere): `enter` before each call
    sets it in that task's context too, and `exit` skips the tokens of a context it is not in
    (that context ends with its task, leaving nothing behind).
    """

    __slots__ = ("info", "tokens")

    def __init__(self, info: AttemptInfo) -> None:
        self.info = info
        self.tokens: list[Token[AttemptInfo | None]] = []

    def enter(self) -> None:
        if CURRENT_ATTEMPT.get() is not self.info:  # the first call, or a call from another task
            self.tokens.append(CURRENT_ATTEMPT.set(self.info))

    def exit(self) -> None:
        while self.tokens:
            token = self.tokens.pop()
            # (try, not contextlib.suppress: a context manager more on every call, as in consumption.py)
            try:  # noqa: SIM105
                CURRENT_ATTEMPT.reset(token)
            except ValueError:  # set in another task's context
                pass


class AttemptReport(Protocol):
    """What a provider wrapper records of one streamed attempt, told by the stream's reader: the
    first content event (when it was read), how the stream ended (`ended`: at its end; `failed`:
    a read raised; neither: the reader stopped before the end, a cancel), then `close` once the
    provider's stream is closed, with the last usage and finish it gave."""

    def first_chunk(self, at_ns: int) -> None: ...

    def ended(self) -> None: ...

    def failed(self, exc: BaseException) -> None: ...

    def close(self, usage: Usage | None, finish: ProviderFinish | None) -> None: ...


class ReportedStream:
    """A wrapper's stream that its reader reports on. `open()` starts the attempt: the provider's
    own stream and the report to tell (the router, routing/attempts.py). Iterated as is, a subclass
    relays the stream through a generator of its own that sees for itself (any other reader)."""

    __slots__ = ()

    def open(self) -> tuple[AsyncIterator[StreamEvent], AttemptReport]:
        raise NotImplementedError
