"""A user turn that holds tool results and text or images beside them ("here are the results, now
answer in French": Anthropic-style histories put both in one turn). Cohere's messages hold either
tool results or user content, so the text goes in a user message after the `tool` ones; before,
it was dropped without a word."""

from __future__ import annotations

from provider_gateway.domain import (
    ChatRequest,
    ImagePart,
    Message,
    Role,
    TextPart,
    Tool,
    ToolCall,
    ToolCallPart,
    ToolResultPart,
)
from provider_gateway.providers.cohere.codec import build_chat_body


def messages(turn: Message) -> list[dict[str, object]]:
    request = ChatRequest(
        model="command-a-03-2025",
        messages=[
            Message(Role.USER, (TextPart("Weather in Rome and Paris?"),)),
            Message(Role.ASSISTANT, (
                ToolCallPart(ToolCall("call_1", "get", '{"city":"Rome"}')),
                ToolCallPart(ToolCall("call_2", "get", '{"city":"Paris"}')),
            )),
            turn,
        ],
        tools=[Tool("get", "", {"type": "object"})],
    )  # fmt: skip
    return build_chat_body(request)["messages"][2:]


def test_text_beside_tool_results_follows_them_as_a_user_message() -> None:
    turn = Message(
        Role.USER,
        (
            ToolResultPart("call_1", "sunny"),
            ToolResultPart("call_2", "rain"),
            TextPart("Now answer in French."),
        ),
    )
    assert messages(turn) == [
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": "rain"},
        {"role": "user", "content": "Now answer in French."},
    ]
    alone = Message(Role.TOOL, (ToolResultPart("call_1", "sunny"), TextPart("")))
    assert [m["role"] for m in messages(alone)] == ["tool"]  # no empty user message


def test_an_image_beside_a_tool_result_is_sent_too() -> None:
    image = ImagePart(url="https://example.com/map.png", media_type="image/png")
    turn = Message(Role.USER, (ToolResultPart("call_1", "sunny"), TextPart("And this map?"), image))
    assert messages(turn)[1:] == [
        {"role": "user", "content": [
            {"type": "text", "text": "And this map?"},
            {"type": "image_url", "image_url": {"url": "https://example.com/map.png"}},
        ]},
    ]  # fmt: skip
