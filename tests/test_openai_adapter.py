"""The OpenAI-family adapter through the real gRPC API against a fake upstream.

One fake serves every preset under a distinct base path, so each test scripts the exact reply on
its provider's path and checks the request the fake received against the documented format.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import orjson
import pytest
from conftest import ADAPTER_ROUTING, RunningGateway, run_gateway
from upstream_support import assert_cancel_closes_upstream, chat_stream, system, user

from provider_gateway.fakes import FakeUpstream, Reply, kinds
from provider_gateway.v1 import provider_service_pb2 as pb

KEY = "sk-test-0123456789abcdef"
PNG = b"\x89PNG\r\n\x1a\n image bytes"
JPEG = b"\xff\xd8\xff\xe0 image bytes"
BASES = {
    "oa": ("openai", "/v1"),
    "ds": ("deepseek", "/deepseek"),
    "groq": ("groq", "/openai/v1"),
    "xai": ("xai", "/xai/v1"),
    "or": ("openrouter", "/api/v1"),
    "lms": ("lmstudio", "/lmstudio/v1"),
    "mis": ("mistral", "/mistral/v1"),
    "tog": ("together", "/together/v1"),
    "fw": ("fireworks", "/inference/v1"),
    "vl": ("vllm", "/vllm/v1"),
}


class Env:
    def __init__(self, fake: FakeUpstream, gateway: RunningGateway) -> None:
        self.fake = fake
        self.gateway = gateway
        self.stub = gateway.stub


@pytest.fixture(scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    key_file = Path(tmp_path_factory.mktemp("keys")) / "key"
    key_file.write_text(KEY)
    async with FakeUpstream() as fake:
        kinds.openai(fake)
        tables = [
            f'[providers.{name}]\nkind = "{kind}"\nbase_url = "{fake.url}{path}"\napi_key_file = "{key_file}"\n'
            for name, (kind, path) in BASES.items()
        ]
        mistral = list(BASES).index("mis")
        tables[mistral] += f'codestral_base_url = "{fake.url}/codestral/v1"\n'
        tables[list(BASES).index("oa")] += 'organization = "org-test"\n'
        tables.append(
            f'[providers.az]\nkind = "azure"\nbase_url = "{fake.url}"\napi_key_file = "{key_file}"\n'
            'deployments = { "gpt-4o" = "prod-4o", "gpt-limited" = "prod-4o" }\n'
        )
        tables.append(
            f'[providers.azi]\nkind = "azure"\nbase_url = "{fake.url}/inference"\napi_key_file = "{key_file}"\n'
            'api_style = "inference"\n'
        )
        async with run_gateway("\n".join([*tables, ADAPTER_ROUTING])) as gateway:
            yield Env(fake, gateway)


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    } | extra


def usage_chunk(usage: dict[str, Any]) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "model": "m", "choices": [], "usage": usage}


async def test_text_streaming_request_format_and_usage(env: Env) -> None:
    got = await chat_stream(
        env.stub,
        pb.ChatRequest(
            model="oa/gpt-4o", messages=[system("Be brief."), user("Hi")], temperature=0.2, max_tokens=50
        ),
    )
    assert got.error is None, got.error
    assert got.text == "Hello from the fake upstream."
    assert got.kinds()[-2:] == ["usage", "finish"]
    assert (got.usage.input_tokens, got.usage.output_tokens) == (9, 6)
    assert (got.finish.provider, got.finish.reason) == ("oa", pb.FINISH_REASON_STOP)
    seen = env.fake.last("/v1/chat/completions")
    assert seen.method == "POST"
    assert seen.headers["authorization"] == f"Bearer {KEY}"
    assert seen.headers["openai-organization"] == "org-test"
    assert seen.headers["content-type"] == "application/json"
    assert seen.json() == {
        "model": "gpt-4o",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "max_tokens": 50,
        "temperature": 0.2,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


async def test_tool_call_streaming_by_index(env: Env) -> None:
    env.fake.script(
        "/v1/chat/completions",
        Reply.sse(
            [
                chunk({"role": "assistant", "content": None}),
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_a",
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": ""},
                            }
                        ]
                    }
                ),
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]}),
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": 1,
                                "id": "call_b",
                                "type": "function",
                                "function": {"name": "get_time", "arguments": "{}"},
                            }
                        ]
                    }
                ),
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty":"Paris"}'}}]}),
                chunk({}, "tool_calls"),
                usage_chunk({"prompt_tokens": 20, "completion_tokens": 10}),
            ]
        ),
    )
    weather = pb.Tool(name="get_weather", description="weather")
    weather.parameters.update({"type": "object", "properties": {"city": {"type": "string"}}})
    request = pb.ChatRequest(
        model="oa/gpt-4o",
        messages=[user("Weather?")],
        tools=[weather],
        tool_choice=pb.ToolChoice(mode=pb.ToolChoice.MODE_REQUIRED),
    )
    got = await chat_stream(env.stub, request)
    assert got.error is None, got.error
    assert [(s.index, s.id, s.name) for s in got.of("tool_call_start")] == [
        (0, "call_a", "get_weather"),
        (1, "call_b", "get_time"),
    ]
    assert [(d.index, d.arguments_delta) for d in got.of("tool_call_delta")] == [
        (0, '{"ci'),
        (1, "{}"),
        (0, 'ty":"Paris"}'),
    ]
    ends = {e.index: e.call for e in got.of("tool_call_end")}
    assert ends[0].arguments_json == '{"city":"Paris"}'
    assert ends[1].name == "get_time"
    assert got.finish.reason == pb.FINISH_REASON_TOOL_CALLS
    body = env.fake.last("/v1/chat/completions").json()
    assert body["tool_choice"] == "required"
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]


async def test_tool_results_and_assistant_calls_are_encoded(env: Env) -> None:
    call = pb.ContentPart(
        tool_call=pb.ToolCall(id="call_a", name="get_weather", arguments_json='{"city":"Paris"}')
    )
    result = pb.ContentPart(tool_result=pb.ToolResult(tool_call_id="call_a", content="18C"))
    request = pb.ChatRequest(
        model="oa/gpt-4o",
        messages=[
            user("Weather?"),
            pb.Message(role=pb.ROLE_ASSISTANT, content=[call]),
            pb.Message(role=pb.ROLE_TOOL, content=[result]),
        ],
    )
    got = await chat_stream(env.stub, request)
    assert got.error is None, got.error
    messages = env.fake.last("/v1/chat/completions").json()["messages"]
    assert messages[1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_a",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            }
        ],
    }
    assert messages[2] == {"role": "tool", "tool_call_id": "call_a", "content": "18C"}


async def test_usage_with_cache_and_reasoning_tokens(env: Env) -> None:
    raw = {
        "prompt_tokens": 2006,
        "completion_tokens": 300,
        "total_tokens": 2306,
        "prompt_tokens_details": {"cached_tokens": 1920},
        "completion_tokens_details": {"reasoning_tokens": 128},
    }
    env.fake.script(
        "/v1/chat/completions", Reply.sse([chunk({"content": "ok"}), chunk({}, "stop"), usage_chunk(raw)])
    )
    got = await chat_stream(env.stub, pb.ChatRequest(model="oa/gpt-4o", messages=[user("Hi")]))
    usage = got.usage
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens, usage.reasoning_tokens) == (
        2006,
        300,
        1920,
        128,
    )
    assert usage.raw["prompt_tokens_details"]["cached_tokens"] == 1920


async def test_reasoning_model_rules(env: Env) -> None:
    env.fake.script(
        "/v1/chat/completions",
        Reply.sse([chunk({"reasoning_content": "thinking..."}), chunk({"content": "42"}), chunk({}, "stop")]),
    )
    request = pb.ChatRequest(
        model="oa/o3-mini",
        messages=[system("You are terse."), user("6*7?")],
        max_tokens=500,
        reasoning=pb.ReasoningOptions(enabled=True, effort=pb.ReasoningOptions.EFFORT_HIGH),
    )
    got = await chat_stream(env.stub, request)
    assert (got.reasoning, got.text) == ("thinking...", "42")
    body = env.fake.last("/v1/chat/completions").json()
    assert "temperature" not in body
    assert "max_tokens" not in body
    assert body["max_completion_tokens"] == 500
    assert body["messages"][0] == {"role": "developer", "content": "You are terse."}
    assert body["reasoning_effort"] == "high"


@pytest.mark.parametrize(
    ("model", "fields", "field"),
    [
        ("oa/o3-mini", {"temperature": 0.7}, "temperature"),
        ("oa/o3-mini", {"top_p": 0.5}, "top_p"),
        ("oa/gpt-4-turbo", {"reasoning": pb.ReasoningOptions(enabled=True)}, "reasoning.enabled"),
        (
            "oa/gpt-4o",
            {"reasoning": pb.ReasoningOptions(effort=pb.ReasoningOptions.EFFORT_LOW)},
            "reasoning.effort",
        ),
    ],
)
async def test_what_the_model_cannot_honour_is_refused_not_dropped(
    env: Env, model: str, fields: dict[str, Any], field: str
) -> None:
    before = len(env.fake.requests)
    request = pb.ChatRequest(model=model, messages=[user("6*7?")], **fields)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await env.stub.Chat(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"{field}: OpenAI model '{model.split('/')[1]}' cannot honour it" in (caught.value.details() or "")
    assert len(env.fake.requests) == before  # nothing was sent


async def test_think_tags_at_position_zero_are_reasoning(env: Env) -> None:
    env.fake.script(
        "/openai/v1/chat/completions",
        Reply.sse(
            [
                chunk({"content": "<thi"}),
                chunk({"content": "nk>step 1</th"}),
                chunk({"content": "ink>Answer <think>x</think>"}),
                chunk({}, "stop"),
            ]
        ),
    )
    got = await chat_stream(
        env.stub, pb.ChatRequest(model="groq/deepseek-r1-distill-llama-70b", messages=[user("Q")])
    )
    assert got.reasoning == "step 1"
    assert got.text == "Answer <think>x</think>"


async def test_deepseek_reasoner_message_rules_and_cache_fields(env: Env) -> None:
    usage = {
        "prompt_tokens": 100,
        "completion_tokens": 5,
        "prompt_cache_hit_tokens": 64,
        "prompt_cache_miss_tokens": 36,
    }
    env.fake.script(
        "/deepseek/chat/completions",
        Reply.sse([chunk({"content": "ok"}), chunk({}, "stop"), usage_chunk(usage)]),
    )
    request = pb.ChatRequest(model="ds/deepseek-reasoner", messages=[system("Rules."), user("a"), user("b")])
    got = await chat_stream(env.stub, request)
    assert (got.usage.input_tokens, got.usage.cache_read_tokens) == (100, 64)
    assert got.usage.raw["prompt_cache_miss_tokens"] == 36
    assert env.fake.last("/deepseek/chat/completions").json()["messages"] == [
        {"role": "user", "content": "Rules.\n\na\n\nb"}
    ]


async def test_vision_request_encoding(env: Env) -> None:
    image = pb.Image(data=PNG, media_type="image/png")
    url_image = pb.Image(url="https://example.com/cat.jpg")
    got = await chat_stream(
        env.stub, pb.ChatRequest(model="oa/gpt-4o", messages=[user("What is this?", image, url_image)])
    )
    assert got.error is None, got.error
    content = env.fake.last("/v1/chat/completions").json()["messages"][0]["content"]
    assert content == [
        {"type": "text", "text": "What is this?"},
        {
            "type": "image_url",
            "image_url": {"url": f"data:image/png;base64,{base64.b64encode(PNG).decode()}"},
        },
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]


@pytest.mark.parametrize(
    ("status", "body", "headers", "code", "words"),
    [
        (
            401,
            {"error": {"message": f"Incorrect API key provided: {KEY}"}},
            {},
            grpc.StatusCode.UNAUTHENTICATED,
            "check the provider key for oa",
        ),
        (
            404,
            {"error": {"message": "The model `gpt-9` does not exist", "code": "model_not_found"}},
            {},
            grpc.StatusCode.NOT_FOUND,
            "gpt-9",
        ),
        (
            429,
            {"error": {"message": "Rate limit reached"}},
            {"retry-after": "3"},
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "rate limited",
        ),
        (500, {"error": {"message": "server error"}}, {}, grpc.StatusCode.UNAVAILABLE, "HTTP 500"),
        (
            400,
            {
                "error": {
                    "message": "maximum context length is 128000 tokens",
                    "code": "context_length_exceeded",
                }
            },
            {},
            grpc.StatusCode.INVALID_ARGUMENT,
            "context window",
        ),
    ],
)
async def test_errors_before_first_byte(
    env: Env, status: int, body: dict[str, Any], headers: dict[str, str], code: grpc.StatusCode, words: str
) -> None:
    env.fake.script("/v1/chat/completions", Reply.error(status, body, headers))
    # A 429 with a retry delay ejects its deployment from routing: give it a model of its own.
    model = "oa/gpt-9-limited" if status == 429 else "oa/gpt-9"
    got = await chat_stream(env.stub, pb.ChatRequest(model=model, messages=[user("Hi")]))
    assert got.error is not None
    assert got.error.code() == code
    assert words in (got.error.details() or "")
    assert KEY not in (got.error.details() or "")
    assert got.events == []
    if status == 429:
        assert ("retry-after-ms", "3000") in tuple(got.error.trailing_metadata() or ())


async def test_stream_cut_midway_is_an_error_not_a_clean_end(env: Env) -> None:
    env.fake.script("/v1/chat/completions", Reply.sse([chunk({"content": "partial"})], then="cut"))
    got = await chat_stream(env.stub, pb.ChatRequest(model="oa/gpt-4o", messages=[user("Hi")]))
    assert got.text == "partial"
    assert got.error is not None
    assert got.error.code() == grpc.StatusCode.UNAVAILABLE
    assert "finish" not in got.kinds()


async def test_stream_ending_without_done_or_a_finish_is_an_error(env: Env) -> None:
    """After a finish_reason, a clean end without [DONE] is a whole answer (tests/test_replay_openai.py)."""
    env.fake.script("/v1/chat/completions", Reply.sse([chunk({"content": "partial"})], done=False))
    got = await chat_stream(env.stub, pb.ChatRequest(model="oa/gpt-4o", messages=[user("Hi")]))
    assert got.text == "partial"
    assert got.error is not None
    assert got.error.code() == grpc.StatusCode.UNAVAILABLE
    assert "ended before a finish_reason or data: [DONE]" in (got.error.details() or "")


async def test_done_without_a_final_newline_still_ends_cleanly(env: Env) -> None:
    env.fake.script(
        "/v1/chat/completions",
        Reply.sse([chunk({"content": "ok"}), chunk({}, "stop"), "data: [DONE]"], done=False),
    )
    got = await chat_stream(env.stub, pb.ChatRequest(model="oa/gpt-4o", messages=[user("Hi")]))
    assert got.error is None, got.error
    assert got.text == "ok"


@pytest.mark.parametrize("end", [b"\n", b"\r\n"])
async def test_plain_events_sent_at_once_read_as_each_events_text(env: Env, end: bytes) -> None:
    """Events sent in one piece, their data parsed as bytes: text that is not UTF-8 becomes U+FFFD
    as in any event, `data:` with no space still counts, and `[DONE]` with spaces around ends."""
    events = [
        orjson.dumps(chunk({"content": "a~b "})).replace(b"~", b"\xff"),
        orjson.dumps(chunk({"content": "caf\u00e9"})),
        orjson.dumps(chunk({}, "stop")),
    ]
    body = b"".join(b"data: " + event + end + end for event in events)
    body += b"data:" + orjson.dumps(chunk({"content": "!"})) + end + end + b"data:  [DONE] " + end + end
    env.fake.script("/v1/chat/completions", Reply.sse([body], done=False))
    got = await chat_stream(env.stub, pb.ChatRequest(model="oa/gpt-4o", messages=[user("Hi")]))
    assert got.error is None, got.error
    assert got.text == "a\ufffdb caf\u00e9!"
    assert got.finish.reason == pb.FINISH_REASON_STOP


async def test_malformed_event_is_an_error(env: Env) -> None:
    env.fake.script("/v1/chat/completions", Reply.sse([chunk({"content": "a"}), "data: {not json\n\n"]))
    got = await chat_stream(env.stub, pb.ChatRequest(model="oa/gpt-4o", messages=[user("Hi")]))
    assert got.text == "a"
    assert got.error is not None
    assert got.error.code() == grpc.StatusCode.UNAVAILABLE
    assert "malformed event" in (got.error.details() or "")


async def test_client_cancel_closes_the_upstream_connection(env: Env) -> None:
    env.fake.script("/v1/chat/completions", Reply.sse([chunk({"content": "first"})], then="hang"))
    request = pb.ChatRequest(model="oa/gpt-4o", messages=[user("Hi")])
    await assert_cancel_closes_upstream(env.stub, request, env.fake, "first")


async def test_openrouter_error_inside_the_stream(env: Env) -> None:
    env.fake.script(
        "/api/v1/chat/completions",
        Reply.sse(
            [chunk({"content": "par"}), {"error": {"code": 502, "message": "Provider returned error"}}]
        ),
    )
    got = await chat_stream(env.stub, pb.ChatRequest(model="or/openai/gpt-4o", messages=[user("Hi")]))
    assert got.text == "par"
    assert got.error is not None
    assert got.error.code() == grpc.StatusCode.UNAVAILABLE
    assert "Provider returned error" in (got.error.details() or "")
    assert env.fake.last("/api/v1/chat/completions").json()["model"] == "openai/gpt-4o"


@pytest.mark.parametrize(("model", "path"), [("lms/qwen", "/lmstudio"), ("vl/llama", "/vllm")])
async def test_local_hosts_without_stream_usage_get_an_estimate(env: Env, model: str, path: str) -> None:
    """LM Studio and vLLM (before include_usage) stream no usage: the client still gets usage,
    counted locally and marked estimated."""
    env.fake.script(
        f"{path}/v1/chat/completions", Reply.sse([chunk({"content": "12345678"}), chunk({}, "stop")])
    )
    got = await chat_stream(env.stub, pb.ChatRequest(model=model, messages=[user("Hi")]))
    assert got.error is None, got.error
    assert got.usage.estimated
    assert got.usage.output_tokens == 2


async def test_xai_gets_no_stream_options(env: Env) -> None:
    got = await chat_stream(env.stub, pb.ChatRequest(model="xai/grok-3", messages=[user("Hi")]))
    assert got.error is None, got.error
    assert "stream_options" not in env.fake.last("/xai/v1/chat/completions").json()
    # Not asked, this fake (like the x.ai of that lineage) sends no usage: counted locally instead.
    assert got.usage.estimated
    assert got.usage.output_tokens > 0


async def test_azure_deployment_path_api_key_and_version(env: Env) -> None:
    got = await chat_stream(env.stub, pb.ChatRequest(model="az/gpt-4o", messages=[user("Hi")]))
    assert got.error is None, got.error
    seen = env.fake.last("/openai/deployments/prod-4o/chat/completions")
    assert seen.query == {"api-version": "2024-08-01-preview"}
    assert seen.headers["api-key"] == KEY
    assert "authorization" not in seen.headers


async def test_azure_ai_inference_style(env: Env) -> None:
    got = await chat_stream(env.stub, pb.ChatRequest(model="azi/Phi-4", messages=[user("Hi")]))
    assert got.error is None, got.error
    seen = env.fake.last("/inference/models/chat/completions")
    assert seen.query == {"api-version": "2024-05-01-preview"}
    assert seen.json()["model"] == "Phi-4"


async def test_mistral_tool_ids_and_codestral_host(env: Env) -> None:
    call = pb.ContentPart(tool_call=pb.ToolCall(id="call_abc_123456789", name="f", arguments_json="{}"))
    result = pb.ContentPart(tool_result=pb.ToolResult(tool_call_id="call_abc_123456789", content="ok"))
    messages = [
        user("x"),
        pb.Message(role=pb.ROLE_ASSISTANT, content=[call]),
        pb.Message(role=pb.ROLE_TOOL, content=[result]),
    ]
    got = await chat_stream(env.stub, pb.ChatRequest(model="mis/mistral-large-latest", messages=messages))
    assert got.error is None, got.error
    sent = env.fake.last("/mistral/v1/chat/completions").json()
    short = sent["messages"][1]["tool_calls"][0]["id"]
    assert len(short) == 9
    assert short.isalnum()
    assert sent["messages"][2]["tool_call_id"] == short
    assert "stream_options" not in sent
    got = await chat_stream(env.stub, pb.ChatRequest(model="mis/codestral-latest", messages=[user("def")]))
    assert got.error is None, got.error
    assert env.fake.last("/codestral/v1/chat/completions").json()["model"] == "codestral-latest"


async def test_list_models_embeddings_and_count_tokens(env: Env) -> None:
    models = await env.stub.ListModels(pb.ListModelsRequest(provider="oa"), timeout=10)
    assert [m.id for m in models.models] == ["fake-model"]
    env.fake.script(
        "/v1/embeddings",
        Reply.json(
            {
                "data": [{"index": 1, "embedding": [0.5]}, {"index": 0, "embedding": [0.25]}],
                "model": "e",
                "usage": {"prompt_tokens": 4},
            }
        ),
    )
    embedded = await env.stub.Embed(
        pb.EmbedRequest(model="oa/text-embedding-3-small", inputs=["a", "b"], dimensions=1), timeout=10
    )
    assert [list(e.values) for e in embedded.embeddings] == [[0.25], [0.5]]
    assert env.fake.last("/v1/embeddings").json() == {
        "model": "text-embedding-3-small",
        "input": ["a", "b"],
        "dimensions": 1,
    }
    counted = await env.stub.CountTokens(
        pb.CountTokensRequest(model="oa/gpt-4o", text="12345678"), timeout=10
    )
    assert (counted.input_tokens, counted.estimated) == (2, True)


async def test_complete_is_a_one_message_chat(env: Env) -> None:
    answer = await env.stub.Complete(pb.CompleteRequest(model="oa/gpt-4o", prompt="Say hi"), timeout=10)
    assert answer.text == "Hello from the fake upstream."
    assert env.fake.last("/v1/chat/completions").json()["messages"] == [{"role": "user", "content": "Say hi"}]


async def test_passed_deadline_stops_the_upstream_request(env: Env) -> None:
    env.fake.disconnected.clear()
    env.fake.script("/v1/chat/completions", Reply(stall=True))
    got = await chat_stream(
        env.stub, pb.ChatRequest(model="oa/gpt-4o", messages=[user("Hi")]), deadline_s=0.5
    )
    assert got.error is not None
    assert got.error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await asyncio.wait_for(env.fake.disconnected.wait(), 10)


# --- the same scenarios on every preset of the adapter ------------------------------------------

CHAT_PATHS = {
    "oa": "/v1/chat/completions",
    "ds": "/deepseek/chat/completions",
    "groq": "/openai/v1/chat/completions",
    "xai": "/xai/v1/chat/completions",
    "or": "/api/v1/chat/completions",
    "lms": "/lmstudio/v1/chat/completions",
    "mis": "/mistral/v1/chat/completions",
    "az": "/openai/deployments/prod-4o/chat/completions",
    "azi": "/inference/models/chat/completions",
    "tog": "/together/v1/chat/completions",
    "fw": "/inference/v1/chat/completions",
    "vl": "/vllm/v1/chat/completions",
}
PRESET_NAMES = sorted(CHAT_PATHS)


# Presets whose models take no images: an image to them is refused (tests/test_capabilities.py).
TEXT_ONLY = {"ds"}


def preset_request(provider: str, model: str = "gpt-4o", *, image: bool = True) -> pb.ChatRequest:
    if not image or provider in TEXT_ONLY:
        return pb.ChatRequest(model=f"{provider}/{model}", messages=[user("Look")])
    return pb.ChatRequest(
        model=f"{provider}/{model}", messages=[user("Look", pb.Image(data=JPEG, media_type="image/jpeg"))]
    )


@pytest.mark.parametrize("provider", PRESET_NAMES)
async def test_every_preset_streams_text_tools_usage_and_encodes_vision(env: Env, provider: str) -> None:
    path = CHAT_PATHS[provider]
    if not env.gateway.provider(provider).capabilities().vision:  # DeepSeek's chat models take no images
        assert provider in TEXT_ONLY
        sent = len(env.fake.requests)
        image = pb.Image(data=JPEG, media_type="image/jpeg")
        refused = await chat_stream(
            env.stub, pb.ChatRequest(model=f"{provider}/m", messages=[user("Look", image)])
        )
        assert refused.error is not None
        assert refused.error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "messages[0].content[1].image" in (refused.error.details() or "")
        assert len(env.fake.requests) == sent  # refused, not sent without the image
        return
    env.fake.script(
        path,
        Reply.sse(
            [
                chunk({"content": "It is"}),
                chunk({"content": " a cat."}),
                chunk(
                    {
                        "tool_calls": [
                            {"index": 0, "id": "abcDEF123", "function": {"name": "f", "arguments": '{"x":'}}
                        ]
                    }
                ),
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
                chunk({}, "tool_calls"),
                usage_chunk(
                    {
                        "prompt_tokens": 50,
                        "completion_tokens": 7,
                        "prompt_tokens_details": {"cached_tokens": 32},
                    }
                ),
            ]
        ),
    )
    got = await chat_stream(env.stub, preset_request(provider))
    assert got.error is None, got.error
    assert got.text == "It is a cat."
    assert [(e.call.id, e.call.name, e.call.arguments_json) for e in got.of("tool_call_end")] == [
        ("abcDEF123", "f", '{"x":1}')
    ]
    # Reported usage wins everywhere, LM Studio included (it is estimated only when absent).
    assert (got.usage.input_tokens, got.usage.output_tokens, got.usage.cache_read_tokens) == (50, 7, 32)
    assert (got.finish.provider, got.finish.reason) == (provider, pb.FINISH_REASON_TOOL_CALLS)
    content = env.fake.last(path).json()["messages"][0]["content"]
    assert content[1] == {
        "type": "image_url",
        "image_url": {"url": f"data:image/jpeg;base64,{base64.b64encode(JPEG).decode()}"},
    }


@pytest.mark.parametrize("provider", PRESET_NAMES)
@pytest.mark.parametrize(
    ("status", "headers", "code"),
    [
        (401, {}, grpc.StatusCode.UNAUTHENTICATED),
        (404, {}, grpc.StatusCode.NOT_FOUND),
        (429, {"retry-after": "2"}, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (500, {}, grpc.StatusCode.UNAVAILABLE),
    ],
)
async def test_every_preset_maps_errors_before_the_first_byte(
    env: Env, provider: str, status: int, headers: dict[str, str], code: grpc.StatusCode
) -> None:
    env.fake.script(
        CHAT_PATHS[provider], Reply.error(status, {"error": {"message": f"{KEY} says no"}}, headers)
    )
    # A 429 with a retry delay ejects its deployment from routing: give it a model of its own.
    got = await chat_stream(env.stub, preset_request(provider, "gpt-limited" if status == 429 else "gpt-4o"))
    assert got.error is not None
    assert got.error.code() == code
    assert KEY not in (got.error.details() or "")
    if status == 401:
        assert f"check the provider key for {provider}" in (got.error.details() or "")
    if status == 429:
        assert ("retry-after-ms", "2000") in tuple(got.error.trailing_metadata() or ())


@pytest.mark.parametrize("provider", PRESET_NAMES)
async def test_every_preset_fails_a_cut_or_malformed_stream_and_closes_on_cancel(
    env: Env, provider: str
) -> None:
    path = CHAT_PATHS[provider]
    env.fake.script(
        path,
        Reply.sse([chunk({"content": "par"})], then="cut"),
        Reply.sse([chunk({"content": "par"}), "data: {oops\n\n"]),
    )
    for _ in range(2):
        got = await chat_stream(env.stub, preset_request(provider))
        assert got.text == "par"
        assert got.error is not None
        assert got.error.code() == grpc.StatusCode.UNAVAILABLE
    env.fake.script(path, Reply.sse([chunk({"content": "first"})], then="hang"))
    await assert_cancel_closes_upstream(env.stub, preset_request(provider), env.fake, "first")


@pytest.mark.parametrize("provider", PRESET_NAMES)
async def test_every_preset_decodes_list_content_or_fails_never_drops_it(env: Env, provider: str) -> None:
    """The family's rule: content that is not a string is decoded by the documented chunk types
    (OpenAI's `text` and `refusal` parts, Mistral's own) or the stream fails naming the type."""
    path = CHAT_PATHS[provider]
    text_parts = [{"type": "text", "text": "It is"}, {"type": "text", "text": " a cat."}]
    env.fake.script(
        path,
        Reply.sse([chunk({"content": text_parts}), chunk({}, "stop")]),
        Reply.sse([chunk({"content": "Seen"}), chunk({"content": [{"type": "hologram", "data": "x"}]})]),
        Reply.sse([chunk({"content": {"type": "text", "text": "an object"}})]),
    )
    got = await chat_stream(env.stub, preset_request(provider))
    assert got.error is None, got.error
    assert got.text == "It is a cat."
    for shown in ("'hologram'", "content of JSON type dict"):
        got = await chat_stream(env.stub, preset_request(provider))
        assert got.error is not None, shown
        assert got.error.code() == grpc.StatusCode.UNAVAILABLE
        assert shown in (got.error.details() or "")
        assert "finish" not in got.kinds()


async def test_a_tool_call_id_over_40_characters_is_sent_back_shortened_alike_on_call_and_result(
    env: Env,
) -> None:
    """OpenAI has refused tool_call ids over 40 characters; a made-up id with a long tool name
    (`name-<12 hex>_N`) is longer. Both places of the id get the same short one."""
    long_id = "lookup_customer_order_history_for_the_regions-0123456789ab_0"  # a made-up id of a 45-character tool name
    other = long_id[:-1] + "y"  # the same first 40 characters: must not become the same id
    calls = [
        pb.ContentPart(tool_call=pb.ToolCall(id=i, name="lookup", arguments_json="{}"))
        for i in (long_id, other)
    ]
    results = [
        pb.ContentPart(tool_result=pb.ToolResult(tool_call_id=i, content="ok")) for i in (long_id, other)
    ]
    request = pb.ChatRequest(
        model="oa/gpt-4o",
        messages=[
            user("Orders?"),
            pb.Message(role=pb.ROLE_ASSISTANT, content=calls),
            pb.Message(role=pb.ROLE_TOOL, content=results),
        ],
    )
    got = await chat_stream(env.stub, request)
    assert got.error is None, got.error
    messages = env.fake.last("/v1/chat/completions").json()["messages"]
    sent_calls = [c["id"] for c in messages[1]["tool_calls"]]
    sent_results = [m["tool_call_id"] for m in messages[2:4]]
    assert len(long_id) == 60
    assert sent_calls == sent_results
    assert all(len(i) <= 40 for i in sent_calls), sent_calls
    assert sent_calls[0] != sent_calls[1]
    assert sent_calls[0].startswith(long_id[:20])  # still readable in the vendor's logs
