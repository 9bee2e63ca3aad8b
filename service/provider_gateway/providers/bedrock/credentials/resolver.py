"""The credential chain with a cache: the first source that is set up wins and is refreshed in time.

Refresh follows botocore's windows: from 15 minutes before expiry (advisory) one caller refreshes
while the others keep signing with the current credentials; from 10 minutes before (mandatory)
every caller waits for the refresh. Concurrent callers share one refresh (single flight). A refresh
that fails while the current credentials are still valid logs a warning and keeps them, and is
not tried again for RETRY_QUIET; credentials that arrive already inside the advisory window get
the same pause, so a source that only hands out short-lived ones is not asked on every request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.providers.bedrock.credentials.model import (
    AwsCredentials,
    CredentialSource,
    NotSetUp,
    credentials_error,
)

ADVISORY_REFRESH = timedelta(minutes=15)
MANDATORY_REFRESH = timedelta(minutes=10)
RETRY_QUIET = timedelta(seconds=10)
NONE_FOUND = (
    "none found. Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, name a profile of the shared files "
    "(`profile` or AWS_PROFILE), or run with a role (web identity, container or instance)"
)
log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


class CredentialResolver:
    """One per Bedrock provider: `await get()` before signing; `aclose()` when the provider stops."""

    def __init__(self, chain: Sequence[CredentialSource], *, clock: Callable[[], datetime] = _now) -> None:
        self.chain = tuple(chain)
        self._clock = clock
        self._current: AwsCredentials | None = None
        self._source: CredentialSource | None = None
        self._refresh: asyncio.Task[AwsCredentials] | None = None
        self._quiet_until: datetime | None = None

    @property
    def source(self) -> str:
        """The name of the source in use ("" before the first success), for health messages and logs."""
        return self._source.name if self._source is not None else ""

    async def get(self) -> AwsCredentials:
        current, now = self._current, self._clock()
        if current is not None:
            if current.expiration is None or current.expiration - now > ADVISORY_REFRESH:
                return current
            left = current.expiration - now
            if left > timedelta(0):
                if left > MANDATORY_REFRESH and self._refresh is not None:
                    return current  # advisory: another caller is refreshing
                if self._quiet_until is not None and now < self._quiet_until:
                    return current
        if self._refresh is None:
            self._refresh = asyncio.create_task(self._renew())
            self._refresh.add_done_callback(self._refresh_done)
        try:
            # Shielded: a caller that gives up does not cancel the refresh the others wait for.
            return await asyncio.shield(self._refresh)
        except GatewayError as error:
            # A copy per caller: callers annotate errors in place, and many may share this one.
            raise GatewayError(
                error.kind, error.message, retryable=error.retryable, detail=error.detail
            ) from None

    def _refresh_done(self, task: asyncio.Task[AwsCredentials]) -> None:
        if self._refresh is task:
            self._refresh = None
        if not task.cancelled():
            task.exception()  # retrieved here: a refresh nobody awaits any more must not warn

    async def _renew(self) -> AwsCredentials:
        try:
            fresh = await self._load()
        except GatewayError as error:
            current, now = self._current, self._clock()
            if current is None or current.expiration is None or current.expiration <= now:
                raise
            self._quiet_until = now + RETRY_QUIET
            log.warning(
                "refreshing AWS credentials from %s failed; using the current ones, valid until %s: %s",
                self.source, current.expiration.isoformat(), error.message,
            )  # fmt: skip
            return current
        now = self._clock()
        soon = fresh.expiration is not None and fresh.expiration - now <= ADVISORY_REFRESH
        self._quiet_until = now + RETRY_QUIET if soon else None
        self._current = fresh
        return fresh

    async def _load(self) -> AwsCredentials:
        if self._source is not None:
            fresh = await self._source.load()
            if fresh is None:
                raise credentials_error(
                    ErrorKind.UNAUTHENTICATED, f"{self._source.name} no longer provides credentials"
                )
            return fresh
        notes = []
        for source in self.chain:
            try:
                found = await source.load()
            except NotSetUp as note:
                notes.append(str(note))
                continue
            if found is not None:
                self._source = source
                log.info("AWS credentials from %s (access key id %s)", source.name, found.access_key_id)
                return found
        tried = ", ".join(source.name for source in self.chain)
        seen = f" ({'; '.join(notes)})" if notes else ""
        raise credentials_error(ErrorKind.UNAUTHENTICATED, f"{NONE_FOUND}. Tried: {tried}{seen}")

    async def aclose(self) -> None:
        task, self._refresh = self._refresh, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, GatewayError):
                await task
