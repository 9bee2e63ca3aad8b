"""Tool-call ids the gateway makes up for vendors that send none (Gemini 2 without
`functionCall.id`, Ollama's /api/chat, OpenAI-compatible servers without `tool_calls[].id`) stay
usable for the rest of the conversation: an agent loop replays every earlier call, and the gateway
refuses a request holding two calls with one id ("is used by an earlier tool call"). Real gateway
over gRPC, fake upstream on 127.0.0.1."""

from __future__ import annotations

import json
from typing import Any

from replay.support import gateway_stream, replay_gateway

from provider_gateway.fakes import Reply
from provider_gateway.v1 import provider_service_pb2 as pb

GEMINI_MODEL = "gemini-2.5-flash"
GEMINI_STREAM = f"/v1beta/models/{GEMINI_MODEL}:streamGenerateContent"


def text(role: int, value: str) -> pb.Message:
    return pb.Message(role=role, content=[pb.ContentPart(text=value)])


def replayed(calls: list[tuple[str, str, Any]]) -> list[pb.Message]:
    """Each earlier (id, name, arguments) call as its assistant turn and its result, as a client
    replays them."""
    out = []
    for call_id, name, arguments in calls:
        call = pb.ToolCall(id=call_id, name=name, arguments_json=json.dumps(arguments))
        result = pb.ToolResult(tool_call_id=call_id, content="sunny")
        out.append(pb.Message(role=pb.ROLE_ASSISTANT, content=[pb.ContentPart(tool_call=call)]))
        out.append(pb.Message(role=pb.ROLE_TOOL, content=[pb.ContentPart(tool_result=result)]))
    return out


def request(model: str, calls: list[tuple[str, str, Any]]) -> pb.ChatRequest:
    tool = pb.Tool(name="get_weather", description="weather")
    tool.parameters.update({"type": "object", "properties": {"city": {"type": "string"}}})
    first = text(pb.ROLE_USER, "Weather in Rome, then Paris?")
    return pb.ChatRequest(model=model, messages=[first, *replayed(calls)], tools=[tool])


async def agent_loop(stub: Any, model: str, turns: int) -> list[tuple[str, str, Any]]:
    """`turns` answers, each asked with every call so far replayed; the calls they made."""
    calls: list[tuple[str, str, Any]] = []
    for _ in range(turns):
        view, error = await gateway_stream(stub, request(model, calls))
        assert error is None, error.details()
        calls.extend(view.tool_calls)
    return calls


def gemini_call(city: str) -> Reply:
    return Reply.sse([{
        "candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": city}}}]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 3, "totalTokenCount": 8},
    }], done=False)  # fmt: skip


async def test_gemini_calls_of_one_tool_in_two_turns_get_two_ids_and_the_third_turn_is_served() -> None:
    final = Reply.sse([{"candidates": [{"content": {"role": "model", "parts": [{"text": "Both sunny."}]},
                                        "finishReason": "STOP"}]}], done=False)  # fmt: skip
    async with replay_gateway("gemini") as (fake, stub):
        fake.script(GEMINI_STREAM, gemini_call("Rome"), gemini_call("Paris"), final)
        calls = await agent_loop(stub, f"gemini/{GEMINI_MODEL}", turns=2)
        assert [(name, arguments) for _, name, arguments in calls] == [
            ("get_weather", {"city": "Rome"}),
            ("get_weather", {"city": "Paris"}),
        ]
        assert calls[0][0] != calls[1][0]
        view, error = await gateway_stream(stub, request(f"gemini/{GEMINI_MODEL}", calls))
        assert error is None, error.details()
        assert view.text == "Both sunny."
    # Each result still reaches Gemini named after its function, found from the made-up id.
    parts = [p for c in fake.last().json()["contents"] for p in c["parts"]]
    assert [p["functionResponse"]["name"] for p in parts if "functionResponse" in p] == ["get_weather"] * 2


async def test_ollama_calls_of_one_tool_in_two_turns_get_two_ids() -> None:
    def answer(city: str) -> Reply:
        return Reply.ndjson([
            {"model": "llama3.2", "message": {"role": "assistant", "content": "", "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": city}}}]}, "done": False},
            {"model": "llama3.2", "message": {"role": "assistant", "content": ""}, "done": True,
             "done_reason": "stop", "prompt_eval_count": 5, "eval_count": 3},
        ])  # fmt: skip

    final = Reply.ndjson([{"model": "llama3.2", "message": {"role": "assistant", "content": "Both sunny."},
                           "done": True, "done_reason": "stop", "prompt_eval_count": 5, "eval_count": 3}])  # fmt: skip
    async with replay_gateway("ollama") as (fake, stub):
        fake.script("/api/chat", answer("Rome"), answer("Paris"), final)
        calls = await agent_loop(stub, "ollama/llama3.2", turns=2)
        assert len({call_id for call_id, _, _ in calls}) == 2, calls
        view, error = await gateway_stream(stub, request("ollama/llama3.2", calls))
        assert error is None, error.details()
        assert view.text == "Both sunny."


async def test_openai_compatible_calls_without_ids_get_new_ids_in_every_turn() -> None:
    """Older llama.cpp and vLLM tool parsers send `tool_calls[]` without an `id`."""

    def answer(city: str) -> Reply:
        call = {"index": 0, "type": "function",
                "function": {"name": "get_weather", "arguments": json.dumps({"city": city})}}  # fmt: skip
        return Reply.sse([
            {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
             "choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [call]}, "finish_reason": None}]},
            {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
             "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        ])  # fmt: skip

    async with replay_gateway("vllm", "/v1") as (fake, stub):
        fake.script("/v1/chat/completions", answer("Rome"), answer("Paris"), answer("Oslo"))
        calls = await agent_loop(stub, "vllm/m", turns=3)
        assert len({call_id for call_id, _, _ in calls}) == 3, calls
        # The host gets the ids back as the client replays them, each result with its call's.
        sent = fake.last().json()["messages"]
        assert [m["tool_call_id"] for m in sent if m["role"] == "tool"] == [c[0] for c in calls[:2]]
