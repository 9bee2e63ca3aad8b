"""Credentials from environment variables, as every AWS SDK reads them."""

from __future__ import annotations

from collections.abc import Mapping

from provider_gateway.errors import ErrorKind
from provider_gateway.providers.bedrock.credentials.model import (
    AwsCredentials,
    credentials_error,
    issued,
    parse_expiration,
)


class EnvironmentSource:
    """AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY [+ AWS_SESSION_TOKEN or the older AWS_SECURITY_TOKEN]
    [+ AWS_CREDENTIAL_EXPIRATION]. Read again at each refresh, as botocore does."""

    name = "environment variables"

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    async def load(self) -> AwsCredentials | None:
        key_id = self.env.get("AWS_ACCESS_KEY_ID", "")
        secret = self.env.get("AWS_SECRET_ACCESS_KEY", "")
        if not key_id and not secret:
            return None
        if not key_id or not secret:
            present, missing = (
                ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
                if key_id
                else ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID")
            )
            raise credentials_error(
                ErrorKind.UNAUTHENTICATED, f"{present} is set but {missing} is not; set both, or neither"
            )
        token = self.env.get("AWS_SESSION_TOKEN") or self.env.get("AWS_SECURITY_TOKEN") or None
        expiration = parse_expiration(self.env.get("AWS_CREDENTIAL_EXPIRATION"), "AWS_CREDENTIAL_EXPIRATION")
        return issued(key_id, secret, token, expiration)


class StaticSource:
    """Credentials named in the provider's table (through `*_env` / `*_file`): fixed for the server's life."""

    name = "the provider's access_key_id/secret_access_key settings"

    def __init__(self, credentials: AwsCredentials) -> None:
        self.credentials = credentials

    async def load(self) -> AwsCredentials | None:
        return self.credentials
