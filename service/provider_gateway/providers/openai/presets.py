"""OpenAI-compatible hosts as data: base URL, key variable and quirk switches.

A preset is configuration, not code: every host here is served by the same codec and adapter.
Each switch names a documented difference (see ../shared/docs/provider-behaviour.md).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True, frozen=True)
class Preset:
    base_url: str
    key_env: str
    requires_key: bool = True
    stream_usage: bool = True  # accepts stream_options.include_usage (x.ai in that lineage did not)
    think_tags: bool = True  # a leading <think>...</think> is reasoning
    deepseek_messages: bool = False  # reasoner: system as first user message, same roles merged
    short_tool_ids: bool = False  # Mistral: tool-call ids are exactly 9 alphanumeric characters
    codestral_base_url: str = ""  # Mistral: codestral-* models are served from their own host
    auth: str = "bearer"  # "bearer" (Authorization) or "api-key" (Azure)
    embeddings: bool = False
    vision: bool = True
    max_tokens: int = 16_384


PRESETS: dict[str, Preset] = {
    "openai": Preset("https://api.openai.com/v1", "OPENAI_API_KEY", embeddings=True, think_tags=False),
    "groq": Preset("https://api.groq.com/openai/v1", "GROQ_API_KEY"),
    "deepseek": Preset("https://api.deepseek.com", "DEEPSEEK_API_KEY", deepseek_messages=True, vision=False),
    "xai": Preset("https://api.x.ai/v1", "XAI_API_KEY", stream_usage=False),
    "openrouter": Preset("https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
    "together": Preset("https://api.together.xyz/v1", "TOGETHER_API_KEY", embeddings=True),
    "fireworks": Preset("https://api.fireworks.ai/inference/v1", "FIREWORKS_API_KEY", embeddings=True),
    "vllm": Preset("http://localhost:8000/v1", "VLLM_API_KEY", requires_key=False, embeddings=True),
    "lmstudio": Preset("http://localhost:1234/v1", "LMSTUDIO_API_KEY", requires_key=False),
    "mistral": Preset(
        "https://api.mistral.ai/v1",
        "MISTRAL_API_KEY",
        stream_usage=False,  # Mistral sends usage in its last chunk unasked and rejects unknown fields
        short_tool_ids=True,
        codestral_base_url="https://codestral.mistral.ai/v1",
        embeddings=True,
    ),
    # Azure's base URL is the resource endpoint; the adapter adds /openai/deployments/{d}.
    "azure": Preset("", "AZURE_OPENAI_API_KEY", auth="api-key", embeddings=True, think_tags=False),
}
