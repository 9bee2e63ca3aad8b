"""Errors every layer raises; the gRPC edge maps each kind to one status code.

Adapters translate upstream failures into these so that the router can decide on retries and
failover without knowing any vendor, and clients see the same status whichever provider failed.
"""

from __future__ import annotations

import enum


class ErrorKind(enum.Enum):
    """Failure kinds, named after the gRPC status each maps to."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    ABORTED = "ABORTED"
    INTERNAL = "INTERNAL"
    CANCELLED = "CANCELLED"


# Kinds worth another try, possibly on another deployment. Context-length and other bad requests,
# missing models and bad keys fail the same way everywhere, so they are final.
RETRYABLE_KINDS = frozenset(
    {ErrorKind.RESOURCE_EXHAUSTED, ErrorKind.UNAVAILABLE, ErrorKind.DEADLINE_EXCEEDED, ErrorKind.ABORTED}
)


class GatewayError(Exception):
    """A failure with a kind, a message a person can act on, and retry facts.

    `retry_after` is the delay in seconds the upstream asked for (Retry-After, RetryInfo...), or
    None. `upstream_status` is the HTTP status or vendor code, kept for logs and metrics.
    """

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        provider: str = "",
        retry_after: float | None = None,
        retryable: bool | None = None,
        upstream_status: int | str | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.provider = provider
        self.retry_after = retry_after
        self.retryable = kind in RETRYABLE_KINDS if retryable is None else retryable
        self.upstream_status = upstream_status

    def __str__(self) -> str:
        return f"{self.provider}: {self.message}" if self.provider else self.message


def invalid_argument(message: str) -> GatewayError:
    return GatewayError(ErrorKind.INVALID_ARGUMENT, message)


def not_found(message: str) -> GatewayError:
    return GatewayError(ErrorKind.NOT_FOUND, message)


def unimplemented(provider: str, what: str) -> GatewayError:
    return GatewayError(
        ErrorKind.UNIMPLEMENTED, f"provider {provider!r} does not support {what}", provider=provider
    )
