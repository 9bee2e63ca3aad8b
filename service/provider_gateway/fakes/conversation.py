"""One logical conversation every fake vendor serves in its own wire format.

The cross-provider test asks each provider for it through the gateway and expects the same text,
tool call and normalised usage; the mock provider is scripted with `canonical_events()`.
"""

from __future__ import annotations

import json

from provider_gateway.domain import (
    FinishReason,
    ProviderFinish,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
    UsageEvent,
)

TEXT_CHUNKS = ("The weather", " in Paris", " is mild.")
TOOL_NAME = "get_weather"
TOOL_ARGS = {"city": "Paris", "unit": "celsius"}
TOOL_ARGS_JSON = json.dumps(TOOL_ARGS, separators=(",", ":"))
# Normalised usage: input includes the cached tokens.
INPUT_TOKENS = 1234
CACHE_READ_TOKENS = 1000
OUTPUT_TOKENS = 20
REASONING_CHUNKS = ("Let me", " check the weather.")


def canonical_events(call_id: str = "call_mock_0") -> list[StreamEvent]:
    half = len(TOOL_ARGS_JSON) // 2
    return [
        *(TextDelta(t) for t in TEXT_CHUNKS),
        ToolCallStart(0, call_id, TOOL_NAME),
        ToolCallDelta(0, TOOL_ARGS_JSON[:half]),
        ToolCallDelta(0, TOOL_ARGS_JSON[half:]),
        ToolCallEnd(0, ToolCall(call_id, TOOL_NAME, TOOL_ARGS_JSON)),
        UsageEvent(
            Usage(input_tokens=INPUT_TOKENS, output_tokens=OUTPUT_TOKENS, cache_read_tokens=CACHE_READ_TOKENS)
        ),
        ProviderFinish(FinishReason.TOOL_CALLS, "tool_calls", "mock-canonical"),
    ]
