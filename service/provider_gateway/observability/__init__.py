"""Observability: traces, metrics, structured logs and the provider health monitor.

Imports nothing from OpenTelemetry until traces or metrics are switched on.
"""

from provider_gateway.observability.propagation import inject_trace_headers
from provider_gateway.observability.telemetry import Telemetry, TelemetrySettings

__all__ = ["Telemetry", "TelemetrySettings", "inject_trace_headers"]
