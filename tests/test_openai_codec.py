"""The OpenAI-family codec as pure functions: quirks that are easier to pin down without a server."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from made_up_ids_support import untagged_event

from provider_gateway.domain import (
    ChatRequest,
    FinishReason,
    Message,
    ProviderFinish,
    ReasoningDelta,
    ReasoningPart,
    ResponseFormat,
    ResponseFormatType,
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
    Usage,
    UsageEvent,
)
from provider_gateway.errors import GatewayError
from provider_gateway.providers.openai.codec import is_reasoning_model
from provider_gateway.providers.openai.mistral import short_tool_id
from provider_gateway.providers.openai.presets import PRESETS
from provider_gateway.providers.openai.stream import ChatStreamParser, event_chunk
from provider_gateway.providers.openai.wires import WIRES, wire_for
from provider_gateway.wire.sse import SseEvent
from provider_gateway.wire.think import ThinkSplitter


@pytest.mark.parametrize(
    ("model", "reasoning"),
    [
        ("o1", True),
        ("o1-mini", True),
        ("o3-mini-2025-01-31", True),
        ("o4-mini", True),
        ("gpt-5", True),
        ("gpt-5-mini", True),
        ("openai/o3", True),
        ("gpt-4o", False),
        ("o10-model", False),
        ("gpt-4.1", False),
    ],
)
def test_reasoning_model_detection(model: str, reasoning: bool) -> None:
    assert is_reasoning_model(model) is reasoning


def test_short_tool_ids_are_nine_alphanumerics_stable_and_keep_valid_ids() -> None:
    assert short_tool_id("abcDEF123") == "abcDEF123"
    made = short_tool_id("call_PTLP8xhu3uwZk4l3nlnrrJha")
    assert len(made) == 9
    assert made.isalnum()
    assert made == short_tool_id("call_PTLP8xhu3uwZk4l3nlnrrJha")
    assert made != short_tool_id("call_other")


def chat_body(request: ChatRequest, preset_name: str, *, stream: bool) -> dict[str, Any]:
    return wire_for(PRESETS[preset_name]).chat_body(request, stream=stream)


def parser(provider: str, preset_name: str) -> ChatStreamParser:
    return ChatStreamParser(provider, wire_for(PRESETS[preset_name]))


def split(chunks: list[str]) -> tuple[str, str]:
    splitter = ThinkSplitter()
    events = [e for c in chunks for e in splitter.feed(c)] + splitter.close()
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    return reasoning, text


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("<think>plan</think>answer", ("plan", "answer")),
        (" <think>x</think>y", ("x", "y")),  # whitespace before it (templates add "\n"): reasoning
        ("\n\n", ("", "\n\n")),  # whitespace held back in case a tag follows, then text
        ("\nplain", ("", "\nplain")),
        ("<thin", ("", "<thin")),  # a prefix that never completes is text
        ("<think>unfinished", ("unfinished", "")),
        ("plain", ("", "plain")),
        ("a<think>b</think>", ("", "a<think>b</think>")),
    ],
)
def test_think_tags_only_at_the_start(output: str, expected: tuple[str, str]) -> None:
    assert split([output]) == expected


@settings(max_examples=200, deadline=None)
@given(
    output=st.sampled_from(
        ["<think>plan it</think>The answer", "<think></think>x", "no tags", "<th", "<think>a</th"]
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=40), max_size=6),
)
def test_think_split_is_independent_of_chunking(output: str, cuts: list[int]) -> None:
    points = sorted({c % (len(output) + 1) for c in cuts})
    chunks = [output[a:b] for a, b in zip([0, *points], [*points, len(output)], strict=True)]
    assert split(chunks) == split([output])


def test_deepseek_reasoner_merges_roles_keeps_tool_turns_and_replays_tool_turn_reasoning() -> None:
    call = ToolCall("c1", "f", "{}")
    request = ChatRequest(
        model="deepseek-reasoner",
        messages=[
            Message(Role.SYSTEM, (TextPart("sys"),)),
            Message(Role.USER, (TextPart("q"),)),
            Message(Role.ASSISTANT, (ReasoningPart("why"), ToolCallPart(call))),
            Message(Role.TOOL, (ToolResultPart("c1", "r"),)),
            Message(Role.ASSISTANT, (ReasoningPart("done thinking"), TextPart("a1"))),
            Message(Role.ASSISTANT, (TextPart("a2"),)),
        ],
    )
    messages = chat_body(request, "deepseek", stream=True)["messages"]
    assert messages == [
        {"role": "user", "content": "sys\n\nq"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
            "reasoning_content": "why",
        },
        {"role": "tool", "tool_call_id": "c1", "content": "r"},
        {"role": "assistant", "content": "a1\n\na2"},
    ]
    # deepseek-chat keeps the system role and separate messages.
    request.model = "deepseek-chat"
    assert chat_body(request, "deepseek", stream=False)["messages"][0] == {
        "role": "system",
        "content": "sys",
    }


def test_response_formats_named_tool_choice_and_tool_choice_none() -> None:
    tool = Tool("lookup", "find", {"type": "object"})
    request = ChatRequest(
        model="gpt-4o",
        messages=[Message(Role.USER, (TextPart("q"),))],
        tools=[tool],
        tool_choice=ToolChoice(ToolChoiceMode.TOOL, "lookup"),
        response_format=ResponseFormat(
            ResponseFormatType.JSON_SCHEMA, "answer", {"type": "object"}, strict=True
        ),
        stop=["END"],
        provider_options={"seed": 7},
    )
    body = chat_body(request, "openai", stream=False)
    assert body["tool_choice"] == {"type": "function", "function": {"name": "lookup"}}
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True},
    }
    assert (body["stop"], body["seed"], body["model"]) == (["END"], 7, "gpt-4o")
    assert "stream" not in body
    # What the gateway owns is refused, not silently overridden nor dropped.
    request.provider_options = {"seed": 7, "stream": True, "model": "other"}
    with pytest.raises(GatewayError, match="provider_options 'stream', 'model'"):
        chat_body(request, "openai", stream=False)
    request.provider_options = {"seed": 7}
    request.tool_choice = ToolChoice(ToolChoiceMode.NONE)
    request.response_format = ResponseFormat(ResponseFormatType.JSON_OBJECT)
    body = chat_body(request, "openai", stream=False)
    assert "tools" not in body
    assert body["response_format"] == {"type": "json_object"}


def test_stream_parser_reasoning_field_cost_length_and_whole_arguments() -> None:
    stream = parser("or", "openrouter")
    events = stream.feed(
        {"id": "gen-1", "model": "x", "choices": [{"index": 0, "delta": {"reasoning": "r"}}]}
    )
    events += stream.feed(
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {"index": 0, "id": "t", "function": {"name": "f", "arguments": '{"a":1}'}}
                        ]
                    },
                },
                {"index": 1, "delta": {"content": "second choice is ignored"}},
            ]
        }
    )
    events += stream.feed({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]})
    events += stream.feed(
        {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "cost": 0.0001}}
    )
    events += stream.close()
    assert events[0] == ReasoningDelta("r")
    assert [type(e).__name__ for e in events[1:]] == [
        "ToolCallStart",
        "ToolCallDelta",
        "ToolCallEnd",
        "UsageEvent",
        "ProviderFinish",
    ]
    usage, finish = events[-2], events[-1]
    assert isinstance(usage, UsageEvent)
    assert usage.usage.raw["cost"] == 0.0001
    assert isinstance(finish, ProviderFinish)
    assert (finish.reason, finish.raw_reason, finish.response_id) == (FinishReason.LENGTH, "length", "gen-1")


def test_stream_parser_without_finish_reason_is_unspecified_not_stop_and_has_no_usage_event() -> None:
    """`[DONE]` with no finish_reason anywhere: whether the answer is whole is unknown (the SDK's
    finish_reason is None), so not a clean STOP."""
    stream = parser("p", "vllm")
    events = stream.feed({"choices": [{"index": 0, "delta": {"content": "hi"}}]}) + stream.close()
    assert events == [TextDelta("hi"), ProviderFinish(FinishReason.UNSPECIFIED, "", "", "")]


def tool_chunk(*fragments: dict[str, Any], content: str | None = None) -> dict[str, Any]:
    delta: dict[str, Any] = {"tool_calls": list(fragments)} | ({"content": content} if content else {})
    return {"choices": [{"index": 0, "delta": delta}]}


def finish_chunk(reason: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]}


def test_a_call_starts_for_the_client_once_its_name_is_known_and_text_is_not_held_back() -> None:
    """Arguments before the call's id and name (fields merge by index): the client's ToolCallStart
    waits for the name, then carries the arguments so far in one delta; text goes on meanwhile."""
    stream = parser("p", "openai")
    held = stream.feed(tool_chunk({"index": 0, "function": {"arguments": '{"city":'}}, content="Let me see."))
    named = stream.feed(
        tool_chunk(
            {"index": 0, "id": "call_abc", "function": {"name": "get_weather", "arguments": ' "Paris"'}}
        )
    )
    more = stream.feed(tool_chunk({"index": 0, "function": {"arguments": "}"}}))
    ended = stream.feed(finish_chunk("tool_calls")) + stream.close()
    assert held == [TextDelta("Let me see.")]
    assert named == [ToolCallStart(0, "call_abc", "get_weather"), ToolCallDelta(0, '{"city": "Paris"')]
    assert more == [ToolCallDelta(0, "}")]
    assert ended[0] == ToolCallEnd(0, ToolCall("call_abc", "get_weather", '{"city": "Paris"}'))
    assert ended[-1] == ProviderFinish(FinishReason.TOOL_CALLS, "tool_calls", "", "")


def test_a_call_whose_name_never_comes_still_starts_and_ends_whole() -> None:
    stream = parser("p", "openai")
    assert stream.feed(tool_chunk({"index": 0, "function": {"arguments": "{}"}})) == []
    assert [untagged_event(e) for e in stream.feed(finish_chunk("tool_calls"))] == [
        ToolCallStart(0, "call_0", ""),  # made up: `call_<answer's tag>_0`
        ToolCallDelta(0, "{}"),
        ToolCallEnd(0, ToolCall("call_0", "", "{}")),
    ]


def test_index_less_calls_each_whole_in_its_chunk_are_separate_calls_and_stop_is_tool_calls() -> None:
    """Gemini's OpenAI-compatible endpoint: no `index`, each call whole in its own chunk, "stop"."""
    stream = parser("p", "openai")
    first = stream.feed(
        tool_chunk({"id": "fc-1", "function": {"name": "get_weather", "arguments": '{"c":"P"}'}})
    )
    second = stream.feed(
        tool_chunk({"id": "fc-2", "function": {"name": "get_time", "arguments": '{"tz":"CET"}'}})
    )
    ended = stream.feed(finish_chunk("stop")) + stream.close()
    assert first == [ToolCallStart(0, "fc-1", "get_weather"), ToolCallDelta(0, '{"c":"P"}')]
    assert second == [ToolCallStart(1, "fc-2", "get_time"), ToolCallDelta(1, '{"tz":"CET"}')]
    assert ended == [
        ToolCallEnd(0, ToolCall("fc-1", "get_weather", '{"c":"P"}')),
        ToolCallEnd(1, ToolCall("fc-2", "get_time", '{"tz":"CET"}')),
        ProviderFinish(FinishReason.TOOL_CALLS, "stop", "", ""),
    ]


def test_index_less_calls_without_ids_split_on_a_new_name_or_after_whole_arguments() -> None:
    """Without ids, a named fragment is another call when the latest call's arguments are whole
    (the same tool twice) or it names another tool; unnamed fragments continue the latest call."""
    stream = parser("p", "openai")
    for fragment in (
        {"function": {"name": "f", "arguments": '{"a":'}},
        {"function": {"arguments": "1}"}},
        {"function": {"name": "f", "arguments": '{"a":2}'}},
        {"function": {"name": "g", "arguments": ""}},
        {"function": {"arguments": "{}"}},
    ):
        stream.feed(tool_chunk(fragment))
    calls = [
        (e.index, e.call.name, e.call.arguments_json) for e in stream.close() if isinstance(e, ToolCallEnd)
    ]
    assert calls == [(0, "f", '{"a":1}'), (1, "f", '{"a":2}'), (2, "g", "{}")]


def test_index_less_fragments_repeating_their_id_are_one_call() -> None:
    stream = parser("p", "openai")
    for arguments in ('{"a"', ":1}"):
        stream.feed(tool_chunk({"id": "c", "function": {"name": "f", "arguments": arguments}}))
    ends = [e for e in stream.close() if isinstance(e, ToolCallEnd)]
    assert ends == [ToolCallEnd(0, ToolCall("c", "f", '{"a":1}'))]


@pytest.mark.parametrize("extra", [{}, {"reasoning_content": "r"}], ids=["plain-message", "folded-message"])
def test_whole_answer_with_index_less_calls_and_stop_is_tool_calls(extra: dict[str, Any]) -> None:
    """Both unary paths: `_message_response`, and `folded_response` (a field `plain_message` leaves
    to the fold)."""
    calls = [
        {"id": f"fc-{n}", "type": "function", "function": {"name": "f", "arguments": f'{{"n":{n}}}'}}
        for n in (1, 2)
    ]
    message = {"role": "assistant", "tool_calls": calls} | extra
    body = {"choices": [{"index": 0, "finish_reason": "stop", "message": message}]}
    response = parser("p", "openai").response(body, lambda chars: Usage(output_tokens=chars, estimated=True))
    assert [(c.id, c.name, c.arguments_json) for c in response.tool_calls] == [
        ("fc-1", "f", '{"n":1}'),
        ("fc-2", "f", '{"n":2}'),
    ]
    assert (response.finish.reason, response.finish.raw_reason) == (FinishReason.TOOL_CALLS, "stop")


def test_whole_answer_without_a_finish_reason_is_unspecified() -> None:
    body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}]}
    response = parser("p", "openai").response(body, lambda chars: Usage(output_tokens=chars, estimated=True))
    assert (response.text, response.finish.reason, response.finish.raw_reason) == (
        "hi",
        FinishReason.UNSPECIFIED,
        "",
    )


def test_length_after_tool_calls_stays_length() -> None:
    stream = parser("p", "openai")
    stream.feed(tool_chunk({"index": 0, "id": "c", "function": {"name": "f", "arguments": '{"a"'}}))
    finish = (stream.feed(finish_chunk("length")) + stream.close())[-1]
    assert finish == ProviderFinish(FinishReason.LENGTH, "length", "", "")


def test_presets_use_each_hosts_documented_base_path() -> None:
    """Hosts differ in where the OpenAI-compatible API lives (behaviour page: Groq `/openai/v1`,
    OpenRouter `/api/v1`, DeepSeek at the root)."""
    paths = {name: PRESETS[name].base_url for name in ("groq", "openrouter", "deepseek", "fireworks", "xai")}
    assert paths == {
        "groq": "https://api.groq.com/openai/v1",
        "openrouter": "https://openrouter.ai/api/v1",
        "deepseek": "https://api.deepseek.com",
        "fireworks": "https://api.fireworks.ai/inference/v1",
        "xai": "https://api.x.ai/v1",
    }


# Chunks as hosts send them: the plain text delta of nearly every chunk, and that chunk with one or
# two of its fields changed into every other thing a chunk may carry (or a wrong shape of it).
_TEXTS = ["", " tok", "<think>", "<think>plan</think>", "</think>x", "<th", "é😀"]
_CALL = {"index": 0, "id": "c", "function": {"name": "f", "arguments": "{}"}}
_CHOICE_CHANGES: list[dict[str, Any]] = [
    {"finish_reason": "stop"},
    {"finish_reason": "length"},
    {"finish_reason": ""},
    {"index": 1},
    {"index": False},
    {"index": "0"},
    {"delta": {}},
    {"delta": None},
    {"delta": 5},
    {"delta": "x"},
    {"delta": ["content"]},
    {"delta": True},
    {"index": None},
    {"delta": {}, "message": {"content": "from message"}},
    {"delta": {"role": "assistant"}},
    {"delta": {"role": "assistant", "content": ""}},
    {"delta": {"content": None}},
    {"delta": {"content": "x", "refusal": None}},
    {"delta": {"content": None, "refusal": "no"}},
    {"delta": {"content": None, "reasoning_content": "why"}},
    {"delta": {"reasoning": "why", "content": "x"}},
    {"delta": {"tool_calls": [_CALL]}},
    {"delta": {"tool_calls": 5}},
    {"delta": {"annotations": 5}},
    {"delta": {"content": [{"type": "text", "text": "part"}]}},
    {"delta": {"content": [{"type": "thinking", "thinking": "t"}]}},
    {"delta": {"content": 5}},
]
_CHUNK_CHANGES: list[dict[str, Any]] = [
    {"usage": {"prompt_tokens": 1, "completion_tokens": 2}},
    {"usage": 5},
    {"usage": None},
    {"error": {"message": "boom", "code": 502}},
    {"choices": []},
    {"choices": None},
    {"choices": 5},
    {"choices": [5]},
    {"choices": ["x"]},
    {"choices": "x"},
    {"choices": {"delta": {"content": "x"}}},
    {"choices": [[{"delta": {"content": "x"}}]]},
    {"choices": [{"index": 0, "delta": {"content": "a"}}, {"index": 1, "delta": {"content": "b"}}]},
    {"model": None},
    {"model": 5},
    {"id": ""},
]


@st.composite
def _chunk(draw: st.DrawFn) -> dict[str, Any]:
    choice = {
        "index": 0,
        "delta": {"content": draw(st.sampled_from(_TEXTS))},
        "logprobs": None,
        "finish_reason": None,
    }
    for change in draw(st.lists(st.sampled_from(_CHOICE_CHANGES), max_size=2)):
        choice |= change
    chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "m", "choices": [choice]}
    for change in draw(st.lists(st.sampled_from(_CHUNK_CHANGES), max_size=1)):
        chunk |= change
    return chunk


def parse(preset_name: str, chunks: list[dict[str, Any]], fast: bool) -> tuple[list[Any], Any]:
    """The events of `chunks` fed one by one, fast path allowed or not, then what ended them:
    the parser's closing events and count, or the error."""
    stream = parser("p", preset_name)
    events: list[Any] = []
    try:
        for chunk in chunks:
            events += stream.stream_chunk(chunk) if fast else stream.feed(chunk)
        return events, (stream.close(), stream.output_chars)
    except GatewayError as error:
        return events, (error.kind, error.message, error.retryable)


@settings(max_examples=300, deadline=None)
@given(chunks=st.lists(_chunk(), max_size=6), preset_name=st.sampled_from(["openai", "deepseek", "mistral"]))
def test_a_streamed_chunk_gives_what_the_general_reader_gives(
    chunks: list[dict[str, Any]], preset_name: str
) -> None:
    """The plain text fast path and the general reader: the same events (think tags split the
    same), the same usage, finish, ids and output length, the same errors for what is refused."""
    assert parse(preset_name, chunks, fast=True) == parse(preset_name, chunks, fast=False)


def test_the_common_chunks_are_plain_text_and_every_other_one_is_not() -> None:
    """`stream_text` gives the plain token as a str (no event made for it) and reads every other
    chunk as `feed` does, into events."""
    common = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "m",
        "system_fingerprint": "fp",
        "choices": [{"index": 0, "delta": {"content": " tok"}, "logprobs": None, "finish_reason": None}],
        "usage": None,
    }

    def text(chunk: dict[str, Any]) -> str | list[Any]:
        return parser("p", "openai").stream_text(chunk)

    assert text(common) == " tok"
    assert text(common | {"choices": [{"delta": {"role": "assistant", "content": ""}}]}) == []
    assert text(common | {"choices": [{"delta": {"role": "assistant"}}]}) == []
    others = [
        {"delta": {"content": "x"}, "finish_reason": "stop"},
        {"delta": {"content": "x"}, "index": 1},
        {"delta": {"content": "x", "refusal": None}},  # read by the general reader, null or not
        {"delta": {"content": [{"type": "text", "text": "x"}]}},
        {"delta": {}, "message": {"content": "x"}},
    ]
    for choice in others:
        assert isinstance(text(common | {"choices": [choice]}), list), choice
    assert isinstance(text(common | {"usage": {"prompt_tokens": 1}}), list)
    assert isinstance(text(common | {"choices": [common["choices"][0]] * 2}), list)
    # Think tags are split by the general path's splitter: never a bare str.
    assert parser("p", "deepseek").stream_text(common) == [TextDelta(" tok")]


def test_every_wire_reads_string_content_as_text_as_the_fast_path_does() -> None:
    for name, wire in WIRES.items():
        host = next(preset for preset in PRESETS.values() if preset.wire == name)
        assert wire(host).content("x", "p") == [TextDelta("x")], name


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
_event_data = st.one_of(
    _json_values.map(orjson.dumps),
    st.sampled_from(
        [
            b"[DONE]",
            b" [DONE] ",
            b"[DONE]\xc2\xa0",
            b"\x1c[DONE]",
            b"\xef\xbb\xbf{}",
            b'{"a":"\xff"}',
            b"{",
            b"",
        ]
    ),
    st.binary(max_size=12),
).flatmap(
    # and the same with a byte put anywhere: a cut UTF-8 sequence, a quote, a brace
    lambda data: st.tuples(
        st.integers(0, len(data)), st.sampled_from([b"", b"\xc3", b"\xff", b'"', b"}"])
    ).map(lambda cut: data[: cut[0]] + cut[1] + data[cut[0] :])
)


@settings(max_examples=400, deadline=None)
@given(data=_event_data)
def test_an_events_data_as_bytes_reads_as_its_decoded_text(data: bytes) -> None:
    """`SseDecoder.payloads` hands a plain event's data over undecoded: the chunk, the `[DONE]` and
    the malformed-event error are those of the text `feed` decodes from it, and where the adapter's
    step parses the bytes to an object first, that object is the chunk."""

    def read(frame: bytes | SseEvent) -> Any:
        try:
            return event_chunk(frame, "oa")
        except GatewayError as error:
            return (error.kind, str(error))

    expected = read(SseEvent(data.decode("utf-8", "replace")))
    assert read(data) == expected
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        parsed = None
    if type(parsed) is dict:
        assert parsed == expected


class _ScannedText(TextPart):
    """A text part the request builders do not recognise as a lone `TextPart`: the same message
    through their general path (the scan of the parts)."""


@settings(max_examples=300, deadline=None)
@given(
    preset_name=st.sampled_from(sorted(PRESETS)),
    model=st.sampled_from(["gpt-4o-mini", "o3-mini", "deepseek-reasoner", "mistral-small"]),
    turns=st.lists(
        st.tuples(
            st.sampled_from([Role.SYSTEM, Role.USER, Role.ASSISTANT, Role.TOOL]),
            st.text(max_size=8),
            st.sampled_from(["", "ann"]),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_a_lone_text_part_gives_the_body_the_general_path_gives(
    preset_name: str, model: str, turns: list[tuple[Role, str, str]]
) -> None:
    # Differential: messages of one text part are read directly (`_lone_text`); the same messages
    # with a part the builders must scan give the same request body, or the same refusal.
    def body(part: type[TextPart]) -> object:
        messages = [Message(role, (part(text),), name) for role, text, name in turns]
        try:
            return chat_body(ChatRequest(model=model, messages=messages), preset_name, stream=False)
        except GatewayError as error:
            return (error.kind, error.message)

    assert body(TextPart) == body(_ScannedText)


@pytest.mark.parametrize(
    ("details", "input_tokens"),
    [
        ({}, 11),
        ({"completion_tokens_details": {"reasoning_tokens": 197}}, 11),
        # A total that also counts a grounded answer's tool-use prompt (212): only the thoughts the
        # host reports are output; the rest is input, as the `gemini` kind counts it.
        ({"total_tokens": 428, "completion_tokens_details": {"reasoning_tokens": 197}}, 223),
    ],
)
def test_gemini_thoughts_in_the_total_count_once_as_output_and_reasoning(
    details: dict[str, Any], input_tokens: int
) -> None:
    # Gemini's OpenAI-compatible endpoint leaves its thoughts out of completion_tokens but not out
    # of total_tokens: they are output as billed, and reasoning, counted once even where a
    # host also reports them as reasoning_tokens.
    raw: dict[str, Any] = {"prompt_tokens": 11, "completion_tokens": 8, "total_tokens": 216, **details}
    usage = wire_for(PRESETS["gemini-openai"]).usage(raw)
    assert (usage.input_tokens, usage.output_tokens, usage.reasoning_tokens) == (input_tokens, 205, 197)
