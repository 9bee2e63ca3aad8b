"""Gemini 3 issues `functionCall.id` and wants it back: on the call when the conversation is
replayed, and on the matching `functionResponse` (google-genai's FunctionCall.id: "If populated,
the client to execute the function_call and return the response with the matching id"). An id the
gateway made up (Gemini 2 sends none) was never Gemini's and is not sent."""

from __future__ import annotations

from typing import Any

from replay.support import gateway_stream, replay_gateway

from provider_gateway.domain import (
    ChatRequest,
    Message,
    Role,
    TextPart,
    Tool,
    ToolCall,
    ToolCallPart,
    ToolResultPart,
)
from provider_gateway.fakes import Reply
from provider_gateway.providers.gemini.codec import build_generate_body
from provider_gateway.v1 import provider_service_pb2 as pb

MODEL = "gemini-3-pro-preview"


def history(call_id: str) -> ChatRequest:
    return ChatRequest(
        model=MODEL,
        messages=[
            Message(Role.USER, (TextPart("Weather in Rome?"),)),
            Message(Role.ASSISTANT, (ToolCallPart(ToolCall(call_id, "get_weather", '{"city":"Rome"}')),)),
            Message(Role.TOOL, (ToolResultPart(call_id, '{"t": 21}'),)),
        ],
        tools=[Tool("get_weather", "", {"type": "object"})],
    )


def function_parts(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    parts = [p for c in body["contents"] for p in c["parts"]]
    call = next(p["functionCall"] for p in parts if "functionCall" in p)
    response = next(p["functionResponse"] for p in parts if "functionResponse" in p)
    return call, response


def test_ids_gemini_issued_go_back_on_the_call_and_its_response_and_made_up_ones_do_not() -> None:
    call, response = function_parts(build_generate_body(history("fc_4162774")))
    assert (call.get("id"), response.get("id"), response["name"]) == (
        "fc_4162774",
        "fc_4162774",
        "get_weather",
    )
    for made_up in ("get_weather-0a1b2c3d4e5f_0", "get_weather-0"):  # this gateway's, and its earlier form
        call, response = function_parts(build_generate_body(history(made_up)))
        assert ("id" in call, "id" in response, response["name"]) == (False, False, "get_weather")
    # A result whose call is not in the history is named from the made-up id's part before its tag.
    orphan = Message(Role.TOOL, (ToolResultPart("get_weather-0a1b2c3d4e5f_3", "sunny"),))
    (content,) = build_generate_body(ChatRequest(model=MODEL, messages=[orphan]))["contents"]
    assert content["parts"][0]["functionResponse"]["name"] == "get_weather"


async def test_a_gemini_3_call_id_makes_the_round_trip_through_the_gateway() -> None:
    """Turn 1: Gemini calls with an id; the client gets that id, replays the call and its result,
    and Gemini gets the id back on both parts."""
    path = f"/v1beta/models/{MODEL}:streamGenerateContent"
    call = {
        "functionCall": {"id": "fc_r2d2", "name": "get_weather", "args": {"city": "Rome"}},
        "thoughtSignature": "c2ln",
    }
    answer = Reply.sse(
        [{"candidates": [{"content": {"role": "model", "parts": [call]}, "finishReason": "STOP"}]}],
        done=False,
    )
    final = Reply.sse(
        [
            {
                "candidates": [
                    {"content": {"role": "model", "parts": [{"text": "21C"}]}, "finishReason": "STOP"}
                ]
            }
        ],
        done=False,
    )
    tool = pb.Tool(name="get_weather", description="weather")
    tool.parameters.update({"type": "object"})
    first = pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text="Weather in Rome?")])
    async with replay_gateway("gemini") as (fake, stub):
        fake.script(path, answer, final)
        view, error = await gateway_stream(
            stub, pb.ChatRequest(model=f"gemini/{MODEL}", messages=[first], tools=[tool])
        )
        assert error is None, error.details()
        assert view.tool_calls == [("fc_r2d2", "get_weather", {"city": "Rome"})]
        replayed = [
            first,
            pb.Message(role=pb.ROLE_ASSISTANT, content=[
                pb.ContentPart(reasoning=pb.Reasoning(signature=view.reasoning[0].signature)),
                pb.ContentPart(tool_call=pb.ToolCall(id="fc_r2d2", name="get_weather", arguments_json='{"city":"Rome"}'))]),
            pb.Message(role=pb.ROLE_TOOL, content=[pb.ContentPart(tool_result=pb.ToolResult(tool_call_id="fc_r2d2", content="21C"))]),
        ]  # fmt: skip
        view, error = await gateway_stream(
            stub, pb.ChatRequest(model=f"gemini/{MODEL}", messages=replayed, tools=[tool])
        )
        assert error is None, error.details()
        sent_call, sent_response = function_parts(fake.last().json())
    assert (sent_call["id"], sent_response["id"], sent_response["name"]) == (
        "fc_r2d2",
        "fc_r2d2",
        "get_weather",
    )
