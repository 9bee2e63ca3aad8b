"""botocore failures -> GatewayError, with statuses a caller can act on.

Bedrock names its errors (`x-amzn-ErrorType`, or `:exception-type` inside an event stream); botocore
raises both as `ClientError` (`EventStreamError` for the stream) with the name in `Error.Code`.
"""

from __future__ import annotations

import asyncio
import binascii

import aiohttp
from botocore.eventstream import ParserError
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from botocore.parsers import ResponseParserError

from provider_gateway.errors import ErrorKind, GatewayError

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

BY_HTTP_STATUS = {
    400: ErrorKind.INVALID_ARGUMENT,
    401: ErrorKind.UNAUTHENTICATED,
    403: ErrorKind.PERMISSION_DENIED,
    404: ErrorKind.NOT_FOUND,
    408: ErrorKind.DEADLINE_EXCEEDED,
    429: ErrorKind.RESOURCE_EXHAUSTED,
}

# Failures that say nothing about the request, only about the link: worth another try elsewhere.
TRANSPORT_ERRORS = (
    EndpointConnectionError,
    ConnectTimeoutError,
    ResponseStreamingError,
    aiohttp.ClientError,
    ConnectionError,
)
# A response botocore cannot decode: bad CRCs or lengths, bad base64 in a chunk, bad or too deep JSON.
MALFORMED_ERRORS = (ParserError, ResponseParserError, binascii.Error, UnicodeDecodeError, RecursionError)


def from_client_error(exc: ClientError, provider: str, model: str, region: str) -> GatewayError:
    error = exc.response.get("Error", {}) if isinstance(exc.response, dict) else {}
    code = str(error.get("Code") or "")
    # Inside an event stream the code is the stream member's name: `throttlingException`.
    code = code[:1].upper() + code[1:]
    message = str(error.get("Message") or "") or code or "unknown error"
    status = (
        exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if isinstance(exc.response, dict)
        else None
    )
    kind = CODES.get(code)
    if kind is None:
        kind = BY_HTTP_STATUS.get(
            status or 0, ErrorKind.UNAVAILABLE if (status or 500) >= 500 else ErrorKind.INTERNAL
        )
    if kind is ErrorKind.PERMISSION_DENIED:
        message = (
            f"access to Bedrock model {model!r} in {region} is denied: enable the model under "
            f"'Model access' in the Bedrock console and allow bedrock:InvokeModel for it ({message})"
        )
    elif kind is ErrorKind.RESOURCE_EXHAUSTED:
        message = f"Bedrock throttled the request for {model!r}: {message}"
    else:
        message = f"Bedrock {code or status}: {message}"
    return GatewayError(kind, message, provider=provider, upstream_status=code or status)


def translate(exc: BaseException, provider: str, model: str, region: str) -> GatewayError:
    """Any failure of a Bedrock call as a GatewayError; unknown exceptions become INTERNAL."""
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, ClientError):
        return from_client_error(exc, provider, model, region)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return GatewayError(
            ErrorKind.UNAUTHENTICATED,
            "no usable AWS credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE "
            "(or the provider's `profile`), or run with an instance or task role",
            provider=provider,
        )
    if isinstance(exc, NoRegionError):
        return GatewayError(ErrorKind.FAILED_PRECONDITION, "no AWS region configured", provider=provider)
    if isinstance(exc, ParamValidationError):
        return GatewayError(ErrorKind.INVALID_ARGUMENT, f"Bedrock request rejected: {exc}", provider=provider)
    if isinstance(exc, ReadTimeoutError | asyncio.TimeoutError):
        return GatewayError(ErrorKind.DEADLINE_EXCEEDED, "Bedrock did not answer in time", provider=provider)
    if isinstance(exc, MALFORMED_ERRORS):
        return GatewayError(
            ErrorKind.UNAVAILABLE, "malformed response from Bedrock", provider=provider, detail=_cause(exc)
        )
    if isinstance(exc, TRANSPORT_ERRORS):
        return GatewayError(
            ErrorKind.UNAVAILABLE, "Bedrock connection failed", provider=provider, detail=_cause(exc)
        )
    if isinstance(exc, BotoCoreError):
        return GatewayError(
            ErrorKind.UNAVAILABLE, "Bedrock call failed", provider=provider, detail=_cause(exc)
        )
    return GatewayError(ErrorKind.INTERNAL, "Bedrock call failed", provider=provider, detail=_cause(exc))


def _cause(exc: BaseException) -> str:
    """The library's exception, for the gateway's log: it names endpoint URLs a client must not see."""
    return f"{type(exc).__name__}: {exc}"
