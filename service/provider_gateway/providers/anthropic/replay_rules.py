"""What Claude takes back of earlier turns (Anthropic and Vertex), where a history built
elsewhere (another provider before a fallback, a client rebuilding a turn) breaks the rules:

- tool ids must match `^[a-zA-Z0-9_-]+$`: others are rewritten alike on call and result
  (providers/tool_ids.py);
- an error result may not be empty ("content cannot be empty if is_error is true");
- a thinking block needs the signature Anthropic gave it. Reasoning without one (DeepSeek's
  `reasoning_content`, Ollama's `thinking`, a `<think>` split) is left out: Anthropic's docs let
  earlier turns' thinking be omitted, and an unsigned block is refused in every turn. So is one
  another vendor signed (a Gemini `thoughtSignature`, issuer set: providers/issuers.py), which
  Anthropic refuses as an invalid signature; a signed block with empty text stays (Anthropic's
  `display: "omitted"` thinking must go back in tool-use loops);
- a turn holding thinking must start with it.
"""

from __future__ import annotations

from typing import Any

from provider_gateway.domain import ContentPart, ReasoningPart, ToolCall, ToolResultPart
from provider_gateway.providers.issuers import ANTHROPIC, issued_by
from provider_gateway.providers.tool_ids import word_tool_id
from provider_gateway.providers.vendor_wire import arguments_object

EMPTY_ERROR_RESULT = "(empty)"  # as Bedrock's codec sends an empty result
THINKING_TYPES = ("thinking", "redacted_thinking")


def sendable(part: ContentPart) -> bool:
    """False for reasoning Anthropic cannot verify (no signature, no redacted data, or another
    vendor's)."""
    if not isinstance(part, ReasoningPart):
        return True
    return bool(part.signature) and issued_by(part.issuer, ANTHROPIC)


def tool_use_block(call: ToolCall) -> dict[str, Any]:
    return {
        "type": "tool_use",
        "id": word_tool_id(call.id),
        "name": call.name,
        "input": arguments_object(call),
    }


def tool_result_block(part: ToolResultPart) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": word_tool_id(part.tool_call_id)}
    block["content"] = part.content or (EMPTY_ERROR_RESULT if part.is_error else "")
    if part.is_error:
        block["is_error"] = True
    return block


def thinking_first(blocks: list[dict[str, Any]]) -> None:
    """Moves an assistant turn's thinking blocks ahead of the rest (stable), when it does not
    already start with one: a turn that does keeps its order (interleaved thinking)."""
    if blocks and blocks[0]["type"] not in THINKING_TYPES:
        blocks.sort(key=lambda block: block["type"] not in THINKING_TYPES)
