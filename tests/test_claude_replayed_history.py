"""A history built elsewhere (another provider before a fallback, a client rebuilding a turn from
a unary answer) sent to Claude on Anthropic and on Bedrock Converse: the body must keep the rules
those APIs answer 400 / ValidationException for (tool id pattern, signed thinking first, non-empty
error results, `toolResult.status` only where documented)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from provider_gateway.domain import (
    ChatRequest,
    Message,
    ReasoningPart,
    Role,
    TextPart,
    Tool,
    ToolCall,
    ToolCallPart,
    ToolResultPart,
)
from provider_gateway.providers.anthropic.codec import AnthropicOptions, build_messages_body
from provider_gateway.providers.bedrock.codec import converse_request

# Anthropic's and Bedrock's pattern for tool_use ids (Bedrock documents 1 to 64 characters).
TOOL_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
BEDROCK_CLAUDE = "anthropic.claude-3-7-sonnet-20250219-v1:0"
FOREIGN_IDS = ["functions.get:0", "call.1", "", "x" * 65, "café", "a b"]


def conversation(*calls: tuple[str, ReasoningPart | None]) -> ChatRequest:
    """One assistant turn per call (with its reasoning first, if any), each answered."""
    messages = [Message(Role.USER, (TextPart("Weather in Rome?"),))]
    for call_id, reasoning in calls:
        parts = ((reasoning,) if reasoning else ()) + (
            ToolCallPart(ToolCall(call_id, "get", '{"city":"Rome"}')),
        )
        messages += [Message(Role.ASSISTANT, parts), Message(Role.TOOL, (ToolResultPart(call_id, "sunny"),))]
    return ChatRequest(
        model="claude-sonnet-4-5", messages=messages, tools=[Tool("get", "", {"type": "object"})]
    )


def anthropic_blocks(request: ChatRequest) -> list[dict[str, Any]]:
    body = build_messages_body(request, AnthropicOptions(prompt_caching=False))
    return [block for message in body["messages"] for block in message["content"]]


def bedrock_blocks(request: ChatRequest, model_id: str = BEDROCK_CLAUDE) -> list[dict[str, Any]]:
    body = converse_request(request, model_id)
    return [block for message in body["messages"] for block in message["content"]]


def anthropic_ids(request: ChatRequest) -> list[tuple[str, str]]:
    blocks = anthropic_blocks(request)
    uses = [b["id"] for b in blocks if b["type"] == "tool_use"]
    results = [b["tool_use_id"] for b in blocks if b["type"] == "tool_result"]
    return list(zip(uses, results, strict=True))


def bedrock_ids(request: ChatRequest) -> list[tuple[str, str]]:
    blocks = bedrock_blocks(request)
    uses = [b["toolUse"]["toolUseId"] for b in blocks if "toolUse" in b]
    results = [b["toolResult"]["toolUseId"] for b in blocks if "toolResult" in b]
    return list(zip(uses, results, strict=True))


@pytest.mark.parametrize("ids_sent", [anthropic_ids, bedrock_ids], ids=["anthropic", "bedrock"])
def test_foreign_tool_ids_match_the_pattern_on_call_and_result(ids_sent: Any) -> None:
    """Kimi K2 names calls `functions.get:0`; Anthropic and Bedrock refuse such ids. They are
    rewritten, the same on a call and its result, and distinct ids stay distinct."""
    sent = ids_sent(conversation(*((call_id, None) for call_id in FOREIGN_IDS)))
    assert all(TOOL_ID.fullmatch(use) and use == result for use, result in sent), sent
    assert len({use for use, _ in sent}) == len(FOREIGN_IDS)


@pytest.mark.parametrize("ids_sent", [anthropic_ids, bedrock_ids], ids=["anthropic", "bedrock"])
def test_valid_tool_ids_are_sent_as_they_are(ids_sent: Any) -> None:
    valid = ["toolu_01A09q90qw90lq917835lq9", "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "call-1"]
    assert ids_sent(conversation(*((call_id, None) for call_id in valid))) == [(i, i) for i in valid]


def test_anthropic_leaves_out_reasoning_without_a_signature() -> None:
    """Reasoning from a host that signs nothing (DeepSeek's reasoning_content, Ollama's thinking)
    as a thinking block is a 400 ("Invalid signature"); signed and redacted thinking still go back."""
    request = conversation(
        ("toolu_1", ReasoningPart("I should call get.")),
        ("toolu_2", ReasoningPart("Now Paris.", signature="EqQBsig")),
        ("toolu_3", ReasoningPart("", signature="EmwKAhgB", redacted=True)),
    )
    thinking = [b for b in anthropic_blocks(request) if b["type"] in ("thinking", "redacted_thinking")]
    assert thinking == [
        {"type": "thinking", "thinking": "Now Paris.", "signature": "EqQBsig"},
        {"type": "redacted_thinking", "data": "EmwKAhgB"},
    ]


def test_bedrock_claude_leaves_out_reasoning_without_a_signature() -> None:
    request = conversation(
        ("tooluse_1", ReasoningPart("I should call get.")),
        ("tooluse_2", ReasoningPart("Now Paris.", signature="EqQBsig")),
    )
    reasoning = [b["reasoningContent"] for b in bedrock_blocks(request) if "reasoningContent" in b]
    assert reasoning == [{"reasoningText": {"text": "Now Paris.", "signature": "EqQBsig"}}]


def test_anthropic_error_result_is_never_empty() -> None:
    """A failed tool with no output: "content cannot be empty if is_error is true"."""
    request = conversation(("toolu_1", None))
    request.messages[2] = Message(Role.TOOL, (ToolResultPart("toolu_1", "", is_error=True),))
    result = next(b for b in anthropic_blocks(request) if b["type"] == "tool_result")
    assert result["content"]
    assert result["is_error"] is True


def test_anthropic_thinking_goes_first_in_the_assistant_turn() -> None:
    """A client rebuilding a turn from a unary answer (text, reasoning and tool calls are separate
    fields) may put the text first; Claude wants a turn holding thinking to start with it."""
    request = conversation(("toolu_1", None))
    request.messages[1] = Message(
        Role.ASSISTANT,
        (
            TextPart("Let me check."),
            ReasoningPart("I should call get.", signature="EqQBsig"),
            ToolCallPart(ToolCall("toolu_1", "get", '{"city":"Rome"}')),
        ),
    )
    body = build_messages_body(request, AnthropicOptions(prompt_caching=False))
    assistant = next(m for m in body["messages"] if m["role"] == "assistant")
    assert [b["type"] for b in assistant["content"]] == ["thinking", "text", "tool_use"]


def test_anthropic_thinking_first_across_merged_assistant_messages() -> None:
    """Two assistant messages in a row become one turn: its thinking still leads."""
    request = conversation(("toolu_1", ReasoningPart("I should call get.", signature="EqQBsig")))
    request.messages.insert(1, Message(Role.ASSISTANT, (TextPart("Let me check."),)))
    body = build_messages_body(request, AnthropicOptions(prompt_caching=False))
    assistant = next(m for m in body["messages"] if m["role"] == "assistant")
    assert [b["type"] for b in assistant["content"]] == ["thinking", "text", "tool_use"]


STATUS_MODELS = {
    "anthropic.claude-3-7-sonnet-20250219-v1:0": True,
    "us.anthropic.claude-sonnet-4-20250514-v1:0": True,
    "us.amazon.nova-pro-v1:0": True,
    "us.writer.palmyra-x4-v1:0": False,
    "meta.llama3-1-70b-instruct-v1:0": False,
    "mistral.mistral-large-2407-v1:0": False,
}


@pytest.mark.parametrize(("model_id", "takes_status"), STATUS_MODELS.items())
def test_bedrock_tool_result_status_only_where_the_model_takes_it(model_id: str, takes_status: bool) -> None:
    """`toolResult.status` is documented for Claude and Nova only; others answer
    ValidationException "This model doesn't support the toolResult.status field"."""
    request = conversation(("tooluse_1", None), ("tooluse_2", None))
    request.messages[4] = Message(Role.TOOL, (ToolResultPart("tooluse_2", "no such city", is_error=True),))
    results = [b["toolResult"] for b in bedrock_blocks(request, model_id) if "toolResult" in b]
    expected = ["success", "error"] if takes_status else [None, None]
    assert [r.get("status") for r in results] == expected
