"""What only botocore resolves: assume-role chains, SSO and `credential_process` profiles.

aiobotocore (about 20 MB of imports) is loaded here, off the loop, and only when the chosen
profile uses one of these; every other source is resolved without it. botocore then refreshes
those credentials itself: each `load` asks it for its current ones.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.http.errors import redact
from provider_gateway.providers.bedrock.credentials.model import AwsCredentials, credentials_error, issued
from provider_gateway.providers.bedrock.credentials.shared_files import SharedFiles


def _botocore_credentials_session(profile: str | None, region: str) -> Any:
    """Blocking (imports and reads botocore's data): run off the loop."""
    from aiobotocore.session import AioSession

    session = AioSession(profile=profile)
    if region:  # the provider's region, for the STS and SSO clients botocore creates
        session.set_config_variable("region", region)
    return session


class BotocoreProfileSource:
    """Stands at the chain's place for `feature` ("assume-role", "SSO" or "credential_process")."""

    def __init__(self, files: SharedFiles, feature: str, region: str) -> None:
        self.files = files
        self.feature = feature
        self.region = region
        self.name = f"the profile's {feature} (through botocore)"
        self._credentials: Any = None

    async def load(self) -> AwsCredentials | None:
        profile = await self.files.profile()
        if profile.botocore_feature() != self.feature:
            return None
        try:
            if self._credentials is None:
                session = await asyncio.to_thread(
                    _botocore_credentials_session, profile.name if profile.explicit else None, self.region
                )
                self._credentials = await session.get_credentials()
                if self._credentials is None:
                    raise credentials_error(
                        ErrorKind.UNAUTHENTICATED,
                        f"botocore found no credentials for profile {profile.name!r}",
                    )
            frozen = await self._credentials.get_frozen_credentials()
        except GatewayError:
            raise
        except Exception as error:  # botocore's own errors, which this module must not import eagerly
            raise credentials_error(
                ErrorKind.UNAUTHENTICATED,
                f"profile {profile.name!r} ({self.feature}) failed in botocore: {redact(str(error))[:300]}",
                detail=type(error).__name__,
            ) from None
        expiry = getattr(self._credentials, "_expiry_time", None)
        expiration = expiry.astimezone(UTC) if isinstance(expiry, datetime) else None
        return issued(frozen.access_key, frozen.secret_key, frozen.token, expiration)
