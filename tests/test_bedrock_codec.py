"""Bedrock's pure parts: model ids and families, the codec's edge cases, and the fake's frames."""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer
from botocore.session import get_session
from hypothesis import example, given, settings
from hypothesis import strategies as st

from provider_gateway.domain import (
    ChatRequest,
    CompletionRequest,
    FinishReason,
    ImagePart,
    Message,
    ProviderFinish,
    RawContent,
    ReasoningDelta,
    ReasoningOptions,
    Role,
    TextDelta,
    TextPart,
    Tool,
    ToolCallEnd,
    ToolChoice,
    ToolChoiceMode,
    UsageEvent,
)
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.fakes import bedrock_invoke_bodies
from provider_gateway.fakes.bedrock import (
    chunk_frame,
    encode_message,
    event_frame,
    exception_frame,
    invoke_response,
    invoke_stream_chunks,
)
from provider_gateway.providers.bedrock import codec, models
from provider_gateway.providers.bedrock.errors import AwsError, translate
from provider_gateway.providers.bedrock.event_stream import FrameReader
from provider_gateway.providers.bedrock.invoke import CODECS, converse_features
from provider_gateway.providers.bedrock.models import Family

CLAUDE = "anthropic.claude-3-5-sonnet-20241022-v2:0"
CLAUDE_THINKING = "anthropic.claude-sonnet-4-5-20250929-v1:0"  # extended thinking came with 3.7


@pytest.mark.parametrize(
    ("region", "prefix"),
    [
        ("us-east-1", "us."),
        ("us-west-2", "us."),
        ("us-gov-west-1", "us-gov."),
        ("eu-central-1", "eu."),
        ("ap-southeast-1", "apac."),
        ("ap-southeast-2", "au."),
        ("ap-northeast-1", "jp."),
        ("ca-central-1", "ca."),
        ("sa-east-1", "sa."),
        ("me-central-1", ""),
    ],
)
def test_region_prefixes(region: str, prefix: str) -> None:
    assert models.region_prefix(region) == prefix


def test_inference_model_id_modes() -> None:
    assert models.inference_model_id(CLAUDE, "eu-west-1", "none") == CLAUDE
    assert models.inference_model_id(CLAUDE, "eu-west-1", "regional") == f"eu.{CLAUDE}"
    assert models.inference_model_id(CLAUDE, "us-gov-west-1", "regional", "ug") == f"ug.{CLAUDE}"
    assert models.inference_model_id(CLAUDE, "eu-west-1", "global") == f"global.{CLAUDE}"
    assert models.inference_model_id(f"apac.{CLAUDE}", "eu-west-1", "regional") == f"apac.{CLAUDE}"
    arn = "arn:aws:bedrock:us-east-1:123:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0"
    assert models.inference_model_id(arn, "us-east-1", "global") == arn


@pytest.mark.parametrize(
    ("model_id", "family"),
    [
        (CLAUDE, Family.ANTHROPIC),
        (f"us.{CLAUDE}", Family.ANTHROPIC),
        (f"us-gov.{CLAUDE}", Family.ANTHROPIC),
        ("arn:aws:bedrock:us-east-1::foundation-model/meta.llama3-70b-instruct-v1:0", Family.LLAMA),
        ("amazon.nova-pro-v1:0", Family.NOVA),
        ("amazon.titan-text-premier-v1:0", Family.TITAN),
        ("mistral.mistral-large-2402-v1:0", Family.MISTRAL),
        ("mistral.mistral-7b-instruct-v0:2", Family.MISTRAL),
        ("mistral.mistral-large-2407-v1:0", Family.MISTRAL_CHAT),
        ("us.mistral.pixtral-large-2502-v1:0", Family.MISTRAL_CHAT),
        ("cohere.command-r-plus-v1:0", Family.COHERE_CHAT),
        ("cohere.command-text-v14", Family.COHERE),
        ("cohere.embed-english-v3", Family.COHERE),
        ("ai21.jamba-1-5-large-v1:0", Family.JAMBA),
        ("openai.gpt-oss-120b-1:0", Family.GPT_OSS),
        ("us.deepseek.r1-v1:0", Family.DEEPSEEK),
        ("deepseek.v3-v1:0", Family.OTHER),
        ("us.writer.palmyra-x5-v1:0", Family.WRITER),
        ("qwen.qwen3-32b-v1:0", Family.OTHER),
        ("us.meta.llama4-maverick-17b-instruct-v1:0", Family.LLAMA),
        ("arn:aws:bedrock:us-east-1:123:imported-model/abc", Family.OTHER),
    ],
)
def test_family_detection(model_id: str, family: Family) -> None:
    assert models.family(model_id) is family


def test_tool_choice_and_none_mode() -> None:
    tool = Tool("lookup", "", {})
    user = Message(Role.USER, (TextPart("hi"),))
    named = ChatRequest(CLAUDE, [user], tools=[tool], tool_choice=ToolChoice(ToolChoiceMode.TOOL, "lookup"))
    kwargs = codec.converse_request(named, CLAUDE)
    assert kwargs["toolConfig"]["toolChoice"] == {"tool": {"name": "lookup"}}
    assert kwargs["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"] == {
        "json": {"type": "object", "properties": {}}
    }
    auto = ChatRequest(CLAUDE, [user], tools=[tool])
    assert "toolChoice" not in codec.converse_request(auto, CLAUDE)["toolConfig"]
    none = ChatRequest(CLAUDE, [user], tools=[tool], tool_choice=ToolChoice(ToolChoiceMode.NONE))
    assert "toolConfig" not in codec.converse_request(none, CLAUDE)


def test_nova_reasoning_effort() -> None:
    user = Message(Role.USER, (TextPart("hi"),))
    request = ChatRequest("amazon.nova-2-lite-v1:0", [user], reasoning=ReasoningOptions(effort="minimal"))
    kwargs = codec.converse_request(request, "amazon.nova-2-lite-v1:0")
    assert kwargs["additionalModelRequestFields"] == {
        "reasoningConfig": {"type": "enabled", "maxReasoningEffort": "low"}
    }
    llama = "meta.llama3-8b-instruct-v1:0"
    plain = ChatRequest(llama, [user], reasoning=ReasoningOptions(enabled=True))
    with pytest.raises(GatewayError, match=r"^reasoning\.enabled: Bedrock model") as refused:
        codec.converse_request(plain, llama)  # never sent without it
    assert refused.value.kind is ErrorKind.FAILED_PRECONDITION


def test_provider_options_split_between_converse_and_model_fields() -> None:
    request = ChatRequest(
        CLAUDE,
        [Message(Role.USER, (TextPart("hi"),))],
        provider_options={"guardrailConfig": {"guardrailIdentifier": "g"}, "top_k": 5},
    )
    kwargs = codec.converse_request(request, CLAUDE)
    assert kwargs["guardrailConfig"] == {"guardrailIdentifier": "g"}
    assert kwargs["additionalModelRequestFields"] == {"top_k": 5}


# What the gateway writes itself in a Converse request; every other member of the request (botocore's
# service model) that provider_options names is a Converse parameter, never a model field.
BUILT_BY_THE_GATEWAY = {
    "modelId", "messages", "system", "inferenceConfig", "toolConfig", "additionalModelRequestFields", "outputConfig",
}  # fmt: skip


@pytest.mark.parametrize(
    "member",
    sorted(
        set(get_session().get_service_model("bedrock-runtime").shape_for("ConverseStreamRequest").members)
        - BUILT_BY_THE_GATEWAY
    ),
)
def test_every_converse_parameter_in_provider_options_goes_to_converse(member: str) -> None:
    """`serviceTier` (priority or flex) sent among the model's fields was not the tier asked for."""
    value = {"type": "priority"}
    request = ChatRequest(CLAUDE, [Message(Role.USER, (TextPart("hi"),))], provider_options={member: value})
    kwargs = codec.converse_request(request, CLAUDE)
    assert kwargs[member] == value
    assert member not in kwargs.get("additionalModelRequestFields", {})


def test_cache_points_are_capped_at_four_keeping_the_latest() -> None:
    turns = [
        Message(Role.USER if i % 2 == 0 else Role.ASSISTANT, (TextPart(f"t{i}", cache_breakpoint=True),))
        for i in range(6)
    ]
    system = Message(Role.SYSTEM, (TextPart("sys", cache_breakpoint=True),))
    system_blocks, messages = codec.converse_messages([system, *turns], prompt_caching=False)
    assert system_blocks[-1] == codec.CACHE_POINT
    marked = [m["content"][0]["text"] for m in messages if m["content"][-1] == codec.CACHE_POINT]
    assert marked == ["t3", "t4", "t5"]


def test_data_url_images_are_decoded_and_unknown_types_rejected() -> None:
    block = codec.image_block(ImagePart(url="data:image/jpeg;base64,aGVsbG8="))
    assert block == {"image": {"format": "jpeg", "source": {"bytes": b"hello"}}}
    with pytest.raises(GatewayError) as caught:
        codec.image_block(ImagePart(data=b"x", media_type="image/tiff"))
    assert caught.value.kind is ErrorKind.INVALID_ARGUMENT
    assert "media_type" in caught.value.message


def test_only_a_system_prompt_is_rejected() -> None:
    request = ChatRequest(CLAUDE, [Message(Role.SYSTEM, (TextPart("x"),))])
    with pytest.raises(GatewayError, match="messages"):
        codec.converse_request(request, CLAUDE)


def test_legacy_cohere_command_gets_a_prompt_body() -> None:
    body = codec.invoke_body(Family.COHERE, CompletionRequest("cohere.command-text-v14", "hi"), 10)
    assert body == {"prompt": "hi", "max_tokens": 10}
    with pytest.raises(GatewayError, match="Converse"):
        codec.invoke_body(Family.OTHER, CompletionRequest("arn:x", "hi"), 10)


def test_whole_claude_invoke_response_with_thinking_and_tools() -> None:
    decoder = codec.InvokeDecoder(Family.ANTHROPIC, CLAUDE)
    events = decoder.response(
        {
            "id": "msg_1",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "s"},
                {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}},
            ],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 5, "output_tokens": 7, "cache_read_input_tokens": 100},
        }
    )
    finish = events[-1]
    assert isinstance(finish, ProviderFinish)
    assert (finish.reason, finish.response_id) == (FinishReason.TOOL_CALLS, "msg_1")
    usage = events[-2].usage  # type: ignore[union-attr]
    assert (usage.input_tokens, usage.cache_read_tokens) == (105, 100)


def test_claude_stream_tool_and_thinking_chunks() -> None:
    decoder = codec.InvokeDecoder(Family.ANTHROPIC, CLAUDE)
    chunks: list[dict[str, Any]] = [
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "ok"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sig"}},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "t", "name": "f"},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '{"a":'},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": "1}"},
        },
        {"type": "content_block_stop", "index": 1},
    ]
    events = [e for chunk in chunks for e in decoder.feed(chunk)]
    names = [type(e).__name__ for e in events]
    assert names == [
        "ReasoningDelta",
        "ReasoningDelta",
        "ToolCallStart",
        "ToolCallDelta",
        "ToolCallDelta",
        "ToolCallEnd",
    ]
    assert events[-1].call.arguments_json == '{"a":1}'  # type: ignore[union-attr]
    with pytest.raises(GatewayError) as caught:
        decoder.feed({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}})
    assert caught.value.kind is ErrorKind.UNAVAILABLE


def test_huge_numbers_do_not_escape_as_overflow() -> None:
    assert codec.titan_embed_response({"embedding": [1, 10**400, 0.5], "inputTextTokenCount": 2**70}) == (
        [1.0, 0.5],
        0,
    )


def test_stream_chunk_payload_rejects_non_json() -> None:
    assert codec.stream_chunk_payload({"chunk": {"bytes": b'{"a": 1}'}}) == {"a": 1}
    assert codec.stream_chunk_payload({"internalServerException": {}}) is None
    for bad in (b"not json", b"[1, 2]", b"\xff\xfe", b"[" * 100_000 + b"]" * 100_000):
        with pytest.raises(GatewayError, match="malformed"):
            codec.stream_chunk_payload({"chunk": {"bytes": bad}})


# --- robustness: any JSON-shaped input decodes to events or a GatewayError, nothing else ------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
event_keys = st.sampled_from(
    [
        "messageStart",
        "contentBlockStart",
        "contentBlockDelta",
        "contentBlockStop",
        "messageStop",
        "metadata",
        "type",
    ]
)
events = st.dictionaries(event_keys, json_values, max_size=3)


@settings(max_examples=200, deadline=None)
@given(st.lists(events, max_size=6))
def test_converse_decoder_never_raises_anything_but_gateway_errors(stream: list[dict[str, Any]]) -> None:
    decoder = codec.ConverseStreamDecoder(CLAUDE)
    try:
        for event in stream:
            decoder.feed(event)
        decoder.end()
    except GatewayError:
        pass


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(list(Family)[:-1]),
    st.lists(st.dictionaries(st.text(max_size=20), json_values), max_size=4),
)
# Block and call indexes that are not hashable, which once escaped as TypeError.
@example(
    Family.ANTHROPIC, [{"type": "content_block_start", "index": [1], "content_block": {"type": "tool_use"}}]
)
@example(Family.NOVA, [{"contentBlockStart": {"contentBlockIndex": {}, "start": {"toolUse": {"name": "f"}}}}])
@example(Family.GPT_OSS, [{"choices": [{"delta": {"tool_calls": [{"index": [0], "function": {}}]}}]}])
def test_invoke_decoders_never_raise_anything_but_gateway_errors(
    family: Family, chunks: list[dict[str, Any]]
) -> None:
    decoder = codec.InvokeDecoder(family, "m")
    try:
        for chunk in chunks:
            decoder.feed(chunk)
        decoder.response(chunks[0] if chunks else {})
    except GatewayError:
        pass


# --- the fake's eventstream frames decode with botocore's own parser ---------------------------


def test_frames_decode_with_botocore() -> None:
    buffer = EventStreamBuffer()
    data = event_frame("contentBlockDelta", {"delta": {"text": "hé"}}) + exception_frame(
        "ThrottlingException", "slow"
    )
    # Feed in awkward pieces, as a network would deliver them.
    messages = []
    for start in range(0, len(data), 7):
        buffer.add_data(data[start : start + 7])
        messages.extend(buffer)
    first, second = messages
    assert first.headers == {
        ":event-type": "contentBlockDelta",
        ":content-type": "application/json",
        ":message-type": "event",
    }
    assert json.loads(first.payload) == {"delta": {"text": "hé"}}
    assert second.headers[":exception-type"] == "throttlingException"
    assert second.to_response_dict()["status_code"] == 400


def test_a_corrupted_frame_fails_botocores_crc_check() -> None:
    frame = bytearray(encode_message({":message-type": "event"}, b"{}"))
    frame[-6] ^= 0xFF  # flip a payload byte: the message CRC no longer matches
    buffer = EventStreamBuffer()
    buffer.add_data(bytes(frame))
    with pytest.raises(ChecksumMismatch):
        list(buffer)
    total, headers_length = struct.unpack("!II", frame[:8])
    assert total == len(frame)
    assert headers_length == len(frame) - 12 - 2 - 4


# --- the gateway's own frame reader agrees with botocore's ------------------------------------


def test_frame_reader_reads_the_same_events_as_botocore_in_any_pieces() -> None:
    data = event_frame("contentBlockDelta", {"delta": {"text": "hé"}}) + chunk_frame({"outputText": "x"})
    reader = FrameReader()
    events = [event for start in range(0, len(data), 5) for event in reader.feed(data[start : start + 5])]
    reader.end()
    assert events == [
        {"contentBlockDelta": {"delta": {"text": "hé"}}},
        {"chunk": {"bytes": b'{"outputText": "x"}'}},
    ]


def test_frame_reader_delivers_events_before_an_exception_frame_then_raises_it() -> None:
    reader = FrameReader()
    frames = reader.feed(
        event_frame("messageStart", {"role": "assistant"}) + exception_frame("ThrottlingException", "slow")
    )
    assert next(frames) == {"messageStart": {"role": "assistant"}}
    with pytest.raises(AwsError) as caught:
        next(frames)
    error = translate(caught.value, "bedrock", CLAUDE, "us-east-1")
    assert (error.kind, error.retryable) == (ErrorKind.RESOURCE_EXHAUSTED, True)
    assert "slow" in error.message


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(bytes(encode_message({":message-type": "event"}, b"{}"))[:-1] + b"\x00", id="bad-crc"),
        pytest.param(b"\xff\xff\xff\xff" + b"\x00" * 12, id="absurd-length"),
        pytest.param(event_frame("chunk", {"bytes": "!!"}), id="bad-base64"),
    ],
)
def test_frame_reader_refuses_malformed_frames_as_unavailable(data: bytes) -> None:
    with pytest.raises(GatewayError) as caught:
        list(FrameReader().feed(data))
    assert caught.value.kind is ErrorKind.UNAVAILABLE


def test_a_stream_that_stops_inside_a_frame_is_cut() -> None:
    reader = FrameReader()
    assert list(reader.feed(event_frame("messageStop", {"stopReason": "end_turn"})[:-3])) == []
    with pytest.raises(GatewayError, match="inside a frame"):
        reader.end()


# --- error translation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (RuntimeError("bug"), ErrorKind.INTERNAL),
        (AwsError("SomethingNew", "m", 503), ErrorKind.UNAVAILABLE),
        (AwsError("", "", 429), ErrorKind.RESOURCE_EXHAUSTED),
        (AwsError("ExpiredTokenException", "expired", 403), ErrorKind.UNAUTHENTICATED),
        (AwsError("modelTimeoutException", "slow"), ErrorKind.DEADLINE_EXCEEDED),  # a stream member
        (AwsError("ValidationException", "modelId too long", 400), ErrorKind.INVALID_ARGUMENT),
    ],
)
def test_translate(exc: Exception, kind: ErrorKind) -> None:
    error = translate(exc, "bedrock", CLAUDE, "us-east-1")
    assert error.kind is kind
    assert error.provider == "bedrock"
    assert "secret" not in error.message


@pytest.mark.parametrize(
    ("code", "status", "retryable"),
    [
        ("ThrottlingException", 429, True),
        ("ServiceUnavailableException", 503, True),
        ("ModelNotReadyException", 429, True),
        ("ValidationException", 400, False),
        ("AccessDeniedException", 403, False),
    ],
)
def test_router_retries_throttling_but_not_validation(code: str, status: int, retryable: bool) -> None:
    """The router decides by `retryable`: a throttled call goes to the next try or deployment, a
    request Bedrock rejected would be rejected again."""
    assert translate(AwsError(code, "m", status), "bedrock", CLAUDE, "us-east-1").retryable is retryable


def test_automatic_cache_points_after_system_and_the_last_two_user_turns() -> None:
    turns = [
        Message(Role.SYSTEM, (TextPart("rules"),)),
        Message(Role.USER, (TextPart("one"),)),
        Message(Role.ASSISTANT, (TextPart("a"),)),
        Message(Role.USER, (TextPart("two"),)),
        Message(Role.ASSISTANT, (TextPart("b"),)),
        Message(Role.USER, (TextPart("three"),)),
    ]
    system, messages = codec.converse_messages(turns, prompt_caching=True)
    assert system == [{"text": "rules"}, {"cachePoint": {"type": "default"}}]
    ends = [(m["role"], m["content"][-1]) for m in messages]
    assert ends == [
        ("user", {"text": "one"}),
        ("assistant", {"text": "a"}),
        ("user", {"cachePoint": {"type": "default"}}),
        ("assistant", {"text": "b"}),
        ("user", {"cachePoint": {"type": "default"}}),
    ]


@pytest.mark.parametrize(
    ("max_tokens", "requested", "budget"),
    [(None, 0, 4096), (None, 500, 1024), (8000, 0, 4000), (2000, 0, 1024), (8000, 2048, 2048)],
)
def test_claude_thinking_budget_follows_the_anthropic_rules(
    max_tokens: int | None, requested: int, budget: int
) -> None:
    """The same request gets the same thinking budget on Bedrock as on Anthropic's own API: half
    of max_tokens by default, at least 1024; without a maximum (Converse needs none) 4096."""
    user = Message(Role.USER, (TextPart("x"),))
    reasoning = ReasoningOptions(enabled=True, budget_tokens=requested)
    request = ChatRequest(CLAUDE_THINKING, [user], max_tokens=max_tokens, reasoning=reasoning)
    fields = codec.reasoning_fields(request, converse_features(CLAUDE_THINKING))
    assert fields == {"thinking": {"type": "enabled", "budget_tokens": budget}}


@pytest.mark.parametrize(
    ("max_tokens", "choice", "field"),
    [(2000, None, "max_tokens"), (None, ToolChoice(ToolChoiceMode.REQUIRED), "tool_choice")],
)
def test_claude_thinking_requests_anthropic_refuses_are_refused_before_sending(
    max_tokens: int | None, choice: ToolChoice | None, field: str
) -> None:
    user = Message(Role.USER, (TextPart("x"),))
    request = ChatRequest(
        CLAUDE_THINKING,
        [user],
        max_tokens=max_tokens,
        tools=[Tool("f", "", {"type": "object"})],
        tool_choice=choice,
        reasoning=ReasoningOptions(enabled=True, budget_tokens=3000),
    )
    with pytest.raises(GatewayError, match=f"^{field}:") as info:
        codec.converse_request(request, CLAUDE_THINKING)
    assert info.value.kind is ErrorKind.INVALID_ARGUMENT


# --- every InvokeModel family against every other family's payloads (issue 20.3) --------------

# The fake's family names -> the gateway's families.
FAKE_FAMILIES = {
    "anthropic": Family.ANTHROPIC,
    "nova": Family.NOVA,
    "titan": Family.TITAN,
    "llama": Family.LLAMA,
    "mistral": Family.MISTRAL,
    "mistral-chat": Family.MISTRAL_CHAT,
    "cohere": Family.COHERE_CHAT,
    "cohere-command": Family.COHERE,
    "jamba": Family.JAMBA,
    "gpt-oss": Family.GPT_OSS,
    "deepseek": Family.DEEPSEEK,
    "writer": Family.WRITER,
}
# Families whose Bedrock pages document the same response body (OpenAI's chat completion object).
SAME_SHAPE = set(bedrock_invoke_bodies.CHAT_COMPLETIONS)
FOREIGN_PAIRS = [
    (mine, theirs)
    for mine in FAKE_FAMILIES
    for theirs in FAKE_FAMILIES
    if mine != theirs and not {mine, theirs} <= SAME_SHAPE
]
MODEL = "us.vendor.model-v1:0"


def test_every_family_is_covered() -> None:
    with_codec = {f for f in Family if f is not Family.OTHER}
    assert set(FAKE_FAMILIES.values()) == with_codec


@pytest.mark.parametrize(("mine", "theirs"), FOREIGN_PAIRS)
def test_a_body_of_another_family_is_unavailable_never_an_empty_success(mine: str, theirs: str) -> None:
    decoder = codec.InvokeDecoder(FAKE_FAMILIES[mine], MODEL)
    with pytest.raises(GatewayError) as caught:
        decoder.response(invoke_response(theirs, "Hello"))
    assert caught.value.kind is ErrorKind.UNAVAILABLE
    assert MODEL in caught.value.message


@pytest.mark.parametrize(("mine", "theirs"), FOREIGN_PAIRS)
def test_a_stream_of_another_family_is_unavailable_never_a_clean_end(mine: str, theirs: str) -> None:
    decoder = codec.InvokeDecoder(FAKE_FAMILIES[mine], MODEL)
    with pytest.raises(GatewayError) as caught:
        feed_all(decoder, invoke_stream_chunks(theirs, ["Hello", " there"]))
    assert caught.value.kind is ErrorKind.UNAVAILABLE
    assert MODEL in caught.value.message


def feed_all(decoder: codec.InvokeDecoder, chunks: list[dict[str, Any]]) -> None:
    for chunk in chunks:
        decoder.feed(chunk)
    decoder.end()


@pytest.mark.parametrize("family", sorted(FAKE_FAMILIES))
def test_each_family_reads_its_own_payloads(family: str) -> None:
    whole = codec.InvokeDecoder(FAKE_FAMILIES[family], MODEL).response(invoke_response(family, "Hello"))
    assert [e.text for e in whole if isinstance(e, TextDelta)] == ["Hello"]
    decoder = codec.InvokeDecoder(FAKE_FAMILIES[family], MODEL)
    streamed = [e for c in invoke_stream_chunks(family, ["Hello", " there"]) for e in decoder.feed(c)]
    ending = decoder.end()
    assert "".join(e.text for e in streamed if isinstance(e, TextDelta)) == "Hello there"
    assert isinstance(ending[-1], ProviderFinish)
    assert ending[-1].reason is FinishReason.STOP


@pytest.mark.parametrize("family", sorted(FAKE_FAMILIES))
def test_an_empty_or_unknown_body_is_unavailable_naming_what_is_missing(family: str) -> None:
    for body in ({}, {"unknown": 1}):
        decoder = codec.InvokeDecoder(FAKE_FAMILIES[family], MODEL)
        with pytest.raises(GatewayError) as caught:
            decoder.response(body)
        assert caught.value.kind is ErrorKind.UNAVAILABLE
        assert MODEL in caught.value.message
        assert "no " in caught.value.message  # names what was missing


def test_metrics_win_over_the_models_own_counts_and_both_stay_in_raw() -> None:
    decoder = codec.InvokeDecoder(Family.ANTHROPIC, CLAUDE)
    for chunk in bedrock_invoke_bodies.claude_disagreeing_chunks(130, 98):
        decoder.feed(chunk)
    usage_event = decoder.end()[-2]
    assert isinstance(usage_event, UsageEvent)
    assert (usage_event.usage.input_tokens, usage_event.usage.output_tokens) == (25, 98)
    assert usage_event.usage.raw["output_tokens"] == 130
    assert usage_event.usage.raw["amazon-bedrock-invocationMetrics"]["outputTokenCount"] == 98


def test_a_recorded_nova_tool_use_body_keeps_its_tool_call() -> None:
    events = codec.InvokeDecoder(Family.NOVA, "amazon.nova-pro-v1:0").response(
        bedrock_invoke_bodies.NOVA_TOOL_USE
    )
    (end,) = [e for e in events if isinstance(e, ToolCallEnd)]
    assert (end.call.id, end.call.name, json.loads(end.call.arguments_json)) == (
        "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q",
        "get_weather",
        {"city": "Paris"},
    )
    assert isinstance(events[-1], ProviderFinish)
    assert events[-1].reason is FinishReason.TOOL_CALLS


def test_claude_skips_event_types_it_does_not_know() -> None:
    decoder = codec.InvokeDecoder(Family.ANTHROPIC, CLAUDE)
    assert decoder.feed({"type": "some_future_event", "data": 1}) == []
    with pytest.raises(GatewayError, match="without a type"):
        decoder.feed({"generation": "hi"})


@pytest.mark.parametrize(
    ("pieces", "reasoning", "answer"),
    [
        (["<reasoning>Think.</reasoning>Hi"], "Think.", "Hi"),
        (["<", "reasoning>A", "B</", "reasoning>", "Hi"], "AB", "Hi"),
        (["  <reasoning>x</reasoning>y"], "x", "y"),
        (["Hi <reasoning>not a prefix</reasoning>"], "", "Hi <reasoning>not a prefix</reasoning>"),
        (["<reas", "on>"], "", "<reason>"),
        (["<reasoning>never closed"], "never closed", ""),
    ],
)
def test_gpt_oss_reasoning_tags_are_split_across_chunks(
    pieces: list[str], reasoning: str, answer: str
) -> None:
    decoder = codec.InvokeDecoder(Family.GPT_OSS, "openai.gpt-oss-20b-1:0")
    chunks = [{"choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]} for p in pieces]
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    events = [e for c in chunks for e in decoder.feed(c)] + decoder.end()
    assert "".join(e.text for e in events if isinstance(e, ReasoningDelta)) == reasoning
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == answer


def test_the_configured_default_max_tokens_is_capped_at_llamas_documented_maximum() -> None:
    request = CompletionRequest("meta.llama3-8b-instruct-v1:0", "hi")
    assert codec.invoke_body(Family.LLAMA, request, 4096)["max_gen_len"] == 2048
    request.max_tokens = 3000  # the caller's own value goes as given: Bedrock's validation answers
    assert codec.invoke_body(Family.LLAMA, request, 4096)["max_gen_len"] == 3000


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("FINISH", FinishReason.STOP),  # Titan
        ("STOP_CRITERIA_MET", FinishReason.STOP),
        ("LENGTH", FinishReason.LENGTH),
        ("CONTENT_FILTERED", FinishReason.CONTENT_FILTER),
        ("COMPLETE", FinishReason.STOP),  # Cohere
        ("MAX_TOKENS", FinishReason.LENGTH),
        ("ERROR_LIMIT", FinishReason.LENGTH),
        ("ERROR_TOXIC", FinishReason.CONTENT_FILTER),
        ("TOOL_CALL", FinishReason.TOOL_CALLS),
        ("tool_calls", FinishReason.TOOL_CALLS),  # Mistral chat, gpt-oss, Jamba
        ("content_filter", FinishReason.CONTENT_FILTER),
        ("RAG_QUERY_WHEN_RAG_DISABLED", FinishReason.OTHER),
    ],
)
def test_every_familys_stop_values(raw: str, reason: FinishReason) -> None:
    assert codec.finish_reason(raw) is reason


# --- no silent drops on InvokeModel (issue 17.3): every CompleteRequest field reaches the body -----


@pytest.mark.parametrize("family", sorted(CODECS, key=lambda f: f.value))
@pytest.mark.parametrize(
    "fields", [{"temperature": 0.3}, {"top_p": 0.5}, {"max_tokens": 77}, {"stop": ["END"]}], ids=str
)
def test_every_complete_request_field_reaches_each_familys_body_or_is_refused(
    family: Family, fields: dict[str, Any]
) -> None:
    model = f"model-of-{family.value}"
    baseline = codec.invoke_body(family, CompletionRequest(model, "hi"), 100)
    request = CompletionRequest(model, "hi", **fields)
    if family in (Family.LLAMA, Family.MISTRAL_CHAT) and "stop" in fields:  # no stop field documented
        with pytest.raises(GatewayError, match=rf"^stop: Bedrock model '{model}'") as refused:
            codec.invoke_body(family, request, 100)
        assert refused.value.kind is ErrorKind.FAILED_PRECONDITION
        return
    body = codec.invoke_body(family, request, 100)
    assert body != baseline, f"{fields} was dropped from the {family.value} body"


def test_blocks_bedrock_never_closed_go_out_at_the_end_never_dropped() -> None:
    """A server tool's block and a client call without their contentBlockStop, then messageStop:
    the block reaches the client as it came, the call flagged incomplete (its arguments may be
    cut), before the finish."""
    decoder = codec.ConverseStreamDecoder(CLAUDE)
    stream = [
        {"contentBlockStart": {"contentBlockIndex": 0, "start": {"toolResult": {"toolUseId": "srv_1"}}}},
        {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"toolResult": [{"text": "42"}]}}},
        {
            "contentBlockStart": {
                "contentBlockIndex": 1,
                "start": {"toolUse": {"toolUseId": "t1", "name": "f"}},
            }
        },
        {"contentBlockDelta": {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"a": '}}}},
        {"messageStop": {"stopReason": "tool_use"}},
    ]
    for event in stream:
        decoder.feed(event)
    *ended, finish = decoder.end()
    assert ended[0] == RawContent("toolResult", {"toolUseId": "srv_1", "content": [{"text": "42"}]})
    (call_end,) = [e for e in ended if isinstance(e, ToolCallEnd)]
    assert (call_end.call.id, call_end.call.arguments_json, call_end.call.incomplete) == (
        "t1",
        '{"a": ',
        True,
    )
    assert isinstance(finish, ProviderFinish)
