"""`provider_options` may add what a vendor offers, never set what the gateway owns.

The gateway validates, bounds and charges quota by the request's own fields (model, messages, the
token limit, n, sampling, tools, response format, user and metadata); a provider option with the
same meaning would bypass all of that (`max_tokens: 999999999` when the request said 10, `n: 64`).
Each wire declares the body fields it owns, as data next to its codec; docs/provider-options.md
lists them. Keys are compared without case and underscores, since several vendors accept both
`max_output_tokens` and `maxOutputTokens`; `table.key` names a key one table deep, where a vendor
nests sampling (`generationConfig.temperature`, Ollama's `options.num_predict`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from provider_gateway.errors import invalid_argument, shown


def _canonical(name: str) -> str:
    return name.replace("_", "").replace("-", "").lower()


def owned(*names: str) -> frozenset[str]:
    """The canonical form of a wire's owned field names, for `refuse_owned`."""
    return frozenset(".".join(_canonical(part) for part in name.split(".")) for name in names)


def _clashes(options: Mapping[str, Any], fields: frozenset[str]) -> Iterable[str]:
    for key, value in options.items():
        top = _canonical(key)
        if top in fields:
            yield key
        elif isinstance(value, Mapping):
            yield from (f"{key}.{sub}" for sub in value if f"{top}.{_canonical(sub)}" in fields)


def refuse_owned(options: Mapping[str, Any], fields: frozenset[str]) -> Mapping[str, Any]:
    """`options`, unchanged, when none of its keys is one the gateway owns; else INVALID_ARGUMENT."""
    clashes = list(_clashes(options, fields))
    if clashes:
        names = ", ".join(shown(name) for name in clashes[:5])
        raise invalid_argument(
            f"provider_options {names}: the gateway sets this from the request's own fields (model, "
            "messages, max_tokens, temperature, top_p, stop, tools, tool_choice, response_format, "
            "reasoning, logprobs, metadata), which it validates and charges quota by; use those fields instead"
        )
    return options
