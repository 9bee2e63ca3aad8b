"""Chat Completions tool calls as compatible servers really send them: parallel calls that all say
`"index": 0` (Ollama's /v1, ollama/ollama#15457, and vLLM-style servers), and `arguments` as a JSON
object rather than a string (older Ollama /v1, some vLLM parsers). Streams go through the real
gateway from a fake upstream on 127.0.0.1; unary bodies through the codec's reader."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from replay.support import ask, gateway_stream, replay_gateway

from provider_gateway.domain import ToolCall, Usage
from provider_gateway.fakes import FakeUpstream, Reply
from provider_gateway.providers.openai.presets import PRESETS
from provider_gateway.providers.openai.stream import ChatStreamParser
from provider_gateway.providers.openai.wires import wire_for

MODEL = "gpt-4.1"
USAGE = {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}


@pytest.fixture(scope="module")
async def openai() -> AsyncIterator[tuple[FakeUpstream, Any]]:
    async with replay_gateway("openai", "/v1") as upstream:
        yield upstream


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "chatcmpl-f", "object": "chat.completion.chunk", "created": 1, "model": MODEL,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip


def stream(*deltas: dict[str, Any]) -> Reply:
    usage = {"id": "chatcmpl-f", "object": "chat.completion.chunk", "created": 1, "model": MODEL,
             "choices": [], "usage": USAGE}  # fmt: skip
    return Reply.sse([*(chunk(d) for d in deltas), chunk({}, "tool_calls"), usage])


def call(call_id: str, arguments: Any, index: int = 0) -> dict[str, Any]:
    return {
        "index": index,
        "id": call_id,
        "type": "function",
        "function": {"name": "get", "arguments": arguments},
    }


def unary(tool_calls: list[dict[str, Any]]) -> list[ToolCall]:
    """The tool calls of a whole `chat.completion` holding these."""
    body = {"id": "chatcmpl-f", "object": "chat.completion", "created": 1, "model": MODEL, "usage": USAGE,
            "choices": [{"index": 0, "finish_reason": "tool_calls",
                         "message": {"role": "assistant", "content": None, "tool_calls": tool_calls}}]}  # fmt: skip
    parser = ChatStreamParser("openai", wire_for(PRESETS["openai"]))
    return parser.response(body, lambda chars: Usage(output_tokens=chars, estimated=True)).tool_calls


async def test_parallel_calls_that_all_say_index_0_stay_separate(openai: tuple[FakeUpstream, Any]) -> None:
    """Merged by index alone they were one call with the first id and `{"city": "Rome"}{"city":
    "Paris"}`: both calls lost."""
    fake, stub = openai
    rome, paris = json.dumps({"city": "Rome"}), json.dumps({"city": "Paris"})
    fake.script("/v1/chat/completions", stream({"role": "assistant", "tool_calls": [call("call_a", rome)]},
                                               {"tool_calls": [call("call_b", paris)]}))  # fmt: skip
    view, error = await gateway_stream(stub, ask(f"openai/{MODEL}"))
    assert error is None, error.details()
    assert view.tool_calls == [("call_a", "get", {"city": "Rome"}), ("call_b", "get", {"city": "Paris"})]
    # vLLM and Together repeat a call's id (and name) on each of its fragments: still one call.
    fake.script("/v1/chat/completions", stream({"role": "assistant", "tool_calls": [call("call_a", '{"city"')]},
                                               {"tool_calls": [call("call_a", ': "Rome"}')]}))  # fmt: skip
    view, error = await gateway_stream(stub, ask(f"openai/{MODEL}"))
    assert error is None, error.details()
    assert view.tool_calls == [("call_a", "get", {"city": "Rome"})]


def test_a_whole_answer_with_parallel_calls_at_index_0_keeps_them_apart() -> None:
    calls = unary([call("call_a", '{"city": "Rome"}'), call("call_b", '{"city": "Paris"}')])
    assert calls == [
        ToolCall("call_a", "get", '{"city": "Rome"}'),
        ToolCall("call_b", "get", '{"city": "Paris"}'),
    ]


async def test_arguments_streamed_as_an_object_reach_the_client(openai: tuple[FakeUpstream, Any]) -> None:
    """They became `{}`: a call the client would run without its arguments."""
    fake, stub = openai
    fake.script(
        "/v1/chat/completions",
        stream({"role": "assistant", "tool_calls": [call("call_a", {"city": "Rome"})]}),
    )
    view, error = await gateway_stream(stub, ask(f"openai/{MODEL}"))
    assert error is None, error.details()
    assert view.tool_calls == [("call_a", "get", {"city": "Rome"})]


def test_arguments_as_an_object_in_a_whole_answer_reach_the_client() -> None:
    (got,) = unary([call("call_a", {"city": "Rome", "days": [1, 2]})])
    assert json.loads(got.arguments_json) == {"city": "Rome", "days": [1, 2]}
    assert not got.incomplete
