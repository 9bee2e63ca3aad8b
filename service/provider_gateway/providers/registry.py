"""Which adapter serves each `kind` of provider, and building them from configuration.

Adapters are imported lazily, by dotted path, so a server pays memory only for the kinds its
configuration uses. Each adapter module exposes `from_config(name, options, context) -> Provider`;
the `ProviderContext` carries the server's shared resources (the upstream HTTP pool).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterator
from typing import cast

from provider_gateway.config import ConfigError, GatewayConfig, MissingSecret, ProviderConfig, Section
from provider_gateway.providers.base import Provider
from provider_gateway.providers.context import ProviderContext
from provider_gateway.providers.unconfigured import UnconfiguredProvider

log = logging.getLogger("provider_gateway.providers")

ProviderFactory = Callable[[str, Section, ProviderContext], Provider]

# kind -> "module:attribute" of a factory. Add a line here to add an adapter.
ADAPTERS: dict[str, str] = {
    "mock": "provider_gateway.providers.mock:MockProvider.from_config",
    # The OpenAI family: one adapter, the kind selects a preset (providers/openai/presets.py).
    "openai": "provider_gateway.providers.openai.adapter:from_config",
    "groq": "provider_gateway.providers.openai.adapter:from_config",
    "deepseek": "provider_gateway.providers.openai.adapter:from_config",
    "xai": "provider_gateway.providers.openai.adapter:from_config",
    "openrouter": "provider_gateway.providers.openai.adapter:from_config",
    "together": "provider_gateway.providers.openai.adapter:from_config",
    "fireworks": "provider_gateway.providers.openai.adapter:from_config",
    "vllm": "provider_gateway.providers.openai.adapter:from_config",
    "lmstudio": "provider_gateway.providers.openai.adapter:from_config",
    "gemini-openai": "provider_gateway.providers.openai.adapter:from_config",
    "mistral": "provider_gateway.providers.openai.adapter:from_config",
    "azure": "provider_gateway.providers.openai.adapter:from_config",
    "ollama": "provider_gateway.providers.ollama.adapter:from_config",
    "anthropic": "provider_gateway.providers.anthropic.adapter:from_config",
    "gemini": "provider_gateway.providers.gemini.adapter:from_config",
    "vertex": "provider_gateway.providers.vertex.adapter:from_config",
    "cohere": "provider_gateway.providers.cohere.adapter:from_config",
    "bedrock": "provider_gateway.providers.bedrock.adapter:from_config",
}


def load_factory(kind: str) -> ProviderFactory:
    module_name, _, attribute = ADAPTERS[kind].partition(":")
    target: object = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    return cast(ProviderFactory, target)


def build_provider(config: ProviderConfig, context: ProviderContext) -> Provider:
    if config.kind not in ADAPTERS:
        raise ConfigError(
            config.options.source,
            config.options.key("kind"),
            f"unknown provider kind {config.kind!r} (known: {', '.join(sorted(ADAPTERS))})",
        )
    try:
        return load_factory(config.kind)(config.name, config.options, context)
    except MissingSecret as exc:
        log.error("provider %r is not usable until its secret is set: %s", config.name, exc)
        return UnconfiguredProvider(config.name, config.kind, str(exc))


class ProviderRegistry:
    """The configured providers by name, in configuration order."""

    def __init__(self, providers: list[Provider], default: str) -> None:
        self._providers = {p.name: p for p in providers}
        self.default = default

    @classmethod
    def from_config(cls, config: GatewayConfig, context: ProviderContext | None = None) -> ProviderRegistry:
        context = context or ProviderContext()
        return cls([build_provider(p, context) for p in config.providers], config.server.default_provider)

    def get(self, name: str) -> Provider | None:
        return self._providers.get(name)

    def names(self) -> list[str]:
        return list(self._providers)

    def __iter__(self) -> Iterator[Provider]:
        return iter(self._providers.values())

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()
