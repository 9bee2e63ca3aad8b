"""What the Converse codec and the InvokeModel family codecs share: tolerant JSON readers,
finish reasons, normalised usage and the request fields the gateway owns.

Readers never raise: an absent or mistyped field reads as empty, so a malformed upstream never
escapes as a KeyError or TypeError; the codecs decide which absences make a payload unreadable.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from provider_gateway.domain import FinishReason, Usage
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.providers.owned_options import owned

# Fields the gateway owns (owned_options.py), as Converse parameters and as the model fields that
# additionalModelRequestFields or an InvokeModel body would carry for any model family.
OWNED_FIELDS = owned(
    "modelId", "messages", "system", "inferenceConfig", "toolConfig", "prompt", "message",
    "chat_history", "max_tokens", "max_tokens_to_sample", "max_gen_len", "maxTokenCount",
    "max_completion_tokens", "textGenerationConfig", "n", "num_generations", "temperature",
    "top_p", "p", "stop", "stop_sequences", "tools", "tool_choice", "response_format", "thinking",
    "reasoning_config", "stream",
)  # fmt: skip

# Every family's stop values, lower-cased (Titan and Cohere send upper case).
STOP_REASONS = {
    "end_turn": FinishReason.STOP,
    "stop_sequence": FinishReason.STOP,
    "stop": FinishReason.STOP,
    "finish": FinishReason.STOP,
    "complete": FinishReason.STOP,
    "stop_criteria_met": FinishReason.STOP,
    "max_tokens": FinishReason.LENGTH,
    "length": FinishReason.LENGTH,
    "model_context_window_exceeded": FinishReason.LENGTH,
    "error_limit": FinishReason.LENGTH,  # Cohere: the context limit was reached
    "tool_use": FinishReason.TOOL_CALLS,
    "tool_call": FinishReason.TOOL_CALLS,
    "tool_calls": FinishReason.TOOL_CALLS,
    "guardrail_intervened": FinishReason.CONTENT_FILTER,
    "content_filtered": FinishReason.CONTENT_FILTER,
    "content_filter": FinishReason.CONTENT_FILTER,
    "error_toxic": FinishReason.CONTENT_FILTER,
    # Claude through InvokeModel (Anthropic's own stop reasons): its safety classifiers declined,
    # CONTENT_FILTER as the Anthropic adapter says
    "refusal": FinishReason.CONTENT_FILTER,
}
INVOCATION_METRICS = "amazon-bedrock-invocationMetrics"


def finish_reason(raw: str) -> FinishReason:
    return STOP_REASONS.get(raw.lower(), FinishReason.OTHER) if raw else FinishReason.UNSPECIFIED


def malformed(what: str) -> GatewayError:
    return GatewayError(ErrorKind.UNAVAILABLE, f"malformed {what} from Bedrock")


def obj(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def count(value: Any) -> int:
    """A token count: a non-negative int that fits the API's int64, else 0."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63:
        return value
    return 0


def floats(value: Any) -> list[float]:
    numbers = [v for v in items(value) if isinstance(v, int | float) and not isinstance(v, bool)]
    return [float(v) for v in numbers if not isinstance(v, int) or abs(v) < 2**1000]


def decode_json_object(data: bytes | str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise malformed(what) from None
    if not isinstance(value, dict):
        raise malformed(what)
    return value


def usage(
    input_tokens: int, output_tokens: int, cache_read: int, cache_write: int, raw: Mapping[str, Any]
) -> Usage:
    """Normalised usage: Bedrock reports input without cache; the gateway's input includes it."""
    return Usage(
        input_tokens=input_tokens + cache_read + cache_write,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        raw=dict(raw),
    )
