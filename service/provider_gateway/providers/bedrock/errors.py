"""Bedrock failures -> GatewayError, with statuses a caller can act on.

Bedrock names its errors: `x-amzn-ErrorType` on an HTTP error (the body's `message` explains), or
`:exception-type` inside an event stream, where the name is the stream member's (`throttlingException`).
Transport failures and timeouts are mapped by the shared HTTP client (`http/client.py`).
"""

from __future__ import annotations

import orjson

from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.http.client import ErrorPolicy
from provider_gateway.http.errors import MAX_RAW_TEXT, redact, shown_glimpse
from provider_gateway.http.exchange import UpstreamResponse

CODES: dict[str, ErrorKind] = {
    "ThrottlingException": ErrorKind.RESOURCE_EXHAUSTED,
    "TooManyRequestsException": ErrorKind.RESOURCE_EXHAUSTED,
    "ServiceQuotaExceededException": ErrorKind.RESOURCE_EXHAUSTED,
    "ValidationException": ErrorKind.INVALID_ARGUMENT,
    "AccessDeniedException": ErrorKind.PERMISSION_DENIED,
    "ResourceNotFoundException": ErrorKind.NOT_FOUND,
    "ModelNotReadyException": ErrorKind.UNAVAILABLE,
    "ServiceUnavailableException": ErrorKind.UNAVAILABLE,
    "InternalServerException": ErrorKind.UNAVAILABLE,
    "ModelStreamErrorException": ErrorKind.UNAVAILABLE,
    "ModelErrorException": ErrorKind.UNAVAILABLE,
    "ModelTimeoutException": ErrorKind.DEADLINE_EXCEEDED,
    "UnrecognizedClientException": ErrorKind.UNAUTHENTICATED,
    "InvalidSignatureException": ErrorKind.UNAUTHENTICATED,
    "ExpiredTokenException": ErrorKind.UNAUTHENTICATED,
    "IncompleteSignature": ErrorKind.UNAUTHENTICATED,
    "MissingAuthenticationTokenException": ErrorKind.UNAUTHENTICATED,
}

# How AWS words a signature dated more than 5 minutes from its clock (X-Amz-Date): new credentials
# do not help, a synchronised clock does. botocore does not correct the skew either.
CLOCK_SKEW_MESSAGES = ("Signature expired", "Signature not yet current")

BY_HTTP_STATUS = {
    400: ErrorKind.INVALID_ARGUMENT,
    401: ErrorKind.UNAUTHENTICATED,
    403: ErrorKind.PERMISSION_DENIED,
    404: ErrorKind.NOT_FOUND,
    408: ErrorKind.DEADLINE_EXCEEDED,
    429: ErrorKind.RESOURCE_EXHAUSTED,
}


class AwsError(Exception):
    """An error Bedrock named (an HTTP error or an exception frame), before it has a gRPC status."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status = code, message, status


def error_code(header: str, body: object) -> str:
    """`ThrottlingException` from `ThrottlingException:http://internal...` or the body's `__type`."""
    raw = header or (str(body.get("__type") or body.get("code") or "") if isinstance(body, dict) else "")
    code = raw.split(":", 1)[0].rsplit("#", 1)[-1]
    return code[:1].upper() + code[1:]  # stream members are camelCase: `throttlingException`


def from_aws_error(error: AwsError, provider: str, model: str, region: str) -> GatewayError:
    code = error_code(error.code, None)
    message = error.message or code or "unknown error"
    kind = CODES.get(code)
    if kind is None:
        status = error.status or 0
        kind = BY_HTTP_STATUS.get(
            status, ErrorKind.UNAVAILABLE if (status or 500) >= 500 else ErrorKind.INTERNAL
        )
    if kind is ErrorKind.PERMISSION_DENIED:
        message = (
            f"access to Bedrock model {model!r} in {region} is denied: enable the model under "
            f"'Model access' in the Bedrock console and allow bedrock:InvokeModel for it ({message})"
        )
    elif code == "InvalidSignatureException" and message.startswith(CLOCK_SKEW_MESSAGES):
        message = (
            f"Bedrock rejected the request's signing time: this host's clock differs from AWS's by "
            f"more than 5 minutes; synchronise it (NTP) ({message})"
        )
    elif kind is ErrorKind.RESOURCE_EXHAUSTED:
        message = f"Bedrock throttled the request for {model!r}: {message}"
    else:
        message = f"Bedrock {code or error.status}: {message}"
    return GatewayError(kind, message, provider=provider, upstream_status=code or error.status)


class BedrockErrorPolicy(ErrorPolicy):
    """HTTP error responses in AWS's JSON error shape."""

    def __init__(self, region: str) -> None:
        self.region = region

    def from_response(
        self, provider: str, response: UpstreamResponse, raw: bytes, model: str, secrets: tuple[str, ...]
    ) -> GatewayError:
        try:
            body = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            body = {"message": shown_glimpse(raw, MAX_RAW_TEXT, secrets)}  # masked, then cut
        code = error_code(response.headers.get("x-amzn-ErrorType", ""), body)
        text = str(body.get("message") or body.get("Message") or "") if isinstance(body, dict) else ""
        return from_aws_error(
            AwsError(code, redact(text, secrets), response.status_code), provider, model, self.region
        )


def translate(exc: BaseException, provider: str, model: str, region: str) -> GatewayError:
    """Any failure of a Bedrock call as a GatewayError; unknown exceptions become INTERNAL."""
    if isinstance(exc, GatewayError):
        if not exc.provider:
            exc.provider = provider
        return exc
    if isinstance(exc, AwsError):
        return from_aws_error(exc, provider, model, region)
    return GatewayError(
        ErrorKind.INTERNAL, "Bedrock call failed", provider=provider, detail=f"{type(exc).__name__}: {exc}"
    )
