"""Trace context out to upstream HTTP requests.

The HTTP layer calls `inject_trace_headers(headers)` before sending each upstream request. While
tracing is off this is one global read; once enabled it adds W3C `traceparent` for the current
span, i.e. the attempt span of instrumented.py, and `tracestate` only with the gateway's own
entries: a caller's never reaches a vendor (tracing.parent_context does not take it).
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

_inject: Callable[[MutableMapping[str, str]], None] | None = None


def inject_trace_headers(headers: MutableMapping[str, str]) -> None:
    if _inject is not None:
        _inject(headers)


def annotate_upstream_request(request: Any) -> None:
    """An upstream HTTP request (httpx's) as the current attempt span sees it: trace headers out,
    and `server.address` / `server.port` (OpenTelemetry's HTTP client attributes) on the span."""
    inject_trace_headers(request.headers)
    from opentelemetry import trace

    span = trace.get_current_span()
    if span.is_recording():
        url = request.url
        span.set_attribute("server.address", url.host)
        span.set_attribute("server.port", url.port or (443 if url.scheme == "https" else 80))


def enable() -> None:
    global _inject
    from opentelemetry.propagate import inject

    _inject = inject
