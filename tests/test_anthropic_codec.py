"""The Anthropic codec alone: request bodies and stream decoding, no network."""

from __future__ import annotations

import pytest

from provider_gateway.domain import (
    ChatRequest,
    CompletionRequest,
    FinishReason,
    ImagePart,
    Message,
    ProviderFinish,
    ReasoningDelta,
    ReasoningOptions,
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
from provider_gateway.providers.anthropic import codec
from provider_gateway.providers.base import fold

WEATHER = Tool(
    "get_weather", "Weather for a city", {"type": "object", "properties": {"city": {"type": "string"}}}
)


def msg(role: Role, *parts: object) -> Message:
    return Message(role, tuple(TextPart(p) if isinstance(p, str) else p for p in parts))  # type: ignore[misc]


def conversation() -> list[Message]:
    return [
        msg(Role.SYSTEM, "Be brief."),
        msg(Role.USER, "Hi"),
        msg(Role.ASSISTANT, "Hello", ToolCallPart(ToolCall("toolu_1", "get_weather", '{"city":"Paris"}'))),
        msg(Role.TOOL, ToolResultPart("toolu_1", "18C")),
        msg(Role.USER, "Thanks", ImagePart(data=b"\x89PNG", media_type="image/png")),
    ]


def test_body_has_system_blocks_cache_breakpoints_and_default_max_tokens() -> None:
    body = codec.build_messages_body(ChatRequest("claude-x", conversation()), codec.AnthropicOptions())
    assert body["max_tokens"] == 8192
    assert body["stream"] is True
    assert body["system"] == [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]
    roles = [m["role"] for m in body["messages"]]
    # the tool result (role TOOL) and the next user turn merge into one user turn
    assert roles == ["user", "assistant", "user"]
    first_user, _, last_user = body["messages"]
    assert first_user["content"][-1]["cache_control"] == {"type": "ephemeral"}
    assert last_user["content"][0] == {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"}
    image = last_user["content"][-1]
    assert image["source"] == {"type": "base64", "media_type": "image/png", "data": "iVBORw=="}
    assert image["cache_control"] == {"type": "ephemeral"}
    assert "cache_control" not in last_user["content"][0]
    assistant = body["messages"][1]["content"]
    assert assistant[1] == {
        "type": "tool_use",
        "id": "toolu_1",
        "name": "get_weather",
        "input": {"city": "Paris"},
    }


def test_automatic_cache_breakpoints_go_on_the_last_two_user_turns_only() -> None:
    """Anthropic allows four breakpoints: the system prompt and the two latest user turns, so the
    cache written by the previous turn is read by this one; older turns get none."""
    turns = [
        Message(Role.USER, (TextPart("one"),)),
        Message(Role.ASSISTANT, (TextPart("a"),)),
        Message(Role.USER, (TextPart("two"),)),
        Message(Role.ASSISTANT, (TextPart("b"),)),
        Message(Role.USER, (TextPart("three"),)),
    ]
    body = codec.build_messages_body(ChatRequest("claude-x", turns), codec.AnthropicOptions())
    marked = [
        block["text"]
        for message in body["messages"]
        for block in message["content"]
        if "cache_control" in block
    ]
    assert marked == ["two", "three"]


def test_no_cache_control_when_caching_is_off_except_explicit_breakpoints() -> None:
    messages = [Message(Role.USER, (TextPart("a", cache_breakpoint=True), TextPart("b")))]
    body = codec.build_messages_body(ChatRequest("m", messages), codec.AnthropicOptions(prompt_caching=False))
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "b"},
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (None, {"type": "auto"}),
        (ToolChoice(ToolChoiceMode.AUTO), {"type": "auto"}),
        (ToolChoice(ToolChoiceMode.REQUIRED), {"type": "any"}),
        (ToolChoice(ToolChoiceMode.TOOL, "get_weather"), {"type": "tool", "name": "get_weather"}),
    ],
)
def test_tool_choice_mapping(choice: ToolChoice | None, expected: dict[str, str]) -> None:
    request = ChatRequest("m", [msg(Role.USER, "x")], tools=[WEATHER], tool_choice=choice)
    body = codec.build_messages_body(request, codec.AnthropicOptions())
    assert body["tool_choice"] == expected
    assert body["tools"][0]["input_schema"]["properties"]["city"] == {"type": "string"}


def test_tool_choice_none_omits_tools() -> None:
    request = ChatRequest(
        "m", [msg(Role.USER, "x")], tools=[WEATHER], tool_choice=ToolChoice(ToolChoiceMode.NONE)
    )
    body = codec.build_messages_body(request, codec.AnthropicOptions())
    assert "tools" not in body
    assert "tool_choice" not in body


def test_thinking_sends_temperature_one_and_refuses_other_sampling() -> None:
    thinking = ReasoningOptions(True, budget_tokens=2048)
    request = ChatRequest("m", [msg(Role.USER, "x")], top_p=0.97, reasoning=thinking)
    body = codec.build_messages_body(request, codec.AnthropicOptions())
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert (body["temperature"], body["top_p"]) == (1.0, 0.97)
    for field, value in (("temperature", 0.2), ("top_p", 0.5)):
        wrong = ChatRequest("m", [msg(Role.USER, "x")], reasoning=thinking, **{field: value})
        with pytest.raises(GatewayError) as refused:
            codec.build_messages_body(wrong, codec.AnthropicOptions())
        assert refused.value.kind is ErrorKind.FAILED_PRECONDITION
        assert refused.value.message.startswith(f"{field}: Anthropic model 'm' cannot honour it")


def test_beta_header() -> None:
    options = codec.AnthropicOptions(context_1m_models=("claude-sonnet-4",))
    assert codec.beta_header(options, "claude-sonnet-4") == (
        "prompt-caching-2024-07-31,fine-grained-tool-streaming-2025-05-14,context-1m-2025-08-07"
    )
    assert codec.beta_header(codec.AnthropicOptions(False, fine_grained_tool_streaming=False), "m") == ""


def test_legacy_complete_prompt() -> None:
    body = codec.build_complete_body(CompletionRequest("claude-2.1", "Say hi"), codec.AnthropicOptions())
    assert body["prompt"] == "\n\nHuman: Say hi\n\nAssistant:"
    assert body["max_tokens_to_sample"] == 8192


def decode(events: list[dict[str, object]]) -> list[object]:
    decoder = codec.MessagesStreamDecoder(provider="anthropic")
    return [e for data in events for e in decoder.feed(data)]


STREAM = [
    {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "model": "claude-x",
            "usage": {
                "input_tokens": 10,
                "cache_creation_input_tokens": 100,
                "cache_read_input_tokens": 1000,
                "output_tokens": 1,
            },
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Hmm"}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sig"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "ping"},
    {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Hi"}},
    {"type": "content_block_stop", "index": 1},
    {
        "type": "content_block_start",
        "index": 2,
        "content_block": {"type": "tool_use", "id": "toolu_9", "name": "f", "input": {}},
    },
    {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ""}},
    {
        "type": "content_block_delta",
        "index": 2,
        "delta": {"type": "input_json_delta", "partial_json": '{"a":'},
    },
    {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "1}"}},
    {"type": "content_block_stop", "index": 2},
    {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 5}},
    {"type": "message_delta", "delta": {}, "usage": {"output_tokens": 7}},
    {"type": "message_stop"},
]


def test_stream_decodes_every_event_type() -> None:
    events = decode(STREAM)
    assert events[:5] == [
        ReasoningDelta("Hmm"),
        ReasoningDelta("", signature="sig"),
        TextDelta("Hi"),
        ToolCallStart(0, "toolu_9", "f"),
        ToolCallDelta(0, '{"a":'),
    ]
    assert events[5:7] == [ToolCallDelta(0, "1}"), ToolCallEnd(0, ToolCall("toolu_9", "f", '{"a":1}'))]
    usage = events[7]
    assert isinstance(usage, UsageEvent)
    # input includes cache reads and writes; output_tokens is cumulative (the last value wins)
    assert (usage.usage.input_tokens, usage.usage.output_tokens) == (1110, 7)
    assert (usage.usage.cache_read_tokens, usage.usage.cache_write_tokens) == (1000, 100)
    assert usage.usage.raw["input_tokens"] == 10
    assert events[8] == ProviderFinish(FinishReason.TOOL_CALLS, "tool_use", "claude-x", "msg_1")


def test_mid_stream_overloaded_error_is_retryable_unavailable() -> None:
    decoder = codec.MessagesStreamDecoder(provider="a")
    decoder.feed(STREAM[0])
    with pytest.raises(GatewayError) as info:
        decoder.feed({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    assert info.value.kind is ErrorKind.UNAVAILABLE
    assert info.value.retryable
    assert "overloaded_error" in info.value.message


def test_error_types_map_to_kinds() -> None:
    assert (
        codec.error_from_body({"error": {"type": "authentication_error"}}).kind is ErrorKind.UNAUTHENTICATED
    )
    assert codec.error_from_body({"error": {"type": "not_found_error"}}).kind is ErrorKind.NOT_FOUND
    assert codec.error_from_body({"error": {"type": "rate_limit_error"}}).kind is ErrorKind.RESOURCE_EXHAUSTED
    assert codec.error_from_body("garbage").kind is ErrorKind.UNAVAILABLE


def test_input_json_delta_for_a_text_block_is_malformed() -> None:
    with pytest.raises(GatewayError, match="malformed"):
        decode(
            [
                STREAM[6],
                {
                    "type": "content_block_delta",
                    "index": 1,
                    "delta": {"type": "input_json_delta", "partial_json": "{"},
                },
            ]
        )


def test_legacy_completion_stream() -> None:
    decoder = codec.CompletionStreamDecoder()
    events = [
        *decoder.feed(
            {"type": "completion", "completion": " Hello", "stop_reason": None, "model": "claude-2.1"}
        ),
        *decoder.feed({"type": "ping"}),
        *decoder.feed(
            {"type": "completion", "completion": "!", "stop_reason": "stop_sequence", "model": "claude-2.1"}
        ),
    ]
    assert events == [TextDelta(" Hello"), TextDelta("!")]
    assert decoder.finished
    assert decoder.finish().reason is FinishReason.STOP


def test_breakpoints_never_exceed_four() -> None:
    marked = tuple(TextPart(f"t{i}", cache_breakpoint=True) for i in range(2))
    messages = [
        msg(Role.SYSTEM, "s"),
        Message(Role.USER, (*marked, TextPart("q1"))),
        msg(Role.ASSISTANT, "a"),
        msg(Role.USER, "q2"),
    ]
    body = codec.build_messages_body(ChatRequest("m", messages), codec.AnthropicOptions())
    blocks = [b for m in body["messages"] for b in m["content"]] + body["system"]
    assert sum("cache_control" in b for b in blocks) == 4
    assert "cache_control" in body["messages"][-1]["content"][-1]  # the newest turn wins the last slot


def test_thinking_limits_are_checked_before_sending() -> None:
    tools = [WEATHER]
    forced = ChatRequest(
        "m",
        [msg(Role.USER, "x")],
        tools=tools,
        tool_choice=ToolChoice(ToolChoiceMode.REQUIRED),
        reasoning=ReasoningOptions(True),
    )
    with pytest.raises(GatewayError, match="tool_choice"):
        codec.build_messages_body(forced, codec.AnthropicOptions())
    small = ChatRequest(
        "m", [msg(Role.USER, "x")], max_tokens=1000, reasoning=ReasoningOptions(True, budget_tokens=500)
    )
    with pytest.raises(GatewayError, match="max_tokens"):
        codec.build_messages_body(small, codec.AnthropicOptions())
    clamped = ChatRequest(
        "m", [msg(Role.USER, "x")], max_tokens=4000, reasoning=ReasoningOptions(True, budget_tokens=10)
    )
    assert codec.build_messages_body(clamped, codec.AnthropicOptions())["thinking"]["budget_tokens"] == 1024
    default = ChatRequest("m", [msg(Role.USER, "x")], reasoning=ReasoningOptions(True))
    assert codec.build_messages_body(default, codec.AnthropicOptions())["thinking"]["budget_tokens"] == 4096


def test_provider_options_merge_into_the_body() -> None:
    request = ChatRequest(
        "m", [msg(Role.USER, "x")], provider_options={"top_k": 5, "service_tier": "standard_only"}
    )
    body = codec.build_messages_body(request, codec.AnthropicOptions())
    assert (body["top_k"], body["service_tier"]) == (5, "standard_only")


def test_empty_text_parts_are_dropped() -> None:
    messages = [msg(Role.USER, "q"), msg(Role.ASSISTANT, "", ToolCallPart(ToolCall("t", "f", "")))]
    body = codec.build_messages_body(ChatRequest("m", messages), codec.AnthropicOptions(prompt_caching=False))
    assert body["messages"][1]["content"] == [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]


def test_without_a_system_prompt_four_breakpoints_go_to_messages() -> None:
    marked = tuple(TextPart(f"t{i}", cache_breakpoint=True) for i in range(2))
    messages = [Message(Role.USER, (*marked, TextPart("q1"))), msg(Role.ASSISTANT, "a"), msg(Role.USER, "q2")]
    body = codec.build_messages_body(ChatRequest("m", messages), codec.AnthropicOptions())
    assert sum("cache_control" in b for m in body["messages"] for b in m["content"]) == 4


def test_invalid_tool_arguments_are_a_clear_invalid_argument() -> None:
    messages = [msg(Role.USER, "q"), msg(Role.ASSISTANT, ToolCallPart(ToolCall("t1", "f", "{not json")))]
    with pytest.raises(GatewayError, match="tool call 't1': arguments_json is not valid JSON") as info:
        codec.build_messages_body(ChatRequest("m", messages), codec.AnthropicOptions())
    assert info.value.kind is ErrorKind.INVALID_ARGUMENT


# The whole Message that STREAM streams, plus a redacted block (which streams whole too).
REDACTED = {"type": "redacted_thinking", "data": "EncryptedBlob"}
MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-x",
    "content": [
        {"type": "thinking", "thinking": "Hmm", "signature": "sig"},
        REDACTED,
        {"type": "text", "text": "Hi"},
        {"type": "tool_use", "id": "toolu_9", "name": "f", "input": {"a": 1}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 10,
        "cache_creation_input_tokens": 100,
        "cache_read_input_tokens": 1000,
        "output_tokens": 7,
        "service_tier": "standard",
    },
}


def test_a_unary_message_reads_as_its_stream_folds() -> None:
    redacted_stream = [
        {"type": "content_block_start", "index": 5, "content_block": REDACTED},
        {"type": "content_block_stop", "index": 5},
    ]
    stream = [*STREAM[:5], *redacted_stream, *STREAM[5:]]
    streamed = fold(decode(stream))  # type: ignore[arg-type]
    unary = codec.MessagesStreamDecoder(provider="a").response(MESSAGE)
    assert unary.usage.raw.pop("service_tier") == "standard"  # a string: kept raw, as streams keep it
    assert unary.usage.service_tier == "standard"  # and read as the served tier
    unary.usage.service_tier = ""  # which the stream names not
    assert unary == streamed
    assert [(p.text, p.signature, p.redacted) for p in unary.reasoning_parts] == [
        ("Hmm", "sig", False),
        ("", "EncryptedBlob", True),
    ]
    assert (unary.usage.input_tokens, unary.usage.cache_write_tokens, unary.usage.cache_read_tokens) == (
        1110,
        100,
        1000,
    )


def test_a_unary_message_cut_by_max_tokens_leaves_its_last_tool_call_incomplete() -> None:
    cut = {**MESSAGE, "content": MESSAGE["content"][2:], "stop_reason": "max_tokens"}  # type: ignore[index]
    (call,) = codec.MessagesStreamDecoder(provider="a").response(cut).tool_calls
    assert (call.arguments_json, call.incomplete) == ('{"a":1}', True)


@pytest.mark.parametrize(
    ("body", "kind", "words"),
    [
        (
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            ErrorKind.UNAVAILABLE,
            "overloaded_error",
        ),
        (
            {"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}},
            ErrorKind.RESOURCE_EXHAUSTED,
            "rate_limit_error",
        ),
        ({"type": "message", "content": "Hi"}, ErrorKind.UNAVAILABLE, "without content"),
        ([1, 2], ErrorKind.UNAVAILABLE, "without content"),
    ],
)
def test_errors_in_a_200_unary_body_map_as_in_a_stream(body: object, kind: ErrorKind, words: str) -> None:
    with pytest.raises(GatewayError) as info:
        codec.MessagesStreamDecoder(provider="a").response(body)
    assert info.value.kind is kind
    assert words in info.value.message


def test_a_unary_legacy_completion() -> None:
    body = {
        "type": "completion",
        "id": "c1",
        "completion": " Hello!",
        "stop_reason": "stop_sequence",
        "model": "claude-2.1",
    }
    response = codec.CompletionStreamDecoder(provider="a").response(body, "\n\nHuman: hi\n\nAssistant:")
    assert (response.text, response.usage.estimated, response.usage.output_tokens) == (" Hello!", True, 2)
    assert response.finish == ProviderFinish(FinishReason.STOP, "stop_sequence", "claude-2.1", "c1")


def test_server_tool_blocks_pass_on_whole_with_their_streamed_input() -> None:
    """As the anthropic SDK accumulates them: the input parsed from the streamed JSON, or the
    block's own input when only the empty first piece came; text that does not parse is kept."""
    decoder = codec.MessagesStreamDecoder()

    def block(index: int, pieces: list[str]) -> list[object]:
        start = {"type": "server_tool_use", "id": f"srvtoolu_{index}", "name": "web_search", "input": {}}
        events = decoder.feed({"type": "content_block_start", "index": index, "content_block": start})
        for piece in pieces:
            delta = {"type": "input_json_delta", "partial_json": piece}
            events += decoder.feed({"type": "content_block_delta", "index": index, "delta": delta})
        return events + decoder.feed({"type": "content_block_stop", "index": index})

    (parsed,) = block(0, ["", '{"query": "Par', 'is"}'])
    (empty,) = block(1, [""])
    (unparsed,) = block(2, ['{"query": '])
    assert parsed.raw["input"] == {"query": "Paris"}  # type: ignore[attr-defined]
    assert empty.raw["input"] == {}  # type: ignore[attr-defined]
    assert unparsed.raw["input"] == '{"query": '  # type: ignore[attr-defined]
    assert parsed.type == "server_tool_use"  # type: ignore[attr-defined]
