"""Pieces the vendor codecs share for `response_format`: a schema the strict vendors accept, and the
refusal of what a provider or model cannot honour (never a silent drop)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from provider_gateway.errors import ErrorKind, GatewayError, shown

# Claude models with native structured outputs (output_config.format): Opus and Sonnet 4.5 and later,
# Haiku 4.5, on the Claude API, Bedrock and Vertex alike (wire-reference-2 §3). A minor version
# is one or two digits: in `claude-sonnet-4-20250514` (Claude Sonnet 4) the date follows the `4-`.
CLAUDE_STRUCTURED = re.compile(r"claude-(?:opus|sonnet|haiku)-4-(?:[5-9]|[1-9]\d)(?!\d)")


def closed_objects(schema: Mapping[str, Any]) -> dict[str, Any]:
    """`schema` with `additionalProperties: false` on every object schema that does not set it, as
    Anthropic's structured outputs require (its SDK adds the same before sending)."""

    def close(node: Any) -> Any:
        if isinstance(node, Mapping):
            out = {key: close(value) for key, value in node.items()}
            if out.get("type") == "object" and "additionalProperties" not in out:
                out["additionalProperties"] = False
            return out
        if isinstance(node, list):
            return [close(item) for item in node]
        return node

    result: dict[str, Any] = close(schema)
    return result


def unhonoured(field: str, vendor: str, model: str, why: str) -> GatewayError:
    """FAILED_PRECONDITION naming the field, the vendor and the model: the request is well formed,
    but this provider cannot do what it asks."""
    return GatewayError(
        ErrorKind.FAILED_PRECONDITION, f"{field}: {vendor} model {shown(model)} cannot honour it: {why}"
    )
