"""Who an entry belongs to: with [auth], the caller's API key (its digest, never the key); without
it, everyone is one caller. A call with no valid key has no identity and is not cached ([auth]
then refuses it as it would without the cache)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from provider_gateway.server.auth import AmbiguousKey, AuthConfig, presented_key

type Metadata = Sequence[tuple[str, str | bytes]] | None


@dataclass(frozen=True, slots=True)
class Caller:
    name: str  # the configured key's name, for the access log; "" without [auth]
    digest: bytes  # sha256 of the key; b"" without [auth]


EVERYONE = Caller("", b"")
type Identify = Callable[[Metadata], Caller | None]


def anyone(metadata: Metadata) -> Caller | None:
    return EVERYONE


def by_key(config: AuthConfig) -> Identify:
    """The caller as [auth] finds it, from the same metadata and the same configured keys."""

    def identify(metadata: Metadata) -> Caller | None:
        try:
            key = presented_key(metadata)
        except AmbiguousKey:
            return None
        principal = config.find(key) if key else None
        return None if principal is None else Caller(principal.name, principal.digest)

    return identify
