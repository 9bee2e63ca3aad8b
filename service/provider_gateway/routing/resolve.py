"""Turning the `model` / `provider` fields of a request into concrete provider routes."""

from __future__ import annotations

from collections.abc import Mapping

from provider_gateway.domain import Route
from provider_gateway.errors import invalid_argument, not_found


class RouteResolver:
    """Resolves, in order: an explicit provider, a configured alias, a `provider/` prefix, the default.

    A prefix that is not a configured provider stays part of the model id, because some vendors'
    model ids contain slashes (OpenRouter's `anthropic/claude-sonnet-4`).
    """

    def __init__(self, providers: list[str], default: str, aliases: Mapping[str, str]) -> None:
        self._names = list(providers)
        self._providers = frozenset(providers)
        self._default = default
        self._aliases = {alias: self._split(target) for alias, target in aliases.items()}

    def _split(self, target: str) -> Route:
        provider, _, model = target.partition("/")
        return Route(provider, model)

    def listed_providers(self) -> list[str]:
        """The providers errors and listings may name to the caller: all of them here; the
        caller's own behind [auth] (server/auth.py)."""
        return self._names

    def check_provider(self, provider: str) -> str:
        if provider not in self._providers:
            available = ", ".join(self.listed_providers()) or "none"
            raise not_found(f"provider {provider!r} is not configured (available: {available})")
        return provider

    def resolve(self, model: str, provider: str = "") -> Route:
        if not model:
            raise invalid_argument("model is required, e.g. 'mock/echo'; ListModels shows what is available")
        if provider:
            prefix, _, rest = model.partition("/")
            return Route(self.check_provider(provider), rest if prefix == provider and rest else model)
        alias = self._aliases.get(model)
        if alias is not None:
            return alias
        prefix, _, rest = model.partition("/")
        if rest and prefix in self._providers:
            return Route(prefix, rest)
        return Route(self.check_provider(self._default), model)

    def candidates(self, model: str, provider: str, fallbacks: list[str]) -> list[Route]:
        """The primary route, then each fallback (which names its own provider or alias)."""
        routes = [self.resolve(model, provider)]
        for fallback in fallbacks:
            route = self.resolve(fallback)
            if route not in routes:
                routes.append(route)
        return routes

    def aliases_for(self, provider: str, model: str) -> list[str]:
        return [alias for alias, route in self._aliases.items() if route == Route(provider, model)]
