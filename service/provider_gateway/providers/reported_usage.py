"""Usage a provider reported before its answer was complete, carried to the attempt in progress.

Vendors report some usage early: Anthropic's `message_start` carries the prompt's tokens (cache
reads and writes included) and `message_delta` the output so far; an OpenAI-compatible host may
send its usage chunk and then drop the connection. An adapter reports what it has
heard as soon as it hears it; if the stream is then cut, cancelled or timed out, the router charges
these figures (marked partial) instead of an estimate. The router installs the sink with the attempt
(the context variable that holds it, with its rate-limit sink: http/rate_limits.py), so adapters
need no router.

A vendor that repeats its cumulative usage in every chunk (Gemini, Bedrock's InvokeModel families)
reports once a function that reads its decoder's latest figures: the router calls it only if the
stream is cut, so no chunk pays for building a Usage that is almost never read.
"""

from __future__ import annotations

from collections.abc import Callable

from provider_gateway.domain import Usage
from provider_gateway.http.rate_limits import ATTEMPT_SINKS

# What was heard: the figures themselves, or a function that reads the latest (None: nothing yet).
Heard = Usage | Callable[[], Usage | None]


def report_partial_usage(usage: Heard) -> None:
    """The usage heard so far (cumulative: each report replaces the last), or a function that reads
    it when asked; a no-op outside the router."""
    attempt = ATTEMPT_SINKS.get()
    if attempt is not None and (sink := attempt.partial_usage) is not None:
        sink(usage)
