"""What an attempt consumed when its provider did not say it all: reported on every ending.

A stream cut by a failure, a passed deadline or a client that cancels still consumed tokens, and the
provider bills them. When an attempt ends without the provider's whole usage, the router takes what
the provider did report before the end (partial: Anthropic's prompt tokens at message_start, an
OpenAI usage chunk before a missing [DONE]), else estimates it (the request's prompt, and the
content it relayed, at about four characters a token), and reports it here, to whoever watches the request: the server's trailers, the request log and metrics, the
key's quota. A context variable carries the watchers, as the rate-limit sink does, so that the
router needs none of them.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass

from provider_gateway.domain import Cost, Usage


@dataclass(slots=True, frozen=True)
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
