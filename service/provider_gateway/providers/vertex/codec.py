"""Vertex AI envelopes around the Gemini and Anthropic codecs: URLs and the Claude body. Pure.

Gemini on Vertex takes the same `generateContent` body as AI Studio; Claude on Vertex takes the
Messages body without `model` (it is in the URL) and with `anthropic_version: vertex-2023-10-16`.
"""

from __future__ import annotations

from typing import Any

from provider_gateway.domain import ChatRequest
from provider_gateway.providers.anthropic import codec as anthropic

CLAUDE_PREFIX = "claude"


def default_base_url(location: str) -> str:
    """Regional endpoints are `{location}-aiplatform`; the `global` location has no prefix."""
    if location == "global":
        return "https://aiplatform.googleapis.com"
    return f"https://{location}-aiplatform.googleapis.com"


def is_claude(model: str) -> bool:
    return model.startswith(CLAUDE_PREFIX)


def model_url(base_url: str, project: str, location: str, model: str, action: str) -> str:
    publisher = "anthropic" if is_claude(model) else "google"
    return (
        f"{base_url.rstrip('/')}/v1/projects/{project}/locations/{location}"
        f"/publishers/{publisher}/models/{model}:{action}"
    )


def claude_body(request: ChatRequest, options: anthropic.AnthropicOptions) -> dict[str, Any]:
    body = anthropic.build_messages_body(request, options)
    del body["model"]
    return {"anthropic_version": anthropic.VERTEX_VERSION, **body}
