"""Trace context out to upstream HTTP requests.

The HTTP layer calls `inject_trace_headers(headers)` before sending each upstream request. While
tracing is off this is one global read; once enabled it adds W3C `traceparent` (and `tracestate`)
for the current span, i.e. the attempt span of instrumented.py.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping

_inject: Callable[[MutableMapping[str, str]], None] | None = None


def inject_trace_headers(headers: MutableMapping[str, str]) -> None:
    if _inject is not None:
        _inject(headers)


def enable() -> None:
    global _inject
    from opentelemetry.propagate import inject

    _inject = inject
