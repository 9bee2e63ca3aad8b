"""What an attempt consumed when its provider did not say it all: reported on every ending.

A stream cut by a failure, a passed deadline or a client that cancels still consumed tokens, and the
provider bills them. When an attempt ends without the provider's whole usage, the router takes what
the provider did report before the end (partial: Anthropic's prompt tokens at message_start, an
OpenAI usage chunk before the connection dropped), else estimates it (the request's prompt, and the
content it relayed, at about four characters a token), and reports it here, to whoever watches the
request: the server's trailers, the request log and metrics, the key's quota. A context variable
carries the watchers, as the rate-limit sink does, so that the router needs none of them.
`reckon_usage` is that reckoning (`HeardUsage` keeps what the provider reported, `estimate` the rest).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from contextvars import ContextVar, Token

from provider_gateway.domain import ChatRequest, CompletionRequest, Cost, Usage, value
from provider_gateway.errors import GatewayError
from provider_gateway.providers.base import CHARS_PER_TOKEN, estimate_messages, estimate_tokens
from provider_gateway.providers.reported_usage import Heard


@value  # built per call: see domain.value
class Consumed:
    provider: str
    model: str
    usage: Usage  # the provider's whole usage never came for this attempt
    cost: Cost
    source: str = "estimated"  # "partial": what the provider reported before the end, else an estimate


type Watcher = Callable[[Consumed], None]
WATCHERS: ContextVar[tuple[Watcher, ...]] = ContextVar("provider_gateway_consumption", default=())


class watching:  # lower case: used as `with watching(...)`, as the function it replaced
    """Call `watcher` for each estimate reported while the block runs (and in tasks it starts).

    A class rather than a generator-based context manager: it is entered twice per call (the
    server's and the telemetry's), and contextlib's wrapper costs a generator and several calls."""

    __slots__ = ("_token", "_watcher")
    _token: Token[tuple[Watcher, ...]]

    def __init__(self, watcher: Watcher) -> None:
        self._watcher = watcher

    def __enter__(self) -> None:
        self._token = WATCHERS.set((*WATCHERS.get(), self._watcher))

    def __exit__(self, *exc: object) -> None:
        # A stream closed from another context (the garbage collector) cannot reset; its task's
        # context ends with it, so nothing is left behind. (try, not contextlib.suppress: that is
        # one more context manager per call.)
        try:  # noqa: SIM105
            WATCHERS.reset(self._token)
        except ValueError:
            pass


def report(consumed: Consumed) -> None:
    for watcher in WATCHERS.get():
        watcher(consumed)


def estimate(request: ChatRequest | CompletionRequest, relayed_chars: int) -> Usage:
    """What an attempt consumed when its provider did not say: the prompt, and what was relayed."""
    prompt = (
        estimate_messages(request.messages)
        if isinstance(request, ChatRequest)
        else estimate_tokens(request.prompt)
    )
    return Usage(
        input_tokens=prompt, output_tokens=math.ceil(relayed_chars / CHARS_PER_TOKEN), estimated=True
    )


class HeardUsage:
    """The partial-usage sink of one attempt: keeps the last report (reports are cumulative), read
    only when the attempt ends without its provider's whole usage."""

    __slots__ = ("_report",)

    def __init__(self) -> None:
        self._report: Heard | None = None

    def __call__(self, report: Heard) -> None:
        self._report = report

    @property
    def usage(self) -> Usage | None:
        report = self._report
        return report() if callable(report) else report


def reckon_usage(
    usage: Usage | None, request: ChatRequest | CompletionRequest, relayed_chars: int, heard: HeardUsage
) -> tuple[Usage, str]:
    """What an attempt consumed, and where that figure comes from: the provider's whole usage
    ("provider"); else what it did report before the end ("partial": Anthropic's prompt tokens at
    message_start, an OpenAI usage chunk before a cut), its output no less than what was
    relayed; else an estimate ("estimated")."""
    if usage is not None:
        return usage, "provider"
    estimated = estimate(request, relayed_chars)
    reported = heard.usage
    if reported is None:
        return estimated, "estimated"
    output = max(reported.output_tokens, estimated.output_tokens)
    return dataclasses.replace(reported, output_tokens=output), "partial"


# A refused attempt's cost: a known zero, from no usage.
NOTHING_CONSUMED = Cost(0, known=True, usage_source="none")


def refused_before_work(exc: GatewayError) -> bool:
    """Whether the provider answered the request with an HTTP error status (a 429, 401, 400, 5xx):
    it refused before processing it, so nothing was consumed. A vendor code (a string) may come from
    inside a stream that was already billed: not a refusal."""
    status = exc.upstream_status
    return isinstance(status, int) and not isinstance(status, bool) and status >= 400
