"""Vendor JSON of the wrong shape is the upstream's failure, not the gateway's.

Codecs read vendor bodies the way the vendor documents them (`data.get("delta").get(...)`). When
an upstream, or a proxy in front of it, sends valid JSON of another shape (a number where an object
belongs, a string as a token count), Python raises AttributeError, TypeError or ValueError deep in
a codec; without this guard the client would see INTERNAL and the router would not fail over.
`@shape_checked` on every function that reads upstream JSON turns those into one retryable
UNAVAILABLE GatewayError, the only exception the codecs document.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any

from provider_gateway.errors import ErrorKind, GatewayError

# What reading a wrongly shaped JSON value raises: attribute/item access on the wrong type,
# int()/float() of a string or of NaN/inf, indexing an empty list.
SHAPE_ERRORS = (AttributeError, TypeError, ValueError, KeyError, IndexError, OverflowError)

log = logging.getLogger(__name__)


def shape_checked[**P, R](read: Callable[P, R]) -> Callable[P, R]:
    """Wraps a codec function or decoder method; the provider name comes from `provider=` or
    from the decoder's `provider` attribute."""

    what = read.__qualname__

    @functools.wraps(read)
    def checked(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return read(*args, **kwargs)
        except SHAPE_ERRORS as exc:
            provider = str(kwargs.get("provider") or _owner_provider(args))
            # The traceback tells a vendor's odd JSON from a bug of ours in the same code path.
            log.warning(
                "%s: unexpected upstream JSON shape in %s", provider or "upstream", what, exc_info=True
            )
            raise GatewayError(
                ErrorKind.UNAVAILABLE,
                f"{provider or 'the upstream'} answered with JSON of an unexpected shape "
                f"({what}: {type(exc).__name__}); the provider or a proxy in front of it is misbehaving",
                provider=provider,
                retryable=True,
            ) from exc

    return checked


def _owner_provider(args: tuple[object, ...]) -> str:
    owner = args[0] if args else None
    if owner is None or isinstance(owner, Mapping | list | str | bytes):
        return ""
    return str(getattr(owner, "provider", "") or "")


@shape_checked
def count_at(body: Any, key: str, *, provider: str = "") -> int:
    """The integer a count endpoint answers at `body[key]` (0 when absent)."""
    return int(body.get(key) or 0)
