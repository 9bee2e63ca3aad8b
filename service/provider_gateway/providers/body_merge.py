"""Merging a request's `provider_options` into an upstream body (pure; the proto's documented rule:
"provider-specific request fields, merged into the upstream request body as given").

Tables merge one level deep, so `{"generationConfig": {"topK": 5}}` adds to the generated
`generationConfig` instead of replacing it; any other value replaces the generated one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def merge_provider_options(body: dict[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in options.items():
        current = body.get(key)
        if isinstance(current, dict) and isinstance(value, Mapping):
            body[key] = {**current, **value}
        else:
            body[key] = value
    return body
