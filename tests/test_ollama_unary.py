"""Unary Chat and Complete on Ollama are one `/api/chat` call with `"stream": false` (issue 15.2):
the answer is the stream's done line carrying the whole message, read by the stream's parser."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from conftest import ADAPTER_ROUTING, run_gateway
from upstream_support import user
from vendor_cases import assert_unary_matches_stream, chat, unary_error, weather_tool

from provider_gateway.fakes import FakeUpstream, Reply, kinds
from provider_gateway.v1 import provider_service_pb2 as pb


class Env:
    def __init__(self, fake: FakeUpstream, stub: Any) -> None:
        self.fake = fake
        self.stub = stub


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[Env]:
    async with FakeUpstream() as fake:
        kinds.ollama(fake)
        config = (
            f'[providers.ol]\nkind = "ollama"\nbase_url = "{fake.url}"\nkeep_alive = "10m"\n'
            + ADAPTER_ROUTING
        )
        async with run_gateway(config) as gateway:
            yield Env(fake, gateway.stub)


def line(content: str = "", **extra: Any) -> dict[str, Any]:
    return {"model": "qwen3", "message": {"role": "assistant", "content": content} | extra, "done": False}


def done(message: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """The last line of a stream, or (with the whole message) the documented non-streaming body."""
    return {
        "model": "qwen3",
        "created_at": "2026-01-01T00:00:00Z",
        "message": {"role": "assistant", "content": ""} | (message or {}),
        "done": True,
        "done_reason": "stop",
        "total_duration": 5000,
        "prompt_eval_count": 26,
        "prompt_eval_duration": 300,
        "eval_count": 4,
        "eval_duration": 1000,
    } | extra


CALL = {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
# (stream lines, unary body) for one conversation
CASES = {
    "text": ([line("Hel"), line("lo"), done()], done({"content": "Hello"})),
    "reasoning": (
        [line(thinking="hmm"), line("<think>more</think>"), line("Yes"), done()],
        done({"content": "<think>more</think>Yes", "thinking": "hmm"}),
    ),
    "tools": ([line(tool_calls=[CALL]), done()], done({"tool_calls": [CALL]})),
}


def request(model: str = "ol/qwen3") -> pb.ChatRequest:
    return pb.ChatRequest(model=model, messages=[user("Weather in Paris?")], tools=[weather_tool()])


@pytest.mark.parametrize("case", CASES)
async def test_chat_is_one_unary_call_that_answers_what_the_stream_does(env: Env, case: str) -> None:
    lines, body = CASES[case]
    env.fake.script("/api/chat", Reply.ndjson(lines), Reply.json(body))
    summary = await chat(env.stub, request())
    streamed = env.fake.last("/api/chat").json()
    answer = await env.stub.Chat(request(), timeout=10)
    assert_unary_matches_stream(answer, summary)
    unary = env.fake.last("/api/chat").json()
    assert (streamed.pop("stream"), unary.pop("stream")) == (True, False)
    assert unary == streamed


async def test_complete_is_one_unary_call(env: Env) -> None:
    answer = await env.stub.Complete(pb.CompleteRequest(model="ol/llama3.2", prompt="Say hi"), timeout=10)
    assert (answer.text, answer.usage.input_tokens, answer.usage.output_tokens) == (
        "Hello from the fake upstream.",
        9,
        6,
    )
    assert answer.finish.reason == pb.FINISH_REASON_STOP
    sent = env.fake.last("/api/chat").json()
    assert (sent["stream"], sent["messages"]) == (False, [{"role": "user", "content": "Say hi"}])


@pytest.mark.parametrize(
    ("reply", "code", "words"),
    [
        (
            Reply.error(404, {"error": "model 'qwen3' not found"}),
            grpc.StatusCode.NOT_FOUND,
            "ollama pull qwen3",
        ),
        (Reply.error(500, {"error": "nope"}), grpc.StatusCode.UNAVAILABLE, ""),
        (
            Reply.json({"error": "model crashed"}),
            grpc.StatusCode.UNAVAILABLE,
            "model crashed",
        ),  # in a 200 body
        (Reply.json(line("half")), grpc.StatusCode.UNAVAILABLE, "without done"),
        (Reply(body=b"{not json", content_type="application/json"), grpc.StatusCode.UNAVAILABLE, "not JSON"),
    ],
)
async def test_unary_errors_map_as_the_stream_maps_them(
    env: Env, reply: Reply, code: grpc.StatusCode, words: str
) -> None:
    env.fake.script("/api/chat", reply)
    error = await unary_error(env.stub, request())
    assert error.code() == code
    assert words in (error.details() or "")
