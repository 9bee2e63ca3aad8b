"""`serve --workers N` without Redis: the rate limits and budgets each worker would count alone.

Each worker is a whole server with its own in-memory meters, as a replica is (docs/scaling.md):
without a `[redis]` url to share them, a key's requests_per_minute or a deployment's rpm is
enforced N times over. Legitimate for a trial, so a warning at start, not a refusal.
"""

from __future__ import annotations

import logging

from provider_gateway.config import GatewayConfig
from provider_gateway.routing.settings import parse_routing
from provider_gateway.routing.shared_state import redis_settings
from provider_gateway.server.auth import AuthConfig
from provider_gateway.server.budgets import Limits

log = logging.getLogger("provider_gateway.workers")
NAMED = 4  # limits named in the warning; the rest are counted


def _limits(limits: Limits) -> bool:
    return bool(limits.requests_per_minute or limits.tokens_per_minute or limits.budgets)


def unshared_limits(config: GatewayConfig) -> list[str]:
    """Where the configuration sets rate limits or budgets, when no `[redis]` url shares them
    (an empty `url_env` counts as none, as for the server); empty otherwise."""
    if redis_settings(config.section("redis"))["url"]:
        return []
    found: list[str] = []
    auth = AuthConfig.from_config(config)
    if auth is not None:
        found += [f"key {k.name!r}" for k in auth.keys if _limits(k.limits)]
        found += [f"team {name!r}" for name, limits in auth.teams if _limits(limits)]
    for group in parse_routing(config).groups.values():
        found += [f"deployment {d.key(group.name)!r} (rpm)" for d in group.deployments if d.rpm]
    return found


def warn_of_unshared_limits(config: GatewayConfig, workers: int) -> None:
    """One warning, from the supervising process, when `workers` would each enforce their own copy."""
    found = unshared_limits(config)
    if not found:
        return
    named = ", ".join(found[:NAMED]) + (f" and {len(found) - NAMED} more" if len(found) > NAMED else "")
    log.warning(
        "--workers %d without a [redis] url: each worker enforces its own copy of the rate limits "
        "and budgets of %s, so clients may spend up to %d times each limit; configure [redis] "
        "to share them (docs/scaling.md)",
        workers,
        named,
        workers,
    )
