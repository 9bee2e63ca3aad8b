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
    `detail` is for the gateway's log only: upstream URLs and library exception classes, which a
    client must not see but an operator needs.
    `retry_elsewhere_only`: the upstream said (`x-should-retry: false`, or an account out of credit)
    that sending this request to it again will not help. The router then sends the request to that
    deployment no more, but may still fail over to the plan's other deployments (other servers);
    `retryable` says whether it may.
    `refused_everywhere`: every deployment of the request's plan said so (set by the router).
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
        detail: str = "",
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.provider = provider
        self.retry_after = retry_after
        self.retryable = kind in RETRYABLE_KINDS if retryable is None else retryable
        self.upstream_status = upstream_status
        self.detail = detail
        self.retry_elsewhere_only = False  # set from the upstream's answer (http/errors.py)
        self.refused_everywhere = False

    @property
    def retry_nowhere(self) -> bool:
        """No retry of the request can help, by the gateway or by its client: the upstream said so
        and the router sends the request nowhere else, as the error is final (`retryable` false)
        or every deployment of the plan said the same (a client's retry would meet them again)."""
        return self.retry_elsewhere_only and (self.refused_everywhere or not self.retryable)

    def __str__(self) -> str:
        return f"{self.provider}: {self.message}" if self.provider else self.message


# The most of one client-supplied value an error message repeats: a whole value could be megabytes,
# more than gRPC's trailing metadata carries (the client would see RESOURCE_EXHAUSTED instead).
MAX_ECHO_CHARS = 80


def shown(value: object, limit: int = MAX_ECHO_CHARS) -> str:
    """`repr(value)` for an error message, cut to `limit` characters with the length noted."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f" ({len(value)} characters)" if isinstance(value, str) else ""
    return f"{text[:limit]}...{size}"


def invalid_argument(message: str) -> GatewayError:
    return GatewayError(ErrorKind.INVALID_ARGUMENT, message)


def not_found(message: str) -> GatewayError:
    return GatewayError(ErrorKind.NOT_FOUND, message)


def unimplemented(provider: str, what: str) -> GatewayError:
    return GatewayError(
        ErrorKind.UNIMPLEMENTED, f"provider {provider!r} does not support {what}", provider=provider
    )
