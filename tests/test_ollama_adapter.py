"""The Ollama adapter through the real gRPC API against a fake Ollama (native /api/chat NDJSON)."""

from __future__ import annotations

import base64
import socket
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from conftest import ADAPTER_ROUTING, RunningGateway, run_gateway
from made_up_ids_support import untagged
from upstream_support import assert_cancel_closes_upstream, chat_stream, system, user

from provider_gateway.fakes import FakeUpstream, Reply, kinds
from provider_gateway.v1 import provider_service_pb2 as pb


class Env:
    def __init__(self, fake: FakeUpstream, gateway: RunningGateway) -> None:
        self.fake = fake
        self.stub = gateway.stub


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[Env]:
    async with FakeUpstream() as fake:
        kinds.ollama(fake)
        config = (
            f'[providers.ol]\nkind = "ollama"\nbase_url = "{fake.url}"\nkeep_alive = "10m"\n'
            f'[providers.down]\nkind = "ollama"\nbase_url = "http://127.0.0.1:{closed_port()}"\n'
            + ADAPTER_ROUTING
        )
        async with run_gateway(config) as gateway:
            yield Env(fake, gateway)


def line(content: str = "", **extra: Any) -> dict[str, Any]:
    return {"model": "llama3.2", "message": {"role": "assistant", "content": content} | extra, "done": False}


def done(**extra: Any) -> dict[str, Any]:
    return {
        "model": "llama3.2",
        "message": {"role": "assistant", "content": ""},
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": 26,
        "eval_count": 4,
        "eval_duration": 1000,
    } | extra


async def test_text_streaming_and_request_format(env: Env) -> None:
    request = pb.ChatRequest(
        model="ol/llama3.2",
        messages=[system("Terse."), user("Hi")],
        temperature=0.1,
        max_tokens=64,
        stop=["\n\n"],
    )
    got = await chat_stream(env.stub, request)
    assert got.error is None, got.error
    assert got.text == "Hello from the fake upstream."
    assert (got.usage.input_tokens, got.usage.output_tokens) == (9, 6)
    assert got.finish.reason == pb.FINISH_REASON_STOP
    seen = env.fake.last("/api/chat")
    assert seen.json() == {
        "model": "llama3.2",
        "messages": [{"role": "system", "content": "Terse."}, {"role": "user", "content": "Hi"}],
        "stream": True,
        "options": {"temperature": 0.1, "num_predict": 64, "stop": ["\n\n"]},
        "keep_alive": "10m",
    }


async def test_tool_calls_arrive_whole_and_tool_results_go_back(env: Env) -> None:
    call = {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    env.fake.script("/api/chat", Reply.ndjson([line(tool_calls=[call]), done()]))
    tool = pb.Tool(name="get_weather", description="weather")
    tool.parameters.update({"type": "object"})
    previous_call = pb.ContentPart(
        tool_call=pb.ToolCall(id="get_weather-0", name="get_weather", arguments_json='{"city":"Rome"}')
    )
    result = pb.ContentPart(
        tool_result=pb.ToolResult(tool_call_id="get_weather-0", content="21C", name="get_weather")
    )
    messages = [
        user("Weather?"),
        pb.Message(role=pb.ROLE_ASSISTANT, content=[previous_call]),
        pb.Message(role=pb.ROLE_TOOL, content=[result]),
    ]
    got = await chat_stream(env.stub, pb.ChatRequest(model="ol/llama3.2", messages=messages, tools=[tool]))
    assert got.error is None, got.error
    assert [(s.index, untagged(s.id), s.name) for s in got.of("tool_call_start")] == [
        (0, "get_weather-0", "get_weather")
    ]
    assert got.of("tool_call_end")[0].call.arguments_json == '{"city":"Paris"}'
    assert got.finish.reason == pb.FINISH_REASON_TOOL_CALLS
    sent = env.fake.last("/api/chat").json()
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assert sent["messages"][1]["tool_calls"] == [
        {"function": {"name": "get_weather", "arguments": {"city": "Rome"}}}
    ]
    assert sent["messages"][2] == {"role": "tool", "content": "21C", "tool_name": "get_weather"}


async def test_usage_raw_figures_and_reasoning(env: Env) -> None:
    env.fake.script(
        "/api/chat",
        Reply.ndjson([line(thinking="hmm"), line("<think>more</think>"), line("Yes"), done()]),
    )
    request = pb.ChatRequest(
        model="ol/qwen3", messages=[user("?")], reasoning=pb.ReasoningOptions(enabled=True)
    )
    got = await chat_stream(env.stub, request)
    assert (got.reasoning, got.text) == ("hmmmore", "Yes")
    assert (got.usage.input_tokens, got.usage.output_tokens) == (26, 4)
    assert got.usage.raw["eval_duration"] == 1000
    assert env.fake.last("/api/chat").json()["think"] is True


@pytest.mark.parametrize(
    ("effort", "think"),
    [
        (pb.ReasoningOptions.EFFORT_LOW, "low"),
        (pb.ReasoningOptions.EFFORT_MEDIUM, "medium"),
        (pb.ReasoningOptions.EFFORT_HIGH, "high"),
    ],
)
async def test_gpt_oss_takes_the_effort_as_its_think_level(env: Env, effort: int, think: str) -> None:
    """Ollama documents `think: "low" | "medium" | "high"` for gpt-oss (which ignores true/false)."""
    env.fake.script("/api/chat", Reply.ndjson([line(thinking="plan"), line("Yes"), done()]))
    reasoning = pb.ReasoningOptions(enabled=True, effort=effort)  # type: ignore[arg-type]
    request = pb.ChatRequest(model="ol/gpt-oss:20b", messages=[user("?")], reasoning=reasoning)
    got = await chat_stream(env.stub, request)
    assert got.error is None
    assert (got.reasoning, got.text) == ("plan", "Yes")
    assert env.fake.last("/api/chat").json()["think"] == think


@pytest.mark.parametrize(
    ("model", "effort"),
    [
        ("llama3.2", pb.ReasoningOptions.EFFORT_HIGH),  # thinks on or off, at no level
        ("qwen3", pb.ReasoningOptions.EFFORT_LOW),
        ("gpt-oss:20b", pb.ReasoningOptions.EFFORT_MINIMAL),  # not one of gpt-oss's levels
    ],
)
async def test_an_effort_ollama_cannot_send_is_refused(env: Env, model: str, effort: int) -> None:
    sent = len(env.fake.requests)
    reasoning = pb.ReasoningOptions(effort=effort)  # type: ignore[arg-type]
    request = pb.ChatRequest(model=f"ol/{model}", messages=[user("?")], reasoning=reasoning)
    got = await chat_stream(env.stub, request)
    assert got.error is not None
    assert got.error.code() == grpc.StatusCode.FAILED_PRECONDITION
    details = got.error.details() or ""
    assert details.startswith(f"ol: reasoning.effort: Ollama model {model!r} cannot honour it"), details
    assert len(env.fake.requests) == sent  # nothing was sent


async def test_vision_images_are_base64(env: Env) -> None:
    got = await chat_stream(
        env.stub,
        pb.ChatRequest(
            model="ol/fake-llava",  # llama3.2 itself takes no images (catalog)
            messages=[user("What?", pb.Image(data=b"\x89PNG\r\n\x1a\n", media_type="image/png"))],
        ),
    )
    assert got.error is None, got.error
    assert env.fake.last("/api/chat").json()["messages"][0] == {
        "role": "user",
        "content": "What?",
        "images": [base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()],
    }
    got = await chat_stream(
        env.stub,
        pb.ChatRequest(model="ol/fake-llava", messages=[user("What?", pb.Image(url="https://x/y.png"))]),
    )
    assert got.error is not None
    assert got.error.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_model_not_pulled_says_how_to_fix_it(env: Env) -> None:
    got = await chat_stream(env.stub, pb.ChatRequest(model="ol/mistral-nemo", messages=[user("Hi")]))
    assert got.error is not None
    assert got.error.code() == grpc.StatusCode.NOT_FOUND
    assert "run `ollama pull mistral-nemo`" in (got.error.details() or "")


async def test_ollama_down_says_it_is_not_running(env: Env) -> None:
    got = await chat_stream(env.stub, pb.ChatRequest(model="down/llama3.2", messages=[user("Hi")]))
    assert got.error is not None
    assert got.error.code() == grpc.StatusCode.UNAVAILABLE
    assert got.error.details() == "down: Ollama is not running (start it with `ollama serve`)"


@pytest.mark.parametrize(
    ("status", "headers", "code"),
    [
        (401, {}, grpc.StatusCode.UNAUTHENTICATED),
        (429, {"retry-after": "2"}, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (500, {}, grpc.StatusCode.UNAVAILABLE),
    ],
)
async def test_errors_before_first_byte(
    env: Env, status: int, headers: dict[str, str], code: grpc.StatusCode
) -> None:
    env.fake.script("/api/chat", Reply.error(status, {"error": "nope"}, headers))
    # A 429 with a retry delay ejects its deployment from routing: give it a model of its own.
    model = "ol/llama3.2-limited" if status == 429 else "ol/llama3.2"
    got = await chat_stream(env.stub, pb.ChatRequest(model=model, messages=[user("Hi")]))
    assert got.error is not None
    assert got.error.code() == code
    assert got.events == []


async def test_cut_stream_malformed_line_and_in_stream_error(env: Env) -> None:
    env.fake.script("/api/chat", Reply.ndjson([line("par")], then="cut"))
    env.fake.script("/api/chat", Reply.ndjson([line("a"), b"{not json\n"]))
    env.fake.script("/api/chat", Reply.ndjson([line("b"), {"error": "model crashed"}]))
    env.fake.script("/api/chat", Reply.ndjson([line("c")]))  # clean EOF without the done line
    for expected in ("par", "a", "b", "c"):
        got = await chat_stream(env.stub, pb.ChatRequest(model="ol/llama3.2", messages=[user("Hi")]))
        assert got.text == expected
        assert got.error is not None, expected
        assert got.error.code() == grpc.StatusCode.UNAVAILABLE
        assert "finish" not in got.kinds()


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("stop", pb.FINISH_REASON_STOP),
        ("length", pb.FINISH_REASON_LENGTH),
        (None, pb.FINISH_REASON_UNSPECIFIED),
    ],
)
async def test_the_done_line_finishes_with_the_reason_ollama_gave(
    env: Env, reason: str | None, finish: int
) -> None:
    """`done: true` ends the answer; Ollama servers before `done_reason` existed send none, which
    says no reason: UNSPECIFIED with no raw reason, never an invented "stop"."""
    last = done(done_reason=reason) if reason else {k: v for k, v in done().items() if k != "done_reason"}
    env.fake.script("/api/chat", Reply.ndjson([line("Half of it"), last]))
    got = await chat_stream(env.stub, pb.ChatRequest(model="ol/llama3.2", messages=[user("Hi")]))
    assert got.error is None, got.error
    assert got.text == "Half of it"
    assert (got.finish.reason, got.finish.raw_finish_reason) == (finish, reason or "")


async def test_client_cancel_closes_the_upstream_connection(env: Env) -> None:
    env.fake.script("/api/chat", Reply.ndjson([line("first")], then="hang"))
    request = pb.ChatRequest(model="ol/llama3.2", messages=[user("Hi")])
    await assert_cancel_closes_upstream(env.stub, request, env.fake, "first")


async def test_list_models_and_embeddings(env: Env) -> None:
    models = await env.stub.ListModels(pb.ListModelsRequest(provider="ol"), timeout=10)
    assert [m.id for m in models.models] == ["llama3.2:latest"]
    env.fake.script(
        "/api/embed", Reply.json({"model": "nomic", "embeddings": [[0.1, 0.2]], "prompt_eval_count": 3})
    )
    embedded = await env.stub.Embed(pb.EmbedRequest(model="ol/nomic-embed-text", inputs=["hi"]), timeout=10)
    assert [round(v, 3) for v in embedded.embeddings[0].values] == [0.1, 0.2]
    # `truncate: false`: an over-long input refused, never embedded in part (Ollama's default cuts).
    assert env.fake.last("/api/embed").json() == {
        "model": "nomic-embed-text",
        "input": ["hi"],
        "truncate": False,
    }
