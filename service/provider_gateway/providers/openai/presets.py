"""OpenAI-compatible hosts as data: base URL, key variable, wire and quirk switches.

A preset is configuration, not code: every host here is served by the same adapter, and by the
family's Chat Completions wire (`codec.ChatWire`) or, where a host's API differs in kind, by its
own wire built on that base (`wire = "mistral"`: `mistral.MistralWire`). Each switch names a
documented difference (see ../shared/docs/provider-behaviour.md).
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
    wire: str = "openai"  # "openai", or "mistral" (content chunks, 9-character tool ids...)
    codestral_base_url: str = ""  # Mistral: codestral-* models are served from their own host
    auth: str = "bearer"  # "bearer" (Authorization) or "api-key" (Azure)
    embeddings: bool = False
    vision: bool = True
    responses: bool = False  # offers the Responses API (`api = "responses"`)
    # How reasoning is asked for: "effort" (`reasoning_effort`, default medium), "openai" (only
    # reasoning models reason, and take only an effort), "model" (the model reasons or not: DeepSeek)
    reasoning: str = "effort"
    max_tokens: int = 16_384
    requests_window_s: float = 60.0  # the window of its x-ratelimit-*-requests budget
    # Gemini 3 signs its tool calls (`extra_content.google.thought_signature`) and answers 400 to a
    # later turn whose call lacks the signature; other hosts are not sent the field.
    thought_signatures: bool = False
    # Gemini counts its thoughts in `total_tokens` (and bills them as output) but not in
    # `completion_tokens`, with no `reasoning_tokens`: what the total has beyond prompt and
    # completion is reasoning output.
    thoughts_in_total: bool = False
    # OpenRouter relays reasoning state as `reasoning_details` entries and wants them back on later
    # turns (reasoning_details.py); other hosts are not sent the field.
    reasoning_details: bool = False


PRESETS: dict[str, Preset] = {
    "openai": Preset(
        "https://api.openai.com/v1",
        "OPENAI_API_KEY",
        embeddings=True,
        think_tags=False,
        responses=True,
        reasoning="openai",
    ),
    # Groq's x-ratelimit-*-requests count requests per day (its -tokens, per minute).
    "groq": Preset("https://api.groq.com/openai/v1", "GROQ_API_KEY", requests_window_s=86_400.0),
    "deepseek": Preset(
        "https://api.deepseek.com",
        "DEEPSEEK_API_KEY",
        deepseek_messages=True,
        vision=False,
        reasoning="model",
    ),
    "xai": Preset("https://api.x.ai/v1", "XAI_API_KEY", stream_usage=False),
    "openrouter": Preset("https://openrouter.ai/api/v1", "OPENROUTER_API_KEY", reasoning_details=True),
    "together": Preset("https://api.together.xyz/v1", "TOGETHER_API_KEY", embeddings=True),
    "fireworks": Preset("https://api.fireworks.ai/inference/v1", "FIREWORKS_API_KEY", embeddings=True),
    "vllm": Preset("http://localhost:8000/v1", "VLLM_API_KEY", requires_key=False, embeddings=True),
    "lmstudio": Preset("http://localhost:1234/v1", "LMSTUDIO_API_KEY", requires_key=False),
    # Google's OpenAI-compatible endpoint for Gemini (the `gemini` kind speaks Gemini's own API).
    "gemini-openai": Preset(
        "https://generativelanguage.googleapis.com/v1beta/openai",
        "GEMINI_API_KEY",
        think_tags=False,
        thought_signatures=True,
        thoughts_in_total=True,
    ),
    "mistral": Preset(
        "https://api.mistral.ai/v1",
        "MISTRAL_API_KEY",
        stream_usage=False,  # Mistral sends usage in its last chunk unasked and rejects unknown fields
        wire="mistral",
        codestral_base_url="https://codestral.mistral.ai/v1",
        embeddings=True,
    ),
    # Azure's base URL is the resource endpoint; the adapter adds /openai/deployments/{d}.
    "azure": Preset(
        "",
        "AZURE_OPENAI_API_KEY",
        auth="api-key",
        embeddings=True,
        think_tags=False,
        responses=True,
        reasoning="openai",
    ),
}
