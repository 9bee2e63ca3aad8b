"""Vertex AI envelopes around the Gemini and Anthropic codecs: URLs and the Claude body. Pure.

Gemini on Vertex takes the same `generateContent` body as AI Studio; Claude on Vertex takes the
Messages body without `model` (it is in the URL) and with `anthropic_version: vertex-2023-10-16`;
the text embedding models answer `:predict` with `instances`/`predictions`. Unary calls go to
`generateContent` and `rawPredict`, which answer what the direct APIs' unary calls answer.
"""

from __future__ import annotations

from typing import Any

from provider_gateway.domain import ChatRequest
from provider_gateway.providers.anthropic import codec as anthropic
from provider_gateway.providers.shapes import shape_checked
from provider_gateway.providers.structured_output import unhonoured

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


def claude_body(
    request: ChatRequest, options: anthropic.AnthropicOptions, *, stream: bool = True
) -> dict[str, Any]:
    if request.logprobs is not None:
        raise unhonoured("logprobs", "Vertex AI", request.model, "Claude gives no logprobs")
    body = anthropic.build_messages_body(request, options, stream=stream)
    del body["model"]
    return {"anthropic_version": anthropic.VERTEX_VERSION, **body}


# gemini-embedding-* on Vertex takes one input per :predict call; the text-embedding models up to 250.
SINGLE_INPUT_EMBEDDING_PREFIX = "gemini-embedding"


def embed_bodies(model: str, texts: list[str], dimensions: int) -> list[dict[str, Any]]:
    """`:predict` bodies for the text embedding models: `instances` of `{content}`,
    `parameters.outputDimensionality` when the request asks for fewer dimensions, and
    `autoTruncate: false`: Vertex cuts an over-long input by default (saying so only in
    `statistics.truncated`); it is refused instead, never embedded in part."""
    parameters: dict[str, Any] = {"autoTruncate": False}
    if dimensions:
        parameters["outputDimensionality"] = dimensions
    batches = [[t] for t in texts] if model.startswith(SINGLE_INPUT_EMBEDDING_PREFIX) else [texts]
    return [{"instances": [{"content": t} for t in batch], "parameters": parameters} for batch in batches]


@shape_checked
def parse_predictions(answer: Any, *, provider: str = "") -> tuple[list[list[float]], int]:
    """`predictions[].embeddings.values`, and the input tokens from `statistics.token_count`."""
    vectors: list[list[float]] = []
    tokens = 0
    for prediction in answer.get("predictions") or []:
        embeddings = prediction["embeddings"]
        vectors.append([float(x) for x in embeddings["values"]])
        tokens += int((embeddings.get("statistics") or {}).get("token_count") or 0)
    return vectors, tokens
