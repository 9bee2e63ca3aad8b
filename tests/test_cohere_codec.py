"""The Cohere v2 codec alone: request bodies and its own stream events."""

from __future__ import annotations

import pytest

from provider_gateway.domain import (
    ChatRequest,
    EmbedRequest,
    FinishReason,
    ImagePart,
    Message,
    ProviderFinish,
    ReasoningDelta,
    Role,
    TextDelta,
    TextPart,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallPart,
    ToolCallStart,
    ToolChoice,
    ToolChoiceMode,
    ToolResultPart,
    UsageEvent,
)
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.providers.base import fold
from provider_gateway.providers.cohere import codec

TOOLS = [Tool("a", "A", {"type": "object"}), Tool("b", "B", {"type": "object"})]


def test_body_messages_tools_and_images() -> None:
    messages = [
        Message(Role.SYSTEM, (TextPart("sys"),)),
        Message(Role.USER, (TextPart("look"), ImagePart(data=b"abc", media_type="image/png"))),
        Message(Role.ASSISTANT, (TextPart("I will call a"), ToolCallPart(ToolCall("c1", "a", '{"x":1}')))),
        Message(Role.TOOL, (ToolResultPart("c1", "done"),)),
    ]
    body = codec.build_chat_body(ChatRequest("command-a", messages, tools=TOOLS, top_p=0.5, stop=["X"]))
    assert body["messages"] == [
        {"role": "system", "content": "sys"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,YWJj"}},
            ],
        },
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "a", "arguments": '{"x":1}'}}
            ],
            "tool_plan": "I will call a",
        },
        {"role": "tool", "tool_call_id": "c1", "content": "done"},
    ]
    assert body["tools"][0] == {
        "type": "function",
        "function": {"name": "a", "description": "A", "parameters": {"type": "object"}},
    }
    assert (body["p"], body["stop_sequences"], body["stream"]) == (0.5, ["X"], True)
    assert "tool_choice" not in body


@pytest.mark.parametrize(
    ("choice", "names", "wire"),
    [
        (ToolChoice(ToolChoiceMode.REQUIRED), ["a", "b"], "REQUIRED"),
        (ToolChoice(ToolChoiceMode.TOOL, "b"), ["b"], "REQUIRED"),
    ],
)
def test_tool_choice(choice: ToolChoice, names: list[str], wire: str) -> None:
    body = codec.build_chat_body(
        ChatRequest("m", [Message(Role.USER, (TextPart("x"),))], tools=TOOLS, tool_choice=choice)
    )
    assert [t["function"]["name"] for t in body["tools"]] == names
    assert body["tool_choice"] == wire
    none = codec.build_chat_body(
        ChatRequest(
            "m",
            [Message(Role.USER, (TextPart("x"),))],
            tools=TOOLS,
            tool_choice=ToolChoice(ToolChoiceMode.NONE),
        )
    )
    assert "tools" not in none


def test_stream_events() -> None:
    decoder = codec.ChatStreamDecoder()
    raw = [
        {"type": "message-start", "id": "m1", "delta": {"message": {"role": "assistant"}}},
        {"type": "tool-plan-delta", "delta": {"message": {"tool_plan": "plan"}}},
        {
            "type": "content-start",
            "index": 0,
            "delta": {"message": {"content": {"type": "text", "text": ""}}},
        },
        {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "Hi"}}}},
        {"type": "content-end", "index": 0},
        {
            "type": "tool-call-start",
            "index": 0,
            "delta": {
                "message": {
                    "tool_calls": {"id": "c9", "type": "function", "function": {"name": "a", "arguments": ""}}
                }
            },
        },
        {
            "type": "tool-call-delta",
            "index": 0,
            "delta": {"message": {"tool_calls": {"function": {"arguments": '{"x":'}}}},
        },
        {
            "type": "tool-call-delta",
            "index": 0,
            "delta": {"message": {"tool_calls": {"function": {"arguments": "1}"}}}},
        },
        {"type": "tool-call-end", "index": 0},
        {
            "type": "message-end",
            "delta": {
                "finish_reason": "TOOL_CALL",
                "usage": {
                    "billed_units": {"input_tokens": 5, "output_tokens": 3},
                    "tokens": {"input_tokens": 50, "output_tokens": 3},
                    "cached_tokens": 40,
                },
            },
        },
    ]
    events = [e for data in raw for e in decoder.feed(data)]
    assert events[:5] == [
        ReasoningDelta("plan"),
        TextDelta("Hi"),
        ToolCallStart(0, "c9", "a"),
        ToolCallDelta(0, '{"x":'),
        ToolCallDelta(0, "1}"),
    ]
    assert events[5] == ToolCallEnd(0, ToolCall("c9", "a", '{"x":1}'))
    usage = events[6]
    assert isinstance(usage, UsageEvent)
    assert (usage.usage.input_tokens, usage.usage.output_tokens, usage.usage.cache_read_tokens) == (50, 3, 40)
    assert events[7] == ProviderFinish(FinishReason.TOOL_CALLS, "TOOL_CALL", "", "m1")


def test_message_end_with_error_raises() -> None:
    with pytest.raises(GatewayError, match="boom"):
        codec.ChatStreamDecoder().feed(
            {"type": "message-end", "delta": {"finish_reason": "ERROR", "error": "boom"}}
        )


def test_embed_body() -> None:
    body = codec.build_embed_body(EmbedRequest("embed-v4.0", ["a"], dimensions=256))
    assert body == {
        "model": "embed-v4.0",
        "texts": ["a"],
        "input_type": "search_document",
        "embedding_types": ["float"],
        "truncate": "NONE",  # an over-long input refused, never embedded in part
        "output_dimension": 256,
    }
    vectors, usage = codec.parse_embeddings(
        {"embeddings": {"float": [[0.5, 1]]}, "meta": {"billed_units": {"input_tokens": 2}}}
    )
    assert (vectors, usage.input_tokens) == ([[0.5, 1.0]], 2)


def test_provider_options_merge_into_the_body() -> None:
    body = codec.build_chat_body(
        ChatRequest("m", [Message(Role.USER, (TextPart("x"),))], provider_options={"safety_mode": "OFF"})
    )
    assert body["safety_mode"] == "OFF"


def test_a_unary_answer_reads_as_its_stream_folds() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
    usage = {"tokens": {"input_tokens": 10, "output_tokens": 4}, "cached_tokens": 6}
    stream = [
        {"type": "message-start", "id": "r1"},
        {"type": "content-delta", "delta": {"message": {"content": {"thinking": "Think. "}}}},
        {"type": "tool-plan-delta", "delta": {"message": {"tool_plan": "Plan."}}},
        {"type": "tool-call-start", "index": 0, "delta": {"message": {"tool_calls": call}}},
        {"type": "tool-call-end", "index": 0},
        {"type": "message-end", "delta": {"finish_reason": "TOOL_CALL", "usage": usage}},
    ]
    decoder = codec.ChatStreamDecoder(provider="c", model="command-a")
    streamed = fold([e for data in stream for e in decoder.feed(data)])
    message = {"role": "assistant", "content": [{"type": "thinking", "thinking": "Think. "}]}
    body = {"id": "r1", "finish_reason": "TOOL_CALL", "usage": usage,
            "message": {**message, "tool_plan": "Plan.", "tool_calls": [call]}}  # fmt: skip
    unary = codec.ChatStreamDecoder(provider="c", model="command-a").response(body)
    assert unary == streamed
    assert (unary.reasoning, unary.usage.cache_read_tokens, unary.finish.model) == (  # type: ignore[union-attr]
        "Think. Plan.",
        6,
        "command-a",
    )


def test_a_unary_answer_cut_by_max_tokens_leaves_its_last_call_incomplete() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
    body = {"id": "r1", "finish_reason": "MAX_TOKENS", "message": {"tool_calls": [call]}}
    (got,) = codec.ChatStreamDecoder(provider="c").response(body).tool_calls
    assert (got.arguments_json, got.incomplete) == ('{"a":1}', True)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"id": "r1", "finish_reason": "ERROR", "message": {}}, "generation error"),
        ({"message": "internal server error"}, "internal server error"),
        ([1], "without a finish_reason"),
    ],
)
def test_errors_in_a_200_unary_body_are_unavailable(body: object, words: str) -> None:
    with pytest.raises(GatewayError) as info:
        codec.ChatStreamDecoder(provider="c").response(body)
    assert info.value.kind is ErrorKind.UNAVAILABLE
    assert words in info.value.message
