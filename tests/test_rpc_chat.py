"""Chat, ChatStream, Complete and CompleteStream against the mock, through the real gRPC API."""

from __future__ import annotations

import json

from rpc_util import chat, kinds, runs, text_of

from provider_gateway.v1 import provider_service_pb2 as pb

WEATHER_TOOL = pb.Tool(name="get_weather", description="Weather for a city")
WEATHER_TOOL.parameters.update({"type": "object", "properties": {"city": {"type": "string"}}})

CACHED = """
[providers.mock.models.cached]
tokens = 3
cache_read_tokens = 100
cache_write_tokens = 20
"""


async def test_chat_stream_echoes_the_prompt_token_by_token(gateway) -> None:
    events = [e async for e in gateway.stub.ChatStream(chat("mock/echo", "What is up"))]
    assert runs(kinds(events)) == ["text_delta", "usage", "finish"]
    assert text_of(events).startswith("Mock answer: What is up Mock answer:")
    assert events[-2].usage.output_tokens == 12
    finish = events[-1].finish
    assert (finish.provider, finish.model, finish.reason) == ("mock", "echo", pb.FINISH_REASON_STOP)
    assert finish.response_id.startswith("mock-")
    assert [(a.provider, a.model, a.outcome) for a in finish.attempts] == [("mock", "echo", "ok")]
    assert finish.timing.total_us >= finish.timing.time_to_first_token_us > 0


async def test_chat_unary_accumulates_the_same_answer(gateway) -> None:
    streamed = [e async for e in gateway.stub.ChatStream(chat("mock/echo", "same words"))]
    response = await gateway.stub.Chat(chat("mock/echo", "same words"))
    assert response.text == text_of(streamed)
    assert response.usage.output_tokens == 12
    assert response.usage.input_tokens == streamed[-2].usage.input_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    assert response.finish.reason == pb.FINISH_REASON_STOP


async def test_reasoning_model_streams_reasoning_before_text(gateway) -> None:
    events = [e async for e in gateway.stub.ChatStream(chat("mock/reasoner"))]
    assert runs(kinds(events))[:2] == ["reasoning_delta", "text_delta"]
    reasoning = "".join(e.reasoning_delta.text for e in events)
    assert reasoning == "Thinking about the question step by"
    usage = events[-2].usage
    assert usage.reasoning_tokens == 6
    assert usage.output_tokens == 12 + 6  # reasoning counts as output, as vendors bill it

    response = await gateway.stub.Chat(chat("mock/reasoner"))
    assert response.reasoning == reasoning
    assert response.text.startswith("Mock answer:")


async def test_tool_model_streams_start_argument_deltas_and_end(gateway) -> None:
    events = [e async for e in gateway.stub.ChatStream(chat("mock/tools", "weather?", tools=[WEATHER_TOOL]))]
    tool_events = [e for e in events if e.WhichOneof("event").startswith("tool_call")]
    assert runs(kinds(tool_events)) == ["tool_call_start", "tool_call_delta", "tool_call_end"]
    start, end = tool_events[0].tool_call_start, tool_events[-1].tool_call_end
    assert (start.index, start.id, start.name) == (0, "call_mock_0", "get_weather")
    arguments = "".join(e.tool_call_delta.arguments_delta for e in tool_events[1:-1])
    assert arguments == end.call.arguments_json
    assert json.loads(arguments) == {"city": "Paris", "unit": "celsius"}
    assert (end.index, end.call.id, end.call.name) == (0, "call_mock_0", "get_weather")
    assert events[-1].finish.reason == pb.FINISH_REASON_TOOL_CALLS


async def test_tool_model_unary_returns_tool_calls(gateway) -> None:
    response = await gateway.stub.Chat(chat("mock/tools", "weather?", tools=[WEATHER_TOOL]))
    assert [(c.id, c.name) for c in response.tool_calls] == [("call_mock_0", "get_weather")]
    assert json.loads(response.tool_calls[0].arguments_json)["city"] == "Paris"
    assert response.finish.reason == pb.FINISH_REASON_TOOL_CALLS


async def test_tool_model_without_tools_in_the_request_answers_text_only(gateway) -> None:
    response = await gateway.stub.Chat(chat("mock/tools", "weather?"))
    assert not response.tool_calls
    assert response.finish.reason == pb.FINISH_REASON_STOP


async def test_usage_reports_cache_tokens_inside_input_tokens(gateway_factory) -> None:
    async with gateway_factory(CACHED) as gw:
        events = [e async for e in gw.stub.ChatStream(chat("mock/cached", "x"))]
    usage = events[-2].usage
    assert (usage.cache_read_tokens, usage.cache_write_tokens) == (100, 20)
    prompt_tokens = int(usage.raw["prompt_tokens"])
    assert usage.input_tokens == prompt_tokens + 100 + 20  # normalised: input includes cache tokens
    assert usage.output_tokens == 3


async def test_max_tokens_cuts_the_answer_with_finish_reason_length(gateway) -> None:
    events = [e async for e in gateway.stub.ChatStream(chat("mock/echo", max_tokens=4))]
    assert runs(kinds(events)) == ["text_delta", "usage", "finish"]
    assert events[-2].usage.output_tokens == 4
    assert events[-1].finish.reason == pb.FINISH_REASON_LENGTH
    response = await gateway.stub.Chat(chat("mock/echo", max_tokens=4))
    assert response.finish.reason == pb.FINISH_REASON_LENGTH
    assert response.usage.output_tokens == 4


async def test_complete_stream_and_unary_complete(gateway) -> None:
    request = pb.CompleteRequest(model="mock/echo", prompt="Once upon a time")
    events = [e async for e in gateway.stub.CompleteStream(request)]
    assert runs(kinds(events)) == ["text_delta", "usage", "finish"]
    assert text_of(events).startswith("Mock answer: Once upon a time")
    response = await gateway.stub.Complete(request)
    assert response.text == text_of(events)
    assert response.usage.input_tokens == 4  # 16 characters at four per token
    assert (response.finish.provider, response.finish.model) == ("mock", "echo")


async def test_complete_honours_max_tokens(gateway) -> None:
    response = await gateway.stub.Complete(pb.CompleteRequest(model="mock/echo", prompt="p", max_tokens=2))
    assert response.text == "Mock answer:"
    assert response.finish.reason == pb.FINISH_REASON_LENGTH


async def test_the_mock_answers_deterministically(gateway) -> None:
    first = await gateway.stub.Chat(chat("mock/echo", "repeat me"))
    second = await gateway.stub.Chat(chat("mock/echo", "repeat me"))
    assert first.text == second.text
    assert first.usage == second.usage
