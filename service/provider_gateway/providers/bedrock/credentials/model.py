"""What every credential source shares: the credentials, the source protocol, and their errors."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from provider_gateway.config import register_secret
from provider_gateway.errors import ErrorKind, GatewayError


@dataclass(frozen=True, slots=True)
class AwsCredentials:
    """SigV4 signing credentials. `expiration` is tz-aware UTC; None means they do not expire."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None = None
    expiration: datetime | None = None

    def __repr__(self) -> str:
        # The key id names the credentials in logs; the secret and the token never appear.
        token = ", session_token=***" if self.session_token else ""
        return (
            f"AwsCredentials(access_key_id={self.access_key_id!r}, secret_access_key=***{token}, "
            f"expiration={self.expiration!r})"
        )

    __str__ = __repr__


class CredentialSource(Protocol):
    """One link of the chain. `load` returns None when this source is not set up here (the chain
    moves on), credentials when it is, and raises GatewayError when it is set up but fails."""

    name: str

    async def load(self) -> AwsCredentials | None: ...


class NotSetUp(Exception):
    """Raised by a source that found nothing to use; its message joins "no credentials found"."""


def credentials_error(kind: ErrorKind, message: str, *, detail: str = "") -> GatewayError:
    """A credentials failure: UNAUTHENTICATED (fix the setup) or UNAVAILABLE (try again)."""
    return GatewayError(
        kind, f"AWS credentials: {message}", retryable=kind is ErrorKind.UNAVAILABLE, detail=detail
    )


def parse_expiration(value: Any, where: str) -> datetime | None:
    """ISO 8601 (`2026-12-06T12:00:00Z`, with or without fractions or an offset) -> aware UTC."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise credentials_error(ErrorKind.UNAVAILABLE, f"{where} gave an expiration that is not a date")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise credentials_error(
            ErrorKind.UNAVAILABLE, f"{where} gave an expiration that is not an ISO 8601 date: {value[:40]!r}"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def from_json(document: Any, where: str) -> AwsCredentials:
    """The JSON that IMDS and container endpoints return: AccessKeyId, SecretAccessKey, Token, Expiration."""
    if not isinstance(document, dict):
        raise credentials_error(ErrorKind.UNAVAILABLE, f"{where} returned a body that is not a JSON object")
    key_id, secret = document.get("AccessKeyId"), document.get("SecretAccessKey")
    if not isinstance(key_id, str) or not key_id or not isinstance(secret, str) or not secret:
        raise credentials_error(ErrorKind.UNAVAILABLE, f"{where} returned no AccessKeyId/SecretAccessKey")
    token = document.get("Token")
    return issued(
        key_id,
        secret,
        token if isinstance(token, str) else None,
        parse_expiration(document.get("Expiration"), where),
    )


def issued(
    access_key_id: str, secret_access_key: str, session_token: str | None, expiration: datetime | None
) -> AwsCredentials:
    """Credentials whose secret parts are redacted from every log, span and error from now on."""
    register_secret(secret_access_key)
    if session_token:
        register_secret(session_token)
    return AwsCredentials(access_key_id, secret_access_key, session_token or None, expiration)
