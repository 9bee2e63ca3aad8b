"""What a key may see when the gateway lists things: providers and models within its allow-lists.

A key's `providers` and `models` (`provider/model` glob patterns) bound what it may call
(auth.Principal.check_route); listings (ListModels, ListProviders, Health.List, the providers an
error names) show it no more than that, so a key learns nothing of the rest of the configuration.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Protocol

from provider_gateway.errors import GatewayError, not_found


class Scoped(Protocol):
    """The allow-lists of a key (auth.Principal): empty means no restriction."""

    @property
    def providers(self) -> tuple[str, ...]: ...

    @property
    def models(self) -> tuple[str, ...]: ...


def may_use_model(key: Scoped, provider: str, model: str) -> bool:
    """Whether `key` may call `provider/model` (the same test as auth.Principal.check_route)."""
    if key.providers and provider not in key.providers:
        return False
    target = f"{provider}/{model}"
    return not key.models or any(fnmatch.fnmatchcase(target, pattern) for pattern in key.models)


def no_such_provider(provider: str, available: Sequence[str]) -> GatewayError:
    """NOT_FOUND for a provider a key named: the same words whether it is not configured or the key
    may not use it, so that no key can tell which providers exist beyond its own (`available`)."""
    return not_found(f"no provider {provider!r} for this key (available: {', '.join(available) or 'none'})")


def no_such_model(name: str) -> GatewayError:
    """NOT_FOUND for a model, alias or group a key named whose deployments include a provider it may
    not use: the error names what the key asked for, never the member's provider it may not know."""
    return not_found(f"no model {name!r} for this key")


def may_use_provider(key: Scoped, provider: str) -> bool:
    """Whether `key` may call at least one model of `provider`: it is among the key's providers,
    and some `models` pattern can match a `provider/...` name."""
    if key.providers and provider not in key.providers:
        return False
    return not key.models or any(_may_start_with(pattern, f"{provider}/") for pattern in key.models)


def _may_start_with(pattern: str, prefix: str) -> bool:
    """Whether some name that starts with `prefix` matches the glob `pattern` (fnmatch syntax:
    `*`, `?`, `[...]`). Walks `prefix` through the pattern's tokens as an NFA; any token left
    can still be matched by what follows the prefix, so the walk succeeds while a state lives."""
    tokens = _tokens(pattern)
    states = _past_stars(tokens, {0})
    for char in prefix:
        moved = set()
        for i in states:
            if i == len(tokens):
                continue
            if tokens[i] == "*":
                moved.add(i)
            elif fnmatch.fnmatchcase(char, tokens[i]):
                moved.add(i + 1)
        states = _past_stars(tokens, moved)
        if not states:
            return False
    return True


def _past_stars(tokens: list[str], states: set[int]) -> set[int]:
    """`states`, and the states after any `*` there (a star may match nothing)."""
    reached = set(states)
    for i in sorted(states):
        while i < len(tokens) and tokens[i] == "*":
            i += 1
            reached.add(i)
    return reached


def _tokens(pattern: str) -> list[str]:
    """The pattern as single-character globs (`?`, a `[...]` set, one literal) and `*`s. A `[`
    without its `]` is a literal, as fnmatch reads it."""
    tokens: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "[":
            end = i + 1
            if end < len(pattern) and pattern[end] == "!":
                end += 1
            if end < len(pattern) and pattern[end] == "]":  # a leading ] belongs to the set
                end += 1
            end = pattern.find("]", end)
            if end != -1:
                tokens.append(pattern[i : end + 1])
                i = end + 1
                continue
            tokens.append("[[]")  # fnmatch's own reading of an unclosed bracket: the character
        else:
            tokens.append(char)
        i += 1
    return tokens
