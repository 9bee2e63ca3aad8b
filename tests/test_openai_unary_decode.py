"""The OpenAI family's unary answer: the direct decode of the common `chat.completion` body and the
general reader (the body read as one chunk, its events folded) give the same ChatResponse, or the
same error, for every body; the common bodies take the direct decode, every other one does not."""

from __future__ import annotations

import copy
from typing import Any
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from provider_gateway.domain import ChatResponse, FinishReason, ToolCall, Usage
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.providers.openai import tool_calls
from provider_gateway.providers.openai.presets import PRESETS
from provider_gateway.providers.openai.stream import ChatStreamParser, plain_message
from provider_gateway.providers.openai.wires import wire_for

_TEXTS = [None, "", "hello", "<think>plan</think>answer", "<think>", "<th", "a<think>b</think>", "é😀"]
_CALL = {"id": "call_1", "type": "function", "function": {"name": "get", "arguments": '{"a": 1}'}}
_MESSAGE_CHANGES: list[dict[str, Any]] = [
    {"refusal": None},
    {"refusal": "I can't"},
    {"refusal": "<think>no</think>"},
    {"refusal": 5},
    {"annotations": []},
    {"annotations": [{"type": "url_citation", "url_citation": {"url": "https://x.test"}}]},
    {"annotations": [{}]},
    {"annotations": [5]},
    {"annotations": 5},
    {"tool_calls": [_CALL]},
    {"tool_calls": [_CALL, _CALL | {"id": "call_2", "function": {"name": "put", "arguments": "{"}}]},
    {"tool_calls": [_CALL | {"index": 3}, _CALL | {"index": 1, "id": ""}]},
    {"tool_calls": [{"function": {"name": "n", "arguments": {"a": 1}}}]},
    {"tool_calls": [{"function": {"name": "n", "arguments": ""}}]},
    {"tool_calls": [{"index": "x"}]},
    {"tool_calls": [5]},
    {"tool_calls": 5},
    {"tool_calls": None},
    {"reasoning_content": "why"},
    {"reasoning": "why"},
    {"content": [{"type": "text", "text": "part"}]},
    {"content": [{"type": "thinking", "thinking": "t"}]},
    {"content": 5},
    {"function_call": {"name": "f", "arguments": "{}"}},
    {"audio": None},
]
_CHOICE_CHANGES: list[dict[str, Any]] = [
    {"finish_reason": "length"},
    {"finish_reason": "tool_calls"},
    {"finish_reason": "content_filter"},
    {"finish_reason": "error"},  # Mistral: a failure
    {"finish_reason": "odd"},
    {"finish_reason": None},
    {"finish_reason": 5},
    {"index": 1},
    {"index": "0"},
    {"delta": {"content": "from delta"}},
    {"delta": {}},
    {"message": None},
    {"message": 5},
    {"logprobs": {"content": []}},
]
_BODY_CHANGES: list[dict[str, Any]] = [
    {"usage": None},
    {"usage": {}},
    {
        "usage": {
            "prompt_tokens": 9,
            "completion_tokens": 3,
            "prompt_tokens_details": {"cached_tokens": 4},
            "completion_tokens_details": {"reasoning_tokens": 2},
        }
    },
    {"usage": {"prompt_tokens": 5, "prompt_cache_hit_tokens": 2}},
    {"usage": {"prompt_tokens": "many"}},
    {"usage": 5},
    {"error": {"message": "boom", "code": 502}},
    {"model": None},
    {"model": 5},
    {"id": ""},
    {"system_fingerprint": "fp_1", "service_tier": "default"},
]


@st.composite
def _body(draw: st.DrawFn) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": draw(st.sampled_from(_TEXTS))}
    for change in draw(st.lists(st.sampled_from(_MESSAGE_CHANGES), max_size=3)):
        message |= change
    choice: dict[str, Any] = {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
    for change in draw(st.lists(st.sampled_from(_CHOICE_CHANGES), max_size=2)):
        choice |= change
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [choice] * draw(st.sampled_from([1, 1, 1, 2, 0])),
        "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30},
    }
    for change in draw(st.lists(st.sampled_from(_BODY_CHANGES), max_size=2)):
        body |= change
    return copy.deepcopy(body)


def _estimate(chars: int) -> Usage:
    return Usage(output_tokens=chars, estimated=True)


def read(preset_name: str, body: dict[str, Any], direct: bool) -> ChatResponse | tuple[Any, ...]:
    """The answer `response` gives (direct decode where it applies), or the general reader's;
    for a refused body, the error as the client would see it."""
    parser = ChatStreamParser("p", wire_for(PRESETS[preset_name]))
    try:
        # One tag for both reads: a made-up id is otherwise random per answer (`made_up_ids`).
        with mock.patch.object(tool_calls, "answer_tag", return_value="0" * 12):
            return parser.response(body, _estimate) if direct else parser.folded_response(body, _estimate)
    except GatewayError as error:
        return (error.kind, error.message, error.retryable)


@settings(max_examples=400, deadline=None)
@given(body=_body(), preset_name=st.sampled_from(["openai", "deepseek", "mistral"]))
def test_the_direct_decode_gives_what_the_general_reader_gives(
    body: dict[str, Any], preset_name: str
) -> None:
    """Text, refusals, `<think>` on the hosts that split it, tool calls (whole or not JSON, ids
    made up where missing, Mistral's object arguments), annotations, usage with its details or
    estimated, finish mapping, model and id; and the same error for a failure or a wrong shape."""
    assert read(preset_name, body, direct=True) == read(preset_name, body, direct=False)


def _common(**message: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi", "refusal": None, "annotations": []}
                | message,
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }


def test_the_common_bodies_take_the_direct_decode_and_the_others_do_not() -> None:
    assert plain_message(_common(), think_tags=False) is not None
    assert plain_message(_common(content=None, tool_calls=[_CALL]), think_tags=False) is not None
    assert plain_message(_common(content="<think>x</think>y"), think_tags=False) is not None
    assert plain_message(_common(content="plain"), think_tags=True) is not None
    others = [
        (_common(content="<think>x</think>y"), True),  # the general reader splits it
        (_common(content=[{"type": "text", "text": "x"}]), False),
        (_common(reasoning_content="why"), False),
        (_common(refusal=5), False),
        (_common() | {"error": {"message": "boom"}}, False),
        (_common() | {"choices": []}, False),
    ]
    for body, think_tags in others:
        assert plain_message(body, think_tags) is None, body


def test_a_direct_answer_has_the_text_calls_usage_and_finish_of_the_body() -> None:
    body = _common(
        content=None,
        tool_calls=[_CALL, {"id": "", "function": {"name": "cut", "arguments": '{"a": '}}],
    )
    body["choices"][0]["finish_reason"] = "tool_calls"
    body["usage"] = {
        "prompt_tokens": 8,
        "completion_tokens": 5,
        "prompt_tokens_details": {"cached_tokens": 6},
    }
    answer = read("openai", body, direct=True)
    assert isinstance(answer, ChatResponse)
    assert answer.tool_calls == [
        ToolCall("call_1", "get", '{"a": 1}'),
        ToolCall("call_000000000000_1", "cut", '{"a": ', incomplete=True),  # an id made up
    ]
    assert (answer.usage.input_tokens, answer.usage.output_tokens, answer.usage.cache_read_tokens) == (
        8,
        5,
        6,
    )
    assert answer.finish is not None
    assert answer.finish.reason is FinishReason.TOOL_CALLS
    assert (answer.finish.model, answer.finish.response_id) == ("gpt-4o-mini", "chatcmpl-1")


def test_a_wrongly_shaped_plain_body_fails_as_the_general_reader_says() -> None:
    body = _common()
    body["usage"] = {"prompt_tokens": "many"}
    error = read("openai", body, direct=True)
    assert error == (
        ErrorKind.UNAVAILABLE,
        "p answered with JSON of an unexpected shape (ChatStreamParser.feed: ValueError); "
        "the provider or a proxy in front of it is misbehaving",
        True,
    )
