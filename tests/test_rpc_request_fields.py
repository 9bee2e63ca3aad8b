"""Every request field crosses the gRPC edge into the domain request the provider receives."""

from __future__ import annotations

import grpc
import pytest
from rpc_util import chat, collect_until_error, kinds, rpc_error, runs, user

from provider_gateway import domain as d
from provider_gateway.providers.mock import MockModel
from provider_gateway.v1 import provider_service_pb2 as pb


def full_request() -> pb.ChatRequest:
    request = pb.ChatRequest(
        model="mock/echo",
        provider="mock",
        fallbacks=["mock/reasoner"],
        messages=[
            pb.Message(
                role=pb.ROLE_SYSTEM, content=[pb.ContentPart(text="Be brief.", cache_breakpoint=True)]
            ),
            pb.Message(
                role=pb.ROLE_USER,
                name="ann",
                content=[
                    pb.ContentPart(text="What is in these?"),
                    pb.ContentPart(image=pb.Image(data=b"\x89PNG\r\n\x1a\n", media_type="image/png")),
                    pb.ContentPart(image=pb.Image(url="https://example.com/cat.jpg")),
                ],
            ),
            pb.Message(
                role=pb.ROLE_ASSISTANT,
                content=[
                    pb.ContentPart(reasoning=pb.Reasoning(text="Look closer.", signature="sig")),
                    pb.ContentPart(tool_call=pb.ToolCall(id="c1", name="zoom")),
                ],
            ),
            pb.Message(
                role=pb.ROLE_TOOL,
                content=[
                    pb.ContentPart(
                        tool_result=pb.ToolResult(
                            tool_call_id="c1", content="a cat", is_error=False, name="zoom"
                        )
                    )
                ],
            ),
        ],
        tools=[pb.Tool(name="zoom", description="Zoom in")],
        tool_choice=pb.ToolChoice(mode=pb.ToolChoice.MODE_TOOL, name="zoom"),
        temperature=0.5,
        top_p=0.9,
        max_tokens=5,
        stop=["END"],
        reasoning=pb.ReasoningOptions(
            enabled=True, effort=pb.ReasoningOptions.EFFORT_HIGH, budget_tokens=1024
        ),
        response_format=pb.ResponseFormat(
            type=pb.ResponseFormat.TYPE_JSON_SCHEMA, schema_name="answer", strict=True
        ),
        metadata={"trace": "t-1"},
    )
    request.tools[0].parameters.update({"type": "object", "properties": {"factor": {"type": "integer"}}})
    request.response_format.json_schema.update({"type": "object", "required": ["animal"]})
    request.provider_options.update({"seed": 7, "nested": {"ratio": 0.5, "list": [1, 2]}})
    return request


async def test_a_full_chat_request_reaches_the_provider_intact(gateway) -> None:
    response = await gateway.stub.Chat(full_request())
    assert response.finish.reason == pb.FINISH_REASON_LENGTH  # echo has no tool calls; max_tokens=5
    seen = gateway.provider("mock").stats.requests[-1]
    assert isinstance(seen, d.ChatRequest)
    assert (seen.model, seen.provider, seen.fallbacks) == ("echo", "mock", ["mock/reasoner"])
    system, question, assistant, tool = seen.messages
    assert system == d.Message(d.Role.SYSTEM, (d.TextPart("Be brief.", cache_breakpoint=True),))
    assert question == d.Message(
        d.Role.USER,
        (
            d.TextPart("What is in these?"),
            d.ImagePart(data=b"\x89PNG\r\n\x1a\n", media_type="image/png"),
            d.ImagePart(url="https://example.com/cat.jpg"),
        ),
        name="ann",
    )
    assert assistant.content == (
        d.ReasoningPart("Look closer.", "sig"),
        d.ToolCallPart(d.ToolCall("c1", "zoom", "{}")),
    )
    assert tool.content == (d.ToolResultPart("c1", "a cat", False, "zoom"),)
    assert seen.tools == [
        d.Tool("zoom", "Zoom in", {"type": "object", "properties": {"factor": {"type": "integer"}}})
    ]
    assert seen.tool_choice == d.ToolChoice(d.ToolChoiceMode.TOOL, "zoom")
    assert (seen.temperature, seen.top_p, seen.max_tokens, seen.stop) == (0.5, pytest.approx(0.9), 5, ["END"])
    assert seen.reasoning == d.ReasoningOptions(True, "high", 1024)
    assert seen.response_format == d.ResponseFormat(
        d.ResponseFormatType.JSON_SCHEMA, "answer", {"type": "object", "required": ["animal"]}, True
    )
    assert seen.provider_options == {"seed": 7, "nested": {"ratio": 0.5, "list": [1, 2]}}
    assert seen.metadata == {"trace": "t-1"}


async def test_unset_optional_fields_stay_unset(gateway) -> None:
    await gateway.stub.Chat(chat("mock/echo"))
    seen = gateway.provider("mock").stats.requests[-1]
    assert (seen.temperature, seen.top_p, seen.max_tokens) == (None, None, None)
    assert (seen.tool_choice, seen.reasoning, seen.response_format) == (None, None, None)


async def test_complete_request_fields(gateway) -> None:
    request = pb.CompleteRequest(
        model="echo", prompt="p", provider="mock", temperature=1.0, stop=["x"], metadata={"k": "v"}
    )
    request.provider_options.update({"raw": True})
    await gateway.stub.Complete(request)
    seen = gateway.provider("mock").stats.requests[-1]
    assert isinstance(seen, d.CompletionRequest)
    assert (seen.prompt, seen.temperature, seen.stop, seen.metadata) == ("p", 1.0, ["x"], {"k": "v"})
    assert seen.provider_options == {"raw": True}


async def test_bad_content_parts_name_the_field(gateway) -> None:
    empty_part = pb.ChatRequest(
        model="mock/echo", messages=[pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart()])]
    )
    error = await rpc_error(gateway.stub.Chat(empty_part))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("messages[0].content[0]: empty content part")
    no_source = pb.ContentPart(image=pb.Image(media_type="image/png"))
    error = await rpc_error(
        gateway.stub.Chat(
            pb.ChatRequest(
                model="mock/echo", messages=[user("x"), pb.Message(role=pb.ROLE_USER, content=[no_source])]
            )
        )
    )
    assert error.details() == "messages[1].content[0].image: set data or url"
    no_type = pb.ContentPart(image=pb.Image(data=b"\x89PNG\r\n\x1a\n"))
    error = await rpc_error(
        gateway.stub.Chat(
            pb.ChatRequest(model="mock/echo", messages=[pb.Message(role=pb.ROLE_USER, content=[no_type])])
        )
    )
    assert error.details().startswith("messages[0].content[0].image.media_type: required with data")


async def test_bad_sampling_values_are_invalid_argument(gateway) -> None:
    for fields, field in [
        ({"temperature": 3.0}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"max_tokens": -1}, "max_tokens"),
    ]:
        error = await rpc_error(gateway.stub.ChatStream(chat("mock/echo", **fields)))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.details().startswith(f"{field}: must be")


async def test_models_set_at_run_time_stream_reasoning_with_delays(gateway) -> None:
    gateway.provider("mock").set_model("thinker", MockModel(tokens=2, reasoning_tokens=2, token_delay_ms=1))
    events = [e async for e in gateway.stub.ChatStream(chat("mock/thinker"))]
    # Two tokens of each, which the relay may merge when one waits for a write (server/coalesce.py).
    assert runs(kinds(events)) == ["reasoning_delta", "text_delta", "usage", "finish"]
    reasoning = "".join(e.reasoning_delta.text for e in events if e.HasField("reasoning_delta"))
    text = "".join(e.text_delta.text for e in events if e.HasField("text_delta"))
    assert len(reasoning.split()) == len(text.split()) == 2


async def test_complete_stream_errors_end_the_stream_with_a_status(gateway) -> None:
    gateway.provider("mock").set_model("limited", MockModel(fault="rate_limit", retry_after_ms=20))
    events, error = await collect_until_error(
        gateway.stub.CompleteStream(pb.CompleteRequest(model="mock/limited", prompt="x"))
    )
    assert events == []
    assert error is not None
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert dict(error.trailing_metadata())["retry-after-ms"] == "20"
