"""What a deployment's provider cannot honour is refused before dispatch, never silently dropped.

Providers declare their capabilities as data (`Capabilities`: vision, tools, reasoning, JSON
output). A request that needs one a deployment lacks skips that deployment (a fallback may have
it); when none of the plan's deployments can honour it, the request fails FAILED_PRECONDITION
naming the field, the provider and the model.
"""

from __future__ import annotations

from provider_gateway.domain import (
    ChatRequest,
    CompletionRequest,
    ImagePart,
    ResponseFormatType,
)
from provider_gateway.errors import ErrorKind, GatewayError, shown
from provider_gateway.routing.deployments import Deployment


def unhonoured(request: ChatRequest | CompletionRequest, deployment: Deployment) -> str:
    """The first request field `deployment` cannot honour, as "field: why"; "" when it can."""
    if not isinstance(request, ChatRequest):
        return ""
    caps = deployment.provider.capabilities()
    if not caps.vision:
        for i, message in enumerate(request.messages):
            for j, part in enumerate(message.content):
                if isinstance(part, ImagePart):
                    return f"messages[{i}].content[{j}].image: it takes no images"
    if request.tools and not caps.tools:
        return "tools: it has no tool calling"
    fmt = request.response_format
    if fmt is not None and fmt.type is not ResponseFormatType.TEXT and not caps.json_output:
        return "response_format: it has no JSON output"
    if request.reasoning is not None and request.reasoning.enabled and not caps.reasoning:
        return "reasoning: it has no reasoning"
    return ""


def honouring(request: ChatRequest | CompletionRequest, deployments: list[Deployment]) -> list[Deployment]:
    """The deployments that can honour `request`, in order; FAILED_PRECONDITION when none can."""
    reasons = [(d, unhonoured(request, d)) for d in deployments]
    usable = [d for d, reason in reasons if not reason]
    if usable or not deployments:
        return usable
    first, reason = reasons[0]
    field, why = reason.split(": ", 1)
    raise GatewayError(
        ErrorKind.FAILED_PRECONDITION,
        f"{field}: provider {shown(first.spec.provider)} model {shown(first.spec.model)} cannot honour it: "
        f"{why}"
        + (f" (nor can the {len(deployments) - 1} other deployment(s))" if len(deployments) > 1 else ""),
        provider=first.spec.provider,
        retryable=False,
    )
