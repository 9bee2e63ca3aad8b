"""AWS credentials for the Bedrock adapter: a minimal stand-in for the full chain.

Environment keys (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN) need no SDK. Anything
else (a `profile`, the shared files, roles) is delegated, lazily, to aiobotocore's chain, so a gateway
with environment credentials never imports botocore. Bedrock API keys come from
AWS_BEARER_TOKEN_BEDROCK. The full chain (container, IMDS, IRSA...) replaces this module.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from provider_gateway.config import Section
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.http.pool import UpstreamPool

NO_CREDENTIALS = (
    "no usable AWS credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE "
    "(or the provider's `profile`), AWS_BEARER_TOKEN_BEDROCK, or run with an instance or task role"
)


@dataclass(frozen=True, slots=True)
class AwsCredentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None
    expiration: datetime | None = None


class CredentialResolver:
    """Resolves credentials once per need; the SDK chain refreshes its own before they expire."""

    def __init__(self, static: AwsCredentials | None, profile: str = "") -> None:
        self._static = static
        self._profile = profile
        self._sdk_credentials: Any = None
        self._lock = asyncio.Lock()

    async def get(self) -> AwsCredentials:
        if self._static is not None:
            return self._static
        async with self._lock:
            if self._sdk_credentials is None:
                self._sdk_credentials = await self._from_sdk_chain()
        frozen = await self._sdk_credentials.get_frozen_credentials()
        return AwsCredentials(frozen.access_key, frozen.secret_key, frozen.token or None)

    async def _from_sdk_chain(self) -> Any:
        from aiobotocore.session import AioSession  # only for what the environment does not hold

        try:
            found = await AioSession(profile=self._profile or None).get_credentials()
        except Exception as exc:  # a broken profile: the chain's message names it
            raise GatewayError(ErrorKind.UNAUTHENTICATED, f"{NO_CREDENTIALS} ({exc})") from None
        if found is None:
            raise GatewayError(ErrorKind.UNAUTHENTICATED, NO_CREDENTIALS)
        return found

    async def aclose(self) -> None:
        self._sdk_credentials = None


def resolver_from_config(section: Section, env: Mapping[str, str], http: UpstreamPool) -> CredentialResolver:
    del http  # the full chain fetches container, IMDS and STS credentials through it
    profile = section.string("profile")
    key, secret = env.get("AWS_ACCESS_KEY_ID", ""), env.get("AWS_SECRET_ACCESS_KEY", "")
    static = None
    if key and secret and not profile:  # as botocore: a named profile outranks the environment
        static = AwsCredentials(key, secret, env.get("AWS_SESSION_TOKEN") or None)
    return CredentialResolver(static, profile)


def bearer_token(section: Section, env: Mapping[str, str]) -> str | None:
    del section
    return env.get("AWS_BEARER_TOKEN_BEDROCK") or None
