"""ListModels over several providers: asked at once, each within a bound, a failure skipped.

One slow or broken provider must not hold or sink the listing of the others: a provider that
fails or does not answer in time is left out and logged (the proto has no field to say so), and
only when every provider failed does the listing fail, with their status.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from provider_gateway.domain import ModelInfo
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.http import deadline
from provider_gateway.providers.base import Provider

log = logging.getLogger("provider_gateway.router")

# Most a provider's listing may take when several are listed (docs/grpcurl.md, "Models, providers").
# Vendors' model lists answer in well under a second; one that takes this long is skipped.
PROVIDER_LISTING_TIMEOUT_S = 5.0
# Of the caller's remaining deadline, the share the providers get: the listing of those that
# answered must still reach the caller before its deadline.
DEADLINE_SHARE = 0.8


def listing_timeout() -> float:
    """Each provider's bound for this call: the fixed bound, or less within a shorter deadline."""
    left = deadline.remaining()
    return (
        PROVIDER_LISTING_TIMEOUT_S if left is None else min(PROVIDER_LISTING_TIMEOUT_S, left * DEADLINE_SHARE)
    )


async def list_each(providers: Sequence[Provider]) -> list[tuple[Provider, list[ModelInfo]]]:
    """Each provider's models, those that failed left out; raises when every one failed."""
    timeout_s = listing_timeout()
    results = await asyncio.gather(*(_listing(p, timeout_s) for p in providers))
    answered = [(p, r) for p, r in zip(providers, results, strict=True) if isinstance(r, list)]
    failed = [(p, r) for p, r in zip(providers, results, strict=True) if isinstance(r, Exception)]
    for provider, error in failed:
        if isinstance(error, GatewayError):
            detail = f" ({error.detail})" if error.detail else ""  # the upstream's URL: operators only
            log.warning("ListModels left out %s: %s %s%s", provider.name, error.kind.value, error, detail)
        else:
            log.error("ListModels left out %s", provider.name, exc_info=error)
    if failed and not answered:
        raise _every_one_failed([e for _, e in failed])
    return answered


async def _listing(provider: Provider, timeout_s: float) -> list[ModelInfo] | Exception:
    try:
        async with asyncio.timeout(timeout_s):
            return await provider.list_models()
    except TimeoutError:
        return GatewayError(
            ErrorKind.UNAVAILABLE,
            f"did not list its models within {timeout_s:.3g} s; "
            "ListModels with this provider named waits for it up to your deadline",
            provider=provider.name,
        )
    except Exception as exc:  # left out and logged by the caller; never cancels the others
        return exc


def _every_one_failed(errors: list[Exception]) -> Exception:
    """One error for a listing no provider answered: their common status (UNAVAILABLE when they
    differ), each provider's message, and the shortest retry delay any asked for."""
    known = [e for e in errors if isinstance(e, GatewayError)]
    if not known:
        return errors[0]  # the servicer's INTERNAL with an incident id; each is in the log
    kinds = {e.kind for e in known}
    kind = kinds.pop() if len(kinds) == 1 else ErrorKind.UNAVAILABLE
    delays = [e.retry_after for e in known if e.retry_after is not None]
    reasons = "; ".join(str(e) for e in known)
    unknown = len(errors) - len(known)
    if unknown:
        reasons += f"; {unknown} more failed with an internal error (see the gateway log)"
    return GatewayError(
        kind,
        f"no provider could list its models ({reasons}); name one provider to see its error alone",
        retry_after=min(delays) if delays else None,
    )
