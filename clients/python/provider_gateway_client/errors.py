"""Typed errors: every call raises a `GatewayError` subclass instead of a bare `grpc.RpcError`.

    try:
        gateway.chat("mock/echo", "Hi")
    except RateLimitError as error:
        time.sleep(error.retry_after or 1)

The original `grpc.RpcError` stays reachable as `error.__cause__`. The delay a rate-limited call
asks for comes from the google.rpc.RetryInfo in the `grpc-status-details-bin` trailer, else from
`retry-after-ms`, else from gRFC A6's `grpc-retry-pushback-ms`, whose negative value says that no
retry can help (`do_not_retry`). google.rpc's messages live in googleapis-common-protos, which this
package does not depend on: the few fields read here are declared in a private descriptor pool
(see health.py).
"""

from __future__ import annotations

import re

import grpc
from google.protobuf import descriptor_pb2

from provider_gateway_client.private_pool import message_classes

RETRY_INFO_TYPE = "type.googleapis.com/google.rpc.RetryInfo"
PUSHBACK = "grpc-retry-pushback-ms"  # gRFC A6: milliseconds to wait; negative or unreadable: no retry
_PUSHBACK_VALUE = re.compile(r"-?[0-9]{1,10}")
INT32_MAX = 2**31 - 1


class GatewayError(Exception):
    """A call failed: `code` (grpc.StatusCode), `details` (the gateway's message), `retry_after`
    (seconds the gateway asked to wait before trying again, or None), `do_not_retry` (the gateway
    said a retry would fail the same way: the provider told it so, and it has no other to ask)."""

    def __init__(
        self,
        code: grpc.StatusCode,
        details: str,
        retry_after: float | None = None,
        do_not_retry: bool = False,
    ) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details
        self.retry_after = retry_after
        self.do_not_retry = do_not_retry


class RateLimitError(GatewayError):
    """RESOURCE_EXHAUSTED: a provider's rate limit or quota; `retry_after` says how long to wait."""


class NotFoundError(GatewayError):
    """NOT_FOUND: no such model or provider."""


class PermissionDeniedError(GatewayError):
    """PERMISSION_DENIED: the key may not use this model or provider."""


class AuthenticationError(GatewayError):
    """UNAUTHENTICATED: no gateway key, or a wrong one."""


class InvalidRequestError(GatewayError):
    """INVALID_ARGUMENT or FAILED_PRECONDITION: the request cannot succeed as written."""


class UnavailableError(GatewayError):
    """UNAVAILABLE: the gateway or every provider it tried could not be reached."""


class DeadlineExceededError(GatewayError):
    """DEADLINE_EXCEEDED: the call's `timeout` passed."""


ERROR_CLASSES: dict[grpc.StatusCode, type[GatewayError]] = {
    grpc.StatusCode.RESOURCE_EXHAUSTED: RateLimitError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.UNAUTHENTICATED: AuthenticationError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequestError,
    grpc.StatusCode.FAILED_PRECONDITION: InvalidRequestError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
}


def _status_file() -> descriptor_pb2.FileDescriptorProto:
    """google.rpc.Status with Any details, RetryInfo and Duration: only the fields read here."""
    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="provider_gateway_client/rpc_status.proto",
        package="provider_gateway_client.rpc",
        syntax="proto3",
    )

    def add(message: str, *fields: tuple[str, int, int, str]) -> None:
        declared = proto.message_type.add(name=message)
        for name, number, kind, type_name in fields:
            repeated = field.LABEL_REPEATED if name == "details" else field.LABEL_OPTIONAL
            added = declared.field.add(name=name, number=number, type=kind, label=repeated)
            if type_name:
                added.type_name = type_name

    add("Any", ("type_url", 1, field.TYPE_STRING, ""), ("value", 2, field.TYPE_BYTES, ""))
    add("Duration", ("seconds", 1, field.TYPE_INT64, ""), ("nanos", 2, field.TYPE_INT32, ""))
    add("RetryInfo", ("retry_delay", 1, field.TYPE_MESSAGE, ".provider_gateway_client.rpc.Duration"))
    add(
        "Status",
        ("code", 1, field.TYPE_INT32, ""),
        ("message", 2, field.TYPE_STRING, ""),
        ("details", 3, field.TYPE_MESSAGE, ".provider_gateway_client.rpc.Any"),
    )
    return proto


_Status, _RetryInfo = message_classes(_status_file(), "Status", "RetryInfo")


def _trailers(error: grpc.RpcError) -> dict[str, str | bytes]:
    trailing = getattr(error, "trailing_metadata", None)
    return dict((trailing() if trailing else None) or ())


def retry_delay(trailers: dict[str, str | bytes]) -> float | None:
    """Seconds from RetryInfo in `grpc-status-details-bin`, else from `retry-after-ms`, else from a
    pushback that is a wait, else None."""
    details = trailers.get("grpc-status-details-bin")
    if isinstance(details, bytes):
        try:
            status = _Status.FromString(details)
        except Exception:  # a malformed trailer must not hide the error it came with
            status = _Status()
        for detail in status.details:
            if detail.type_url == RETRY_INFO_TYPE:
                delay = _RetryInfo.FromString(detail.value).retry_delay
                return delay.seconds + delay.nanos / 1e9
    millis = trailers.get("retry-after-ms")
    if isinstance(millis, str) and millis.isdigit():
        return int(millis) / 1000
    pushback = pushback_ms(trailers)
    if pushback is not None and pushback >= 0:
        return pushback / 1000
    return None


def pushback_ms(trailers: dict[str, str | bytes]) -> int | None:
    """gRFC A6's `grpc-retry-pushback-ms`: the milliseconds to wait, -1 when it asks for no retry
    (a negative value, or one that is no signed 32-bit number: A6, and gRPC's own retries, read an
    unreadable value so), None when absent."""
    value = trailers.get(PUSHBACK)
    if value is None:
        return None
    if not isinstance(value, str) or not _PUSHBACK_VALUE.fullmatch(value) or int(value) > INT32_MAX:
        return -1
    return max(int(value), -1)


def retry_after(error: grpc.RpcError | GatewayError) -> float | None:
    """Seconds a failed call asked the caller to wait, or None (kept from the first client API)."""
    if isinstance(error, GatewayError):
        return error.retry_after
    return retry_delay(_trailers(error))


def gateway_error(error: grpc.RpcError) -> GatewayError:
    """The typed error for a failed call; raise it `from error`."""
    code = error.code() if callable(getattr(error, "code", None)) else grpc.StatusCode.UNKNOWN
    details = (error.details() if callable(getattr(error, "details", None)) else None) or ""
    cls = ERROR_CLASSES.get(code, GatewayError)
    trailers = _trailers(error)
    pushback = pushback_ms(trailers)
    return cls(code, details, retry_delay(trailers), pushback is not None and pushback < 0)
