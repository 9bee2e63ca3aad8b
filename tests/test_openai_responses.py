"""The OpenAI Responses API as an upstream (`api = "responses"`), through the real gRPC API against
a fake speaking it as OpenAI documents it; the `openai` SDK, reading the same bytes from the same
fake (its stream event parser and accumulator), is the oracle.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import openai
import pytest
from conftest import ADAPTER_ROUTING, run_gateway
from upstream_support import Collected, chat_stream, system, user

from provider_gateway.config import ConfigError
from provider_gateway.fakes import FakeUpstream, Reply, kinds
from provider_gateway.fakes import chat_completions as cc
from provider_gateway.fakes import openai_responses as fake_api
from provider_gateway.v1 import provider_service_pb2 as pb

KEY = "sk-test-responses"
PATH = "/v1/responses"
AZURE_PATH = "/openai/v1/responses"
CALL = ("call_fake1", "get_weather", ('{"city":', '"Paris"}'))


class Env:
    def __init__(self, fake: FakeUpstream, stub: Any) -> None:
        self.fake = fake
        self.stub = stub
        self.sdk = openai.AsyncOpenAI(api_key=KEY, base_url=fake.url + "/v1", max_retries=0)


@pytest.fixture(scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    key_file = Path(tmp_path_factory.mktemp("keys")) / "key"
    key_file.write_text(KEY)
    async with FakeUpstream() as fake:
        kinds.openai(fake)
        key = f'api_key_file = "{key_file}"\n'
        config = (
            f'[providers.rs]\nkind = "openai"\napi = "responses"\nbase_url = "{fake.url}/v1"\n{key}'
            f'[providers.stored]\nkind = "openai"\napi = "responses"\nstore = true\nbase_url = "{fake.url}/v1"\n{key}'
            f'[providers.cc]\nkind = "openai"\nbase_url = "{fake.url}/v1"\n{key}'
            f'[providers.az]\nkind = "azure"\napi = "responses"\nbase_url = "{fake.url}"\n{key}'
            'deployments = { "o4-mini" = "prod-o4" }\n' + ADAPTER_ROUTING
        )
        async with run_gateway(config) as gateway:
            env = Env(fake, gateway.stub)
            yield env
            await env.sdk.close()


def weather_tool() -> pb.Tool:
    tool = pb.Tool(name="get_weather", description="Weather for a city")
    tool.parameters.update({"type": "object", "properties": {"city": {"type": "string"}}})
    return tool


def full_script() -> fake_api.Script:
    return fake_api.Script(summary=fake_api.SUMMARY, calls=[CALL])


def unified(got: Collected) -> tuple[list[tuple[Any, ...]], list[tuple[str, str]]]:
    """The events as content, and apart from them the reasoning state (signature, id) deltas."""
    content: list[tuple[Any, ...]] = []
    state: list[tuple[str, str]] = []
    for event in got.events:
        kind = event.WhichOneof("event")
        if kind == "text_delta":
            content.append(("text", event.text_delta.text))
        elif kind == "reasoning_delta":
            delta = event.reasoning_delta
            if delta.text:
                content.append(("reasoning", delta.text))
            if delta.signature or delta.id:
                state.append((delta.signature, delta.id))
        elif kind == "tool_call_start":
            content.append(
                ("start", event.tool_call_start.index, event.tool_call_start.id, event.tool_call_start.name)
            )
        elif kind == "tool_call_delta":
            content.append(("args", event.tool_call_delta.index, event.tool_call_delta.arguments_delta))
        elif kind == "tool_call_end":
            call = event.tool_call_end.call
            content.append(("end", event.tool_call_end.index, call.id, call.name, call.arguments_json))
        elif kind == "usage":
            u = event.usage
            content.append(
                (
                    "usage",
                    u.input_tokens,
                    u.output_tokens,
                    u.cache_read_tokens,
                    u.reasoning_tokens,
                    u.total_tokens,
                )
            )
        elif kind == "finish":
            content.append(("finish", event.finish.reason))
        else:
            content.append((kind,))
    return content, state


def chat_completions_stream(script: fake_api.Script) -> Reply:
    """The same content as Chat Completions chunks (reasoning in a `reasoning` delta field)."""
    m = script.model
    call_id, name, deltas = CALL
    chunks = [cc.chunk(m, {"role": "assistant", "content": ""})]
    chunks += [cc.chunk(m, {"reasoning": d}) for d in script.summary]
    chunks += [cc.chunk(m, {"content": d}) for d in script.text]
    chunks.append(cc.chunk(m, {"tool_calls": [{"index": 0, **cc.tool_call(call_id, name, "")}]}))
    chunks += [cc.chunk(m, {"tool_calls": [{"index": 0, "function": {"arguments": d}}]}) for d in deltas]
    chunks.append(cc.chunk(m, {}, "tool_calls"))
    usage = cc.usage(
        script.input_tokens,
        script.output_tokens,
        cached=script.cached_tokens,
        reasoning=script.reasoning_tokens,
    )
    chunks.append(cc.usage_chunk(m, usage))
    return Reply.sse(chunks)


def request(provider: str, **fields: Any) -> pb.ChatRequest:
    fields.setdefault("messages", [user("Weather in Paris?")])
    return pb.ChatRequest(model=f"{provider}/o4-mini", tools=[weather_tool()], **fields)


async def test_text_reasoning_summary_call_and_usage_are_the_same_events_as_chat_completions(
    env: Env,
) -> None:
    script = full_script()
    env.fake.script(PATH, script.stream_reply())
    env.fake.script("/v1/chat/completions", chat_completions_stream(script))
    responses = await chat_stream(env.stub, request("rs"))
    completions = await chat_stream(env.stub, request("cc"))
    assert responses.error is None, responses.error
    assert completions.error is None, completions.error
    content, state = unified(responses)
    assert content == unified(completions)[0]
    # What Responses adds: the reasoning item's state, for the next turn.
    assert state == [(fake_api.ENCRYPTED, "rs_fake1")]
    assert responses.finish.response_id == "resp_fake1"


async def test_the_sdks_stream_parser_reads_the_same_answer(env: Env) -> None:
    reply = full_script().stream_reply()
    env.fake.script(PATH, reply, reply)
    got = await chat_stream(env.stub, request("rs"))
    async with env.sdk.responses.stream(model="o4-mini", input="Weather in Paris?") as stream:
        async for _ in stream:
            pass
        final = await stream.get_final_response()
    reasoning = [i for i in final.output if i.type == "reasoning"]
    calls = [i for i in final.output if i.type == "function_call"]
    assert got.text == final.output_text
    assert got.reasoning == "".join(s.text for s in reasoning[0].summary)
    assert [(e.call.id, e.call.name, json.loads(e.call.arguments_json)) for e in got.of("tool_call_end")] == [
        (c.call_id, c.name, json.loads(c.arguments)) for c in calls
    ]
    assert [(e.signature, e.id) for e in got.of("reasoning_delta") if e.id] == [
        (reasoning[0].encrypted_content, reasoning[0].id)
    ]
    usage = final.usage
    assert usage is not None
    assert (
        got.usage.input_tokens,
        got.usage.output_tokens,
        got.usage.cache_read_tokens,
        got.usage.reasoning_tokens,
    ) == (
        usage.input_tokens,
        usage.output_tokens,
        usage.input_tokens_details.cached_tokens,
        usage.output_tokens_details.reasoning_tokens,
    )
    assert got.finish.reason == pb.FINISH_REASON_TOOL_CALLS


async def test_unary_chat_is_one_responses_call_read_as_the_sdk_reads_it(env: Env) -> None:
    reply = full_script().unary_reply()
    env.fake.script(PATH, reply, reply)
    response = await env.stub.Chat(request("rs"), timeout=10)
    assert "stream" not in env.fake.last(PATH).json()
    answer = await env.sdk.responses.create(model="o4-mini", input="Weather in Paris?")
    reasoning = next(i for i in answer.output if i.type == "reasoning")
    assert response.text == answer.output_text
    assert [(p.text, p.signature, p.id) for p in response.reasoning_parts] == [
        (reasoning.summary[0].text, reasoning.encrypted_content, reasoning.id)
    ]
    assert [(c.id, c.arguments_json) for c in response.tool_calls] == [
        (i.call_id, i.arguments) for i in answer.output if i.type == "function_call"
    ]
    assert answer.usage is not None
    assert (response.usage.input_tokens, response.usage.cache_read_tokens) == (
        answer.usage.input_tokens,
        answer.usage.input_tokens_details.cached_tokens,
    )
    # The same answer streamed folds into the same response.
    env.fake.script(PATH, full_script().stream_reply())
    streamed = await chat_stream(env.stub, request("rs"))
    assert (streamed.text, streamed.reasoning) == (response.text, response.reasoning)


async def test_request_mapping(env: Env) -> None:
    image = pb.Image(url="https://example.com/cat.jpg")
    schema = pb.ResponseFormat(type=pb.ResponseFormat.TYPE_JSON_SCHEMA, schema_name="Weather", strict=True)
    schema.json_schema.update({"type": "object", "properties": {"c": {"type": "number"}}})
    await env.stub.Chat(
        request(
            "rs",
            messages=[system("Be brief."), user("Look", image)],
            max_tokens=300,
            reasoning=pb.ReasoningOptions(effort=pb.ReasoningOptions.EFFORT_LOW),
            tool_choice=pb.ToolChoice(mode=pb.ToolChoice.MODE_TOOL, name="get_weather"),
            response_format=schema,
            provider_options={"parallel_tool_calls": False},
        ),
        timeout=10,
    )
    body = env.fake.last(PATH).json()
    assert body == {
        "model": "o4-mini",
        "input": [
            {"type": "message", "role": "developer", "content": "Be brief."},
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Look"},
                    {"type": "input_image", "image_url": "https://example.com/cat.jpg", "detail": "auto"},
                ],
            },
        ],
        "max_output_tokens": 300,
        "reasoning": {"summary": "auto", "effort": "low"},
        "tools": [
            {
                "type": "function",
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                "strict": False,
            }
        ],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "text": {
            "format": {
                "type": "json_schema",
                "name": "Weather",
                "schema": {"type": "object", "properties": {"c": {"type": "number"}}},
                "strict": True,
            }
        },
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "parallel_tool_calls": False,
    }
    await env.stub.Chat(
        pb.ChatRequest(model="stored/gpt-4.1", messages=[user("Hi")], temperature=0.5), timeout=10
    )
    body = env.fake.last(PATH).json()
    assert (body["store"], body["temperature"], "include" in body, "reasoning" in body) == (
        True,
        0.5,
        False,
        False,
    )


async def test_multi_turn_sends_reasoning_items_and_tool_results_back_statelessly(env: Env) -> None:
    env.fake.script(PATH, full_script().unary_reply())
    first = await env.stub.Chat(request("rs", reasoning=pb.ReasoningOptions(enabled=True)), timeout=10)
    call = first.tool_calls[0]
    assistant = pb.Message(
        role=pb.ROLE_ASSISTANT,
        content=[
            *(pb.ContentPart(reasoning=p) for p in first.reasoning_parts),
            pb.ContentPart(text=first.text),
            pb.ContentPart(tool_call=call),
        ],
    )
    result = pb.Message(
        role=pb.ROLE_TOOL,
        content=[pb.ContentPart(tool_result=pb.ToolResult(tool_call_id=call.id, content="18C"))],
    )
    # Reasoning from another provider (an Anthropic signature, no item id) is not Responses state.
    foreign = pb.Message(
        role=pb.ROLE_ASSISTANT, content=[pb.ContentPart(reasoning=pb.Reasoning(text="hm", signature="sig"))]
    )
    await env.stub.Chat(
        request("rs", messages=[user("Weather in Paris?"), foreign, assistant, result]), timeout=10
    )
    items = env.fake.last(PATH).json()["input"]
    assert items[1:] == [
        {
            "type": "reasoning",
            "id": "rs_fake1",
            "summary": [{"type": "summary_text", "text": "".join(fake_api.SUMMARY)}],
            "encrypted_content": fake_api.ENCRYPTED,
        },
        {"type": "message", "role": "assistant", "content": "".join(fake_api.TEXT)},
        {
            "type": "function_call",
            "call_id": "call_fake1",
            "name": "get_weather",
            "arguments": '{"city":"Paris"}',
        },
        {"type": "function_call_output", "call_id": "call_fake1", "output": "18C"},
    ]


async def test_azure_v1_responses_path_deployment_and_no_api_version(env: Env) -> None:
    env.fake.script(AZURE_PATH, fake_api.Script(model="prod-o4").stream_reply())
    got = await chat_stream(env.stub, pb.ChatRequest(model="az/o4-mini", messages=[user("Hi")]))
    assert got.error is None, got.error
    assert got.text == "".join(fake_api.TEXT)
    seen = env.fake.last(AZURE_PATH)
    assert (seen.query, seen.headers["api-key"], seen.json()["model"]) == ({}, KEY, "prod-o4")


async def test_incomplete_is_a_length_finish(env: Env) -> None:
    env.fake.script(PATH, fake_api.Script(status="incomplete").stream_reply())
    got = await chat_stream(env.stub, pb.ChatRequest(model="rs/o4-mini", messages=[user("Hi")]))
    assert got.error is None, got.error
    assert (got.finish.reason, got.finish.raw_finish_reason) == (pb.FINISH_REASON_LENGTH, "max_output_tokens")


@pytest.mark.parametrize(
    ("reply", "code", "words"),
    [
        (fake_api.Script(status="failed").stream_reply(), grpc.StatusCode.UNAVAILABLE, "The model failed"),
        (
            Reply.sse(
                [
                    *fake_api.Script().stream_reply(upto=4).chunks,
                    fake_api.error_event("rate_limit_exceeded", "Slow down"),
                ],
                done=False,
            ),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "Slow down",
        ),
        (fake_api.Script().stream_reply(upto=6), grpc.StatusCode.UNAVAILABLE, "before response.completed"),
        (fake_api.Script().stream_reply(upto=6, then="cut"), grpc.StatusCode.UNAVAILABLE, ""),
        (
            Reply.error(429, {"error": {"message": "Rate limit reached"}}, {"retry-after": "1"}),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "rate limited",
        ),
        (
            Reply.error(
                400,
                {
                    "error": {
                        "message": "Unsupported parameter: 'temperature'",
                        "type": "invalid_request_error",
                    }
                },
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "temperature",
        ),
    ],
)
async def test_stream_errors(env: Env, reply: Reply, code: grpc.StatusCode, words: str) -> None:
    env.fake.script(PATH, reply)
    got = await chat_stream(env.stub, pb.ChatRequest(model="rs/o4-limited", messages=[user("Hi")]))
    assert got.error is not None
    assert got.error.code() == code
    assert words in (got.error.details() or "")
    assert "finish" not in got.kinds()


async def test_stop_sequences_are_refused_not_dropped(env: Env) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await env.stub.Chat(
            pb.ChatRequest(model="rs/o4-mini", messages=[user("Hi")], stop=["END"]), timeout=10
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "stop" in (caught.value.details() or "")


async def test_complete_goes_through_the_responses_api(env: Env) -> None:
    answer = await env.stub.Complete(pb.CompleteRequest(model="rs/gpt-4.1", prompt="Say hi"), timeout=10)
    assert answer.text == "".join(fake_api.TEXT)
    assert env.fake.last(PATH).json()["input"] == [{"type": "message", "role": "user", "content": "Say hi"}]


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ('kind = "groq"\napi = "responses"', "providers.x.api: kind 'groq' has no Responses API"),
        ('kind = "openai"\nstore = true', 'providers.x.store: only with api = "responses"'),
        ('kind = "openai"\napi = "assistants"', "providers.x.api"),
    ],
)
async def test_configuration_refuses_what_the_host_cannot_do(table: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        async with run_gateway(f'[providers.x]\n{table}\napi_key_env = "PATH"\n'):
            pass
    assert words in str(info.value)


# Stream endings. The terminal event (response.completed, .incomplete or .failed) ends a Responses
# stream; it names the status when its response object leaves it out. A body that ends before it
# is cut short: the SDK's get_final_response refuses it, the gateway reports UNAVAILABLE.


async def sdk_read(env: Env) -> tuple[str, str, Exception | None]:
    """The SDK stream's text deltas, its last event's type, and what get_final_response raised."""
    text, last = "", ""
    async with env.sdk.responses.stream(model="o4-mini", input="Weather in Paris?") as stream:
        async for event in stream:
            last = event.type
            if event.type == "response.output_text.delta":
                text += event.delta
        try:
            await stream.get_final_response()
        except RuntimeError as refused:
            return text, last, refused
    return text, last, None


async def test_a_body_ending_before_the_terminal_event_is_cut_short_for_both(env: Env) -> None:
    script = fake_api.Script()
    reply = script.stream_reply(upto=len(script.events()) - 1)  # all but response.completed
    env.fake.script(PATH, reply, reply)
    got = await chat_stream(env.stub, request("rs"))
    text, _, refused = await sdk_read(env)
    assert refused is not None
    assert "response.completed" in str(refused)
    assert got.error is not None, "a stream cut short ended cleanly"
    assert got.error.code() == grpc.StatusCode.UNAVAILABLE
    assert "before response.completed" in (got.error.details() or "")
    assert got.text == text == "".join(fake_api.TEXT)


@pytest.mark.parametrize(
    ("status", "finish", "raw"),
    [("completed", pb.FINISH_REASON_STOP, "completed"), ("incomplete", pb.FINISH_REASON_OTHER, "incomplete")],
)
async def test_a_terminal_event_without_a_status_ends_as_its_event_says(
    env: Env, status: str, finish: int, raw: str
) -> None:
    """Never `completed` assumed: a response.incomplete whose response names no status or reason
    is incomplete for an unknown reason (the SDK refuses it as a final response)."""
    events = fake_api.Script(status=status).events()
    del events[-1]["response"]["status"]
    events[-1]["response"]["incomplete_details"] = None
    reply = Reply.sse([fake_api.sse_event(e) for e in events], done=False)
    env.fake.script(PATH, reply, reply)
    got = await chat_stream(env.stub, request("rs"))
    text, last, refused = await sdk_read(env)
    assert last == f"response.{status}"
    assert (refused is None) == (status == "completed")
    assert got.error is None, got.error
    assert got.text == text
    assert (got.finish.reason, got.finish.raw_finish_reason) == (finish, raw)


async def test_a_whole_response_without_a_status_is_no_claimed_stop(env: Env) -> None:
    body = fake_api.Script().response()
    del body["status"]
    env.fake.script(PATH, Reply.json(body), Reply.json(body))
    got = await env.stub.Chat(request("rs"), timeout=20)
    theirs = await env.sdk.responses.create(model="o4-mini", input="Weather in Paris?")
    assert theirs.status is None
    assert got.text == theirs.output_text
    assert (got.finish.reason, got.finish.raw_finish_reason) == (pb.FINISH_REASON_UNSPECIFIED, "")
