"""What a deployment cannot honour is refused before dispatch, never silently dropped.

Three sources say what a deployment can do: the feature table per provider kind
(catalog/features.toml: each ChatRequest feature native, emulated or refused), its provider's
`Capabilities` (vision, tools, reasoning, JSON output, declared as data by each adapter) and, per
model, the catalog (catalog/models.toml: output limit, input modalities, tools, structured output,
reasoning). A request that needs what a deployment lacks skips that deployment (a fallback may have
it); when none of the plan's deployments can honour it, the request fails, naming the field, the
provider and the model: INVALID_ARGUMENT for a value out of the model's range (max_tokens),
FAILED_PRECONDITION for a feature it does not have. Models missing from the catalog pass with the provider's defaults.
"""

from __future__ import annotations

from provider_gateway.catalog import Catalog
from provider_gateway.domain import (
    ChatRequest,
    CompletionRequest,
    ImagePart,
    ResponseFormatType,
    ToolChoiceMode,
    value,
)
from provider_gateway.errors import ErrorKind, GatewayError, shown
from provider_gateway.routing.deployments import Deployment


@value  # built per call: see domain.value
class Refusal:
    kind: ErrorKind
    field: str
    why: str


def unhonoured(
    request: ChatRequest | CompletionRequest, deployment: Deployment, catalog: Catalog | None = None
) -> Refusal | None:
    """The first request field `deployment` cannot honour; None when it can."""
    entry = catalog.entry(deployment.kind, deployment.spec.model) if catalog else None
    limit = entry.max_output if entry else 0
    if limit and request.max_tokens is not None and request.max_tokens > limit:
        return Refusal(ErrorKind.INVALID_ARGUMENT, "max_tokens", f"at most {limit}, got {request.max_tokens}")
    if not isinstance(request, ChatRequest):
        return None
    if catalog is not None and (refusal := _refused_by_kind(request, deployment.kind, catalog)):
        return refusal
    caps = deployment.provider.capabilities()
    takes_images = caps.vision and (entry is None or "image" in entry.input)
    if not takes_images:
        for i, message in enumerate(request.messages):
            for j, part in enumerate(message.content):
                if isinstance(part, ImagePart):
                    return _lacks(f"messages[{i}].content[{j}].image", "it takes no images")
    if request.tools and not (caps.tools and (entry is None or entry.tools)):
        return _lacks("tools", "it has no tool calling")
    fmt = request.response_format
    if fmt is not None and fmt.type is not ResponseFormatType.TEXT:
        if not caps.json_output:
            return _lacks("response_format", "it has no JSON output")
        native = entry is None or entry.structured_output
        emulated = caps.schema_by_forced_tool and entry is not None and entry.tools
        if fmt.type is ResponseFormatType.JSON_SCHEMA and not (native or emulated):
            return _lacks("response_format", "it has no structured output")
    reasons = caps.reasoning and (entry is None or entry.reasoning)
    if request.reasoning is not None and request.reasoning.enabled and not reasons:
        return _lacks("reasoning", "it has no reasoning")
    return None


TOOL_CHOICE_FEATURES = {
    ToolChoiceMode.AUTO: "tool_choice_auto",
    ToolChoiceMode.NONE: "tool_choice_none",
    ToolChoiceMode.REQUIRED: "tool_choice_required",
    ToolChoiceMode.TOOL: "tool_choice_named",
}


def features_used(request: ChatRequest) -> list[tuple[str, str]]:
    """(feature of features.toml, the ChatRequest field that asks for it), for each one asked."""
    used: list[tuple[str, str]] = []
    fmt = request.response_format
    if fmt is not None and fmt.type is ResponseFormatType.JSON_OBJECT:
        used.append(("json_mode", "response_format"))
    if fmt is not None and fmt.type is ResponseFormatType.JSON_SCHEMA:
        used.append(("json_schema", "response_format"))
    if fmt is not None and fmt.type is not ResponseFormatType.TEXT and fmt.strict:
        used.append(("strict", "response_format.strict"))
    if request.tools:
        used.append(("tools", "tools"))
        if request.tool_choice is not None:
            used.append((TOOL_CHOICE_FEATURES[request.tool_choice.mode], "tool_choice"))
    reasoning = request.reasoning
    if reasoning is not None and reasoning.enabled:
        used.append(("reasoning", "reasoning.enabled"))
    if reasoning is not None and reasoning.effort:
        used.append(("reasoning_effort", "reasoning.effort"))
    if reasoning is not None and reasoning.budget_tokens:
        used.append(("reasoning_budget", "reasoning.budget_tokens"))
    if request.stop:
        used.append(("stop", "stop"))
    if request.temperature is not None:
        used.append(("temperature", "temperature"))
    if request.top_p is not None:
        used.append(("top_p", "top_p"))
    if request.logprobs is not None:
        used.append(("logprobs", "logprobs"))
    return used


def _refused_by_kind(request: ChatRequest, kind: str, catalog: Catalog) -> Refusal | None:
    for feature, field in features_used(request):
        cell = catalog.features.cell(kind, feature)
        if cell is not None and cell.status == "refused":
            return _lacks(field, cell.how)
    return None


def _lacks(field: str, why: str) -> Refusal:
    return Refusal(ErrorKind.FAILED_PRECONDITION, field, why)


def honouring(
    request: ChatRequest | CompletionRequest, deployments: list[Deployment], catalog: Catalog | None = None
) -> list[Deployment]:
    """The deployments that can honour `request`, in order; the first one's refusal when none can."""
    if len(deployments) == 1 and unhonoured(request, deployments[0], catalog) is None:
        return deployments  # a plain route that can (most calls): the plan's own list, as it is
    refusals = [(d, unhonoured(request, d, catalog)) for d in deployments]
    usable = [d for d, refusal in refusals if refusal is None]
    if usable or not deployments:
        return usable
    first, refusal = refusals[0]
    assert refusal is not None
    others = f" (nor can the {len(deployments) - 1} other deployment(s))" if len(deployments) > 1 else ""
    raise GatewayError(
        refusal.kind,
        f"{refusal.field}: provider {shown(first.spec.provider)} model {shown(first.spec.model)} "
        f"cannot honour it: {refusal.why}{others}",
        provider=first.spec.provider,
        retryable=False,
    )
