"""JSON-schema output on Claude models without native structured outputs (before the 4.5
generation), emulated the way Anthropic documents JSON output through tools: one tool whose
`input_schema` is the requested schema, forced with `tool_choice`. The decoder turns that tool's
input back into plain text (`MessagesStreamDecoder.output_tool`), so the client reads the JSON
document as it would from a native structured answer, and Finish names `response_format` as
emulated. Unlike native structured outputs, the model is not constrained to the schema, and
Anthropic documents strict tool use (`strict: true`) only for the models that have structured
outputs: `strict` is refused here, never dropped.
"""

from __future__ import annotations

import re
from typing import Any

from provider_gateway.domain import ChatRequest, ResponseFormatType, ToolChoiceMode
from provider_gateway.providers.structured_output import CLAUDE_STRUCTURED, unhonoured

EMULATED_FIELD = "response_format"
DEFAULT_TOOL_NAME = "structured_output"
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def output_tool_name(request: ChatRequest) -> str:
    """The forced tool's name when `request` needs the emulation, else ""."""
    fmt = request.response_format
    if (
        fmt is None
        or fmt.type is not ResponseFormatType.JSON_SCHEMA
        or CLAUDE_STRUCTURED.search(request.model)
    ):
        return ""
    return fmt.schema_name if _TOOL_NAME.match(fmt.schema_name) else DEFAULT_TOOL_NAME


def forced_tool_fields(request: ChatRequest, name: str) -> dict[str, Any]:
    """The `tools` and `tool_choice` body fields that ask for the schema through a forced tool, or
    a refusal of what cannot be combined with it."""
    fmt = request.response_format
    assert fmt is not None
    schema = dict(fmt.json_schema or {})
    model = request.model
    why = "a JSON schema on this model is answered through a forced tool, which"
    if fmt.strict:  # Anthropic documents strict tool use only for the models with structured outputs
        raise unhonoured(
            "response_format.strict", "Anthropic", model, f"{why} steers the model but cannot constrain it"
        )
    if request.tools and not (request.tool_choice and request.tool_choice.mode is ToolChoiceMode.NONE):
        raise unhonoured("tools", "Anthropic", model, f"{why} leaves no room for other tools")
    if request.reasoning is not None and request.reasoning.enabled:
        raise unhonoured("reasoning", "Anthropic", model, f"{why} Claude does not allow with thinking")
    if schema.get("type", "object") != "object":
        raise unhonoured("response_format", "Anthropic", model, f"{why} takes an object schema only")
    description = f"Answer with the {fmt.schema_name or 'requested'} JSON object."
    tool = {"name": name, "description": description, "input_schema": {"type": "object", **schema}}
    # Without disable_parallel_tool_use Claude may call the tool twice: two documents, no valid JSON.
    choice = {"type": "tool", "name": name, "disable_parallel_tool_use": True}
    return {"tools": [tool], "tool_choice": choice}
