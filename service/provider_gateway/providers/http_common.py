"""Small pieces every HTTP adapter shares (the Anthropic, Gemini and Cohere adapters too)."""

from __future__ import annotations

import asyncio

from provider_gateway.domain import ChatRequest, CompletionRequest, HealthStatus, Message, Role, TextPart
from provider_gateway.errors import GatewayError
from provider_gateway.http import Upstream

HEALTH_TIMEOUT_S = 5.0


def completion_as_chat(request: CompletionRequest) -> ChatRequest:
    """`complete` on a chat-only API: the prompt as one user message, the same sampling settings."""
    return ChatRequest(
        model=request.model,
        messages=[Message(Role.USER, (TextPart(request.prompt),))],
        temperature=request.temperature,
        top_p=request.top_p,
        max_tokens=request.max_tokens,
        stop=list(request.stop),
        provider_options=dict(request.provider_options),
    )


async def probe(upstream: Upstream, path: str) -> HealthStatus:
    """Healthy when a cheap GET answers within a few seconds (start-up must not hang on it)."""
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_S):
            await upstream.request_json("GET", path)
    except (GatewayError, TimeoutError) as error:
        return HealthStatus(healthy=False, message=str(error) or "health check timed out")
    return HealthStatus(healthy=True)
