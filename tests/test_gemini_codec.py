"""The Gemini codec alone: request bodies, stream chunks, usage and google.rpc.Status errors."""

from __future__ import annotations

from unittest import mock

import pytest
from made_up_ids_support import untagged_event

from provider_gateway.domain import (
    ChatRequest,
    CountTokensRequest,
    FinishReason,
    ImagePart,
    Message,
    ProviderFinish,
    ReasoningDelta,
    ReasoningOptions,
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
    UsageEvent,
)
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.providers.base import fold
from provider_gateway.providers.gemini import codec

WEATHER = Tool("get_weather", "Weather", {"type": "object"})


def test_body_roles_system_instruction_tools_and_function_response_name() -> None:
    messages = [
        Message(Role.SYSTEM, (TextPart("Be brief."),)),
        Message(Role.USER, (TextPart("Hi"), ImagePart(data=b"abc", media_type="image/png"))),
        Message(
            Role.ASSISTANT, (ToolCallPart(ToolCall("get_weather-0", "get_weather", '{"city":"Paris"}')),)
        ),
        Message(Role.TOOL, (ToolResultPart("get_weather-0", '{"temp":18}'),)),
        Message(Role.TOOL, (ToolResultPart("get_weather-0", "not json", is_error=True),)),
    ]
    request = ChatRequest(
        "gemini-x",
        messages,
        tools=[WEATHER],
        tool_choice=ToolChoice(ToolChoiceMode.TOOL, "get_weather"),
        max_tokens=100,
        temperature=0.3,
        top_p=0.9,
        stop=["END"],
        reasoning=ReasoningOptions(True, budget_tokens=512),
        response_format=ResponseFormat(ResponseFormatType.JSON_SCHEMA, json_schema={"type": "object"}),
    )
    body = codec.build_generate_body(request)
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert body["contents"][0]["parts"][1] == {"inlineData": {"mimeType": "image/png", "data": "YWJj"}}
    assert body["contents"][1]["parts"][0] == {
        "functionCall": {"name": "get_weather", "args": {"city": "Paris"}}
    }
    responses = body["contents"][2]["parts"]
    assert responses[0] == {"functionResponse": {"name": "get_weather", "response": {"temp": 18}}}
    assert responses[1]["functionResponse"]["response"] == {"error": {"content": "not json"}}
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {"name": "get_weather", "description": "Weather", "parameters": {"type": "object"}}
            ]
        }
    ]
    assert body["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    }
    assert body["generationConfig"] == {
        "maxOutputTokens": 100,
        "temperature": 0.3,
        "topP": 0.9,
        "stopSequences": ["END"],
        "responseMimeType": "application/json",
        "responseJsonSchema": {"type": "object"},
        "thinkingConfig": {"includeThoughts": True, "thinkingBudget": 512},
    }


@pytest.mark.parametrize(
    ("mode", "expected"),
    [(ToolChoiceMode.NONE, {"mode": "NONE"}), (ToolChoiceMode.REQUIRED, {"mode": "ANY"})],
)
def test_tool_config_modes(mode: ToolChoiceMode, expected: dict[str, str]) -> None:
    request = ChatRequest(
        "m", [Message(Role.USER, (TextPart("x"),))], tools=[WEATHER], tool_choice=ToolChoice(mode)
    )
    assert codec.build_generate_body(request)["toolConfig"] == {"functionCallingConfig": expected}


@pytest.mark.parametrize("choice", [None, ToolChoice(ToolChoiceMode.AUTO)])
def test_auto_tool_choice_leaves_gemini_its_default(choice: ToolChoice | None) -> None:
    """Gemini's default functionCallingConfig mode is AUTO: the body says nothing rather than ANY."""
    request = ChatRequest("m", [Message(Role.USER, (TextPart("x"),))], tools=[WEATHER], tool_choice=choice)
    body = codec.build_generate_body(request)
    assert "toolConfig" not in body
    assert body["tools"][0]["functionDeclarations"][0]["name"] == WEATHER.name


def test_named_tool_choice_is_any_with_allowed_names() -> None:
    request = ChatRequest(
        "m",
        [Message(Role.USER, (TextPart("x"),))],
        tools=[WEATHER],
        tool_choice=ToolChoice(ToolChoiceMode.TOOL, WEATHER.name),
    )
    assert codec.build_generate_body(request)["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [WEATHER.name]}
    }


def test_count_body_wraps_when_system_present() -> None:
    plain = codec.build_count_body(CountTokensRequest("m", text="hi"), "models/m")
    assert plain == {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    messages = [Message(Role.SYSTEM, (TextPart("s"),)), Message(Role.USER, (TextPart("u"),))]
    wrapped = codec.build_count_body(CountTokensRequest("m", messages=messages), "models/m")
    assert wrapped["generateContentRequest"]["model"] == "models/m"
    assert wrapped["generateContentRequest"]["systemInstruction"] == {"parts": [{"text": "s"}]}


def test_stream_synthesises_stable_ids_and_reports_usage() -> None:
    decoder = codec.GenerateStreamDecoder()
    chunks = [
        {
            "candidates": [
                {"content": {"role": "model", "parts": [{"text": "Let me think", "thought": True}]}}
            ]
        },
        {
            "candidates": [{"content": {"role": "model", "parts": [{"text": "Hello"}]}}],
            "modelVersion": "gemini-x",
            "responseId": "r1",
        },
        {
            "candidates": [
                {
                    "content": {
                        "role": "model",
                        "parts": [
                            {"functionCall": {"name": "f", "args": {"a": 1}}},
                            {"functionCall": {"name": "f", "args": {}}},
                        ],
                    },
                    "finishReason": "STOP",
                }
            ],
            "usageMetadata": {
                "promptTokenCount": 1200,
                "candidatesTokenCount": 20,
                "cachedContentTokenCount": 1000,
                "thoughtsTokenCount": 5,
            },
        },
    ]
    events = [untagged_event(e) for chunk in chunks for e in decoder.feed(chunk)] + decoder.end()
    assert events[:4] == [
        ReasoningDelta("Let me think"),
        TextDelta("Hello"),
        ToolCallStart(0, "f-0", "f"),  # made up: `f-<the answer's tag>_0`
        ToolCallDelta(0, '{"a":1}'),
    ]
    assert events[4] == ToolCallEnd(0, ToolCall("f-0", "f", '{"a":1}'))
    assert events[5] == ToolCallStart(1, "f-1", "f")
    usage = events[-2]
    assert isinstance(usage, UsageEvent)
    assert (
        usage.usage.input_tokens,
        usage.usage.output_tokens,
        usage.usage.cache_read_tokens,
        usage.usage.reasoning_tokens,
    ) == (1200, 25, 1000, 5)
    assert usage.usage.raw["promptTokenCount"] == 1200
    assert events[-1] == ProviderFinish(FinishReason.TOOL_CALLS, "STOP", "gemini-x", "r1")


def test_finish_reasons() -> None:
    decoder = codec.GenerateStreamDecoder()
    decoder.feed({"candidates": [{"finishReason": "MAX_TOKENS"}]})
    assert decoder.end()[-1].reason is FinishReason.LENGTH  # type: ignore[union-attr]
    blocked = codec.GenerateStreamDecoder()
    blocked.feed({"promptFeedback": {"blockReason": "SAFETY"}})
    assert blocked.end()[-1].reason is FinishReason.CONTENT_FILTER  # type: ignore[union-attr]


def test_status_error_with_retry_info() -> None:
    body = {
        "error": {
            "code": 429,
            "message": "Quota exceeded",
            "status": "RESOURCE_EXHAUSTED",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure"},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"},
            ],
        }
    }
    error = codec.error_from_body(body, status=429)
    assert (error.kind, error.retry_after, error.retryable) == (ErrorKind.RESOURCE_EXHAUSTED, 7.0, True)
    assert codec.error_from_body({}, status=404).kind is ErrorKind.NOT_FOUND
    assert (
        codec.error_from_body({"error": {"status": "PERMISSION_DENIED", "message": "no"}}, status=403).kind
        is ErrorKind.PERMISSION_DENIED
    )


def disabled(metadata: dict[str, str]) -> dict[str, object]:
    info = {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "SERVICE_DISABLED",
        "metadata": metadata,
    }
    message = "Vertex AI API has not been used in project 42 before or it is disabled."
    return {"error": {"code": 403, "message": message, "status": "PERMISSION_DENIED", "details": [info]}}


def test_a_disabled_api_is_enabled_in_its_project_not_fixed_by_another_key() -> None:
    """A 403 SERVICE_DISABLED (here in an error chunk, as `error_from_body` reads one) says which API
    to enable in which project; without an activation URL, where the console does it."""
    body = disabled(
        {"consumer": "projects/42", "service": "aiplatform.googleapis.com", "serviceTitle": "Vertex AI API"}
    )
    error = codec.error_from_body(body, status=403)
    assert error.kind is ErrorKind.PERMISSION_DENIED
    assert "enable the Vertex AI API in Google Cloud project 42 (APIs & Services" in error.message
    assert "check the provider key" not in error.message
    assert "has not been used in project 42" in error.message  # Google's words stay


def test_a_disabled_api_message_quotes_no_key() -> None:
    body = disabled(
        {"activationUrl": "https://console.developers.google.com/apis?key=AIzaSyA1234567890abcdefghijklmnop"}
    )
    error = codec.error_from_body(body, status=403)
    assert "enable the API in the Google Cloud project of the key at https://" in error.message
    assert "AIza" not in error.message


def test_a_disabled_api_advice_masks_the_providers_own_token_before_cutting() -> None:
    # An access token (no key-shaped pattern knows it: only the provider's secrets do), and one
    # that straddles the quoted length: masked whole, never cut into a piece the mask misses.
    token = "ya29.a0Aa" + "x" * 120
    body = disabled({"serviceTitle": f"Vertex AI API {token}", "consumer": "projects/" + "p" * 250 + token})
    advice = codec.service_disabled_advice(body, (token,))
    assert "ya29" not in advice
    assert "Vertex AI API ***" in advice


def test_parse_models() -> None:
    body = {
        "models": [
            {
                "name": "models/gemini-x",
                "displayName": "G",
                "inputTokenLimit": 10,
                "outputTokenLimit": 5,
                "supportedGenerationMethods": ["generateContent", "countTokens"],
                "thinking": True,
            }
        ]
    }
    (model,) = codec.parse_models(body)
    assert (model.id, model.context_window, model.reasoning, model.embeddings) == (
        "gemini-x",
        10,
        True,
        False,
    )


def test_provider_options_merge_into_the_body() -> None:
    request = ChatRequest(
        "m",
        [Message(Role.USER, (TextPart("x"),))],
        temperature=0.1,
        provider_options={
            "generationConfig": {"topK": 5},
            "safetySettings": [{"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "BLOCK_NONE"}],
        },
    )
    body = codec.build_generate_body(request)
    assert body["generationConfig"] == {"temperature": 0.1, "topK": 5}
    assert body["safetySettings"][0]["threshold"] == "BLOCK_NONE"


def test_thought_signature_round_trips_on_the_function_call() -> None:
    decoder = codec.GenerateStreamDecoder()
    part = {"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "c2ln"}
    events = decoder.feed(
        {"candidates": [{"content": {"role": "model", "parts": [{"text": "plan", "thought": True}, part]}}]}
    )
    assert events[:2] == [ReasoningDelta("plan"), ReasoningDelta("", signature="c2ln")]
    # The client sends the accumulated reasoning back with the call: the signature lands on the call.
    assistant = Message(
        Role.ASSISTANT,
        (ReasoningPart("plan", signature="c2ln"), ToolCallPart(ToolCall("f-0", "f", "{}"))),
    )
    contents, _ = codec.convert_messages([Message(Role.USER, (TextPart("q"),)), assistant])
    assert contents[1]["parts"] == [
        {"text": "plan", "thought": True},
        {"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "c2ln"},
    ]


def _fold_stream(chunks: list[dict[str, object]]) -> object:
    decoder = codec.GenerateStreamDecoder(provider="g")
    events = [e for chunk in chunks for e in decoder.feed(chunk)]
    return fold([*events, *decoder.end()])


SIGNED_CALL = {"functionCall": {"name": "f", "args": {"a": 1}}, "thoughtSignature": "sig"}
USAGE_METADATA = {
    "promptTokenCount": 100,
    "cachedContentTokenCount": 60,
    "candidatesTokenCount": 5,
    "thoughtsTokenCount": 3,
    "totalTokenCount": 108,
}


def test_a_unary_answer_reads_as_its_stream_folds() -> None:
    def chunk(parts: list[dict[str, object]], finish: str = "") -> dict[str, object]:
        candidate: dict[str, object] = {"content": {"role": "model", "parts": parts}}
        if finish:
            candidate["finishReason"] = finish
        return {
            "candidates": [candidate],
            "usageMetadata": USAGE_METADATA,
            "modelVersion": "m",
            "responseId": "r",
        }

    thought = {"text": "Hmm", "thought": True}
    stream = [chunk([thought]), chunk([{"text": "Hi "}]), chunk([{"text": "there"}, SIGNED_CALL], "STOP")]
    whole = chunk([thought, {"text": "Hi there"}, SIGNED_CALL], "STOP")
    with mock.patch.object(codec, "answer_tag", return_value="0" * 12):  # made-up ids: one tag for both
        unary = codec.GenerateStreamDecoder(provider="g").response(whole)
        assert unary == _fold_stream(stream)
    assert (unary.reasoning, unary.reasoning_signature, unary.finish.reason) == (
        "Hmm",
        "sig",
        FinishReason.TOOL_CALLS,
    )  # type: ignore[union-attr]
    assert (unary.usage.input_tokens, unary.usage.output_tokens, unary.usage.reasoning_tokens) == (100, 8, 3)


def test_a_blocked_prompt_answers_with_its_block_reason() -> None:
    body = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 4}}
    unary = codec.GenerateStreamDecoder(provider="g").response(body)
    assert (unary.text, unary.finish) == ("", ProviderFinish(FinishReason.CONTENT_FILTER, "SAFETY"))


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ({"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}, ErrorKind.UNAVAILABLE),
        (
            {"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}},
            ErrorKind.RESOURCE_EXHAUSTED,
        ),
        ({"usageMetadata": {"promptTokenCount": 4}}, ErrorKind.UNAVAILABLE),  # no candidates: no answer
        ([{"candidates": []}], ErrorKind.UNAVAILABLE),
    ],
)
def test_errors_in_a_200_unary_body_map_as_in_a_stream(body: object, kind: ErrorKind) -> None:
    with pytest.raises(GatewayError) as info:
        codec.GenerateStreamDecoder(provider="g").response(body)
    assert info.value.kind is kind


def test_iam_advice_names_vertex_roles_only_for_vertex_errors() -> None:
    # The role to grant is Vertex AI's: another Google API's IAM denial keeps Google's words alone.
    info = {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "IAM_PERMISSION_DENIED",
        "domain": "aiplatform.googleapis.com",
        "metadata": {"permission": "aiplatform.endpoints.predict", "resource": "projects/p/models/m"},
    }
    body = {"error": {"code": 403, "status": "PERMISSION_DENIED", "message": "denied", "details": [info]}}
    advice = codec.iam_denied_advice(body)
    assert "lacks aiplatform.endpoints.predict on projects/p/models/m" in advice
    assert "roles/aiplatform.user" in advice
    info["domain"] = "generativelanguage.googleapis.com"
    assert codec.iam_denied_advice(body) == ""
