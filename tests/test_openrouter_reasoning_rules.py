"""Which reasoning parts go back to OpenRouter as `reasoning_details`, and in what form: OpenRouter's
own and those of unknown issuer (older clients, reasoning that carries no state), never a signature
another vendor issued (after a fallback Claude or Gemini behind OpenRouter would refuse the
request); `format` from the vendor of the model asked for. Only the `openrouter` preset sends the
field, and OpenRouter's reasoning ids are not taken for OpenAI Responses items after a fallback."""

from __future__ import annotations

from typing import Any

import pytest

from provider_gateway.domain import (
    ChatRequest,
    Message,
    ReasoningPart,
    Role,
    TextPart,
    ToolCall,
    ToolCallPart,
    ToolResultPart,
)
from provider_gateway.providers.openai.presets import PRESETS
from provider_gateway.providers.openai.responses import input_items
from provider_gateway.providers.openai.wires import wire_for

CALL = ToolCall("call_1", "get_weather", '{"city":"Paris"}')


def assistant_turn(model: str, *reasoning: ReasoningPart, preset: str = "openrouter") -> dict[str, Any]:
    """The assistant message of a tool-use history as the preset's host is sent it."""
    messages = [
        Message(Role.USER, (TextPart("Weather in Paris?"),)),
        Message(Role.ASSISTANT, (*reasoning, ToolCallPart(CALL))),
        Message(Role.TOOL, (ToolResultPart(CALL.id, "18C"),)),
    ]
    body = wire_for(PRESETS[preset]).chat_body(ChatRequest(model=model, messages=messages), stream=False)
    return body["messages"][1]  # type: ignore[no-any-return]


def test_another_vendors_signature_is_left_out_and_the_rest_keep_their_order() -> None:
    turn = assistant_turn(
        "anthropic/claude-opus-4.1",
        ReasoningPart("Direct from Anthropic.", "sig-anthropic", issuer="anthropic"),
        ReasoningPart("Relayed.", "sig-relayed", issuer="openrouter"),
        ReasoningPart("", "EmwKredacted", redacted=True, issuer="openrouter"),
        ReasoningPart("", "CiQBgemini", issuer="gemini"),
    )
    assert turn["reasoning_details"] == [
        {"type": "reasoning.text", "text": "Relayed.", "signature": "sig-relayed",
         "format": "anthropic-claude-v1", "index": 0},
        {"type": "reasoning.encrypted", "data": "EmwKredacted", "format": "anthropic-claude-v1", "index": 1},
    ]  # fmt: skip


def test_reasoning_without_state_or_issuer_goes_as_text_of_an_unknown_format() -> None:
    """Kimi or DeepSeek behind OpenRouter: plain reasoning text, which thinking models want back."""
    turn = assistant_turn("moonshotai/kimi-k2-thinking", ReasoningPart("I should call the tool."))
    assert turn["reasoning_details"] == [
        {"type": "reasoning.text", "text": "I should call the tool.", "format": "unknown", "index": 0}
    ]


@pytest.mark.parametrize(
    ("model", "fmt"),
    [
        ("~anthropic/claude-sonnet-latest", "anthropic-claude-v1"),
        ("google/gemini-2.5-pro", "google-gemini-v1"),
        ("x-ai/grok-4", "xai-responses-v1"),
        ("deepseek/deepseek-r1", "unknown"),
    ],
)
def test_the_format_is_the_vendor_of_the_model_asked_for(model: str, fmt: str) -> None:
    turn = assistant_turn(model, ReasoningPart("", "opaque", redacted=True, id="r1", issuer="openrouter"))
    assert turn["reasoning_details"] == [
        {"type": "reasoning.encrypted", "data": "opaque", "id": "r1", "format": fmt, "index": 0}
    ]


@pytest.mark.parametrize("preset", sorted(set(PRESETS) - {"openrouter"}))
def test_no_other_preset_is_sent_the_field(preset: str) -> None:
    turn = assistant_turn("some-model", ReasoningPart("Relayed.", "sig", issuer=""), preset=preset)
    assert "reasoning_details" not in turn


def test_openrouter_reasoning_ids_are_not_sent_to_the_responses_api() -> None:
    """An OpenAI item through OpenRouter (`rs_...`) was encrypted for OpenRouter's key, not the
    caller's: after a fallback to `api = "responses"` only OpenAI's own items go back."""
    turn = Message(
        Role.ASSISTANT,
        (
            ReasoningPart("Relayed.", "gAAAA-relayed", id="rs_relayed", issuer="openrouter"),
            ReasoningPart("Own.", "gAAAA-own", id="rs_own", issuer="openai"),
            TextPart("Done."),
        ),
    )
    items = input_items([turn], reasoning_model=True)
    assert [item.get("id") for item in items if item["type"] == "reasoning"] == ["rs_own"]


def test_unsigned_reasoning_is_not_sent_to_claude() -> None:
    """Claude refuses thinking without its signature, as the Anthropic replay leaves it out: another
    host's reasoning after a fallback, or a block cut before its signature."""
    turn = assistant_turn(
        "anthropic/claude-sonnet-4.5",
        ReasoningPart("Another host's thinking."),
        ReasoningPart("Signed.", signature="sig", issuer="openrouter"),
    )
    assert turn["reasoning_details"] == [
        {
            "type": "reasoning.text",
            "text": "Signed.",
            "signature": "sig",
            "format": "anthropic-claude-v1",
            "index": 0,
        }
    ]
    assert "reasoning_details" not in assistant_turn(
        "anthropic/claude-sonnet-4.5", ReasoningPart("Unsigned.")
    )


def test_a_signature_tied_to_a_long_tool_call_id_follows_the_id_the_host_is_sent() -> None:
    """Gemini's thought signature names its call; an id over 40 characters is shortened on the
    call and its result, and so on the signature's entry too."""
    long_id = "tool_search_customer_order_history_Zk3mQ9xP"
    call = ToolCall(long_id, "search_customer_order_history", '{"q":"x"}')
    messages = [
        Message(Role.USER, (TextPart("Find it"),)),
        Message(
            Role.ASSISTANT,
            (
                ReasoningPart("Looking.", signature="CiQB", redacted=True, id=long_id, issuer="openrouter"),
                ToolCallPart(call),
            ),
        ),
        Message(Role.TOOL, (ToolResultPart(long_id, "none"),)),
    ]
    request = ChatRequest(model="google/gemini-3-pro-preview", messages=messages)
    turn = wire_for(PRESETS["openrouter"]).chat_body(request, stream=False)["messages"][1]
    sent_id = turn["tool_calls"][0]["id"]
    assert sent_id != long_id  # shortened
    assert [d["id"] for d in turn["reasoning_details"] if d["type"] == "reasoning.encrypted"] == [sent_id]
