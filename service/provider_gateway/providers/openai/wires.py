"""Which Chat Completions wire serves a preset: the family base or a host's own subclass."""

from __future__ import annotations

from provider_gateway.providers.openai.codec import ChatWire
from provider_gateway.providers.openai.mistral import MistralWire
from provider_gateway.providers.openai.presets import Preset

WIRES: dict[str, type[ChatWire]] = {"openai": ChatWire, "mistral": MistralWire}


def wire_for(preset: Preset) -> ChatWire:
    return WIRES[preset.wire](preset)
