"""Chat and Complete on the OpenAI family are one non-streaming `/chat/completions` call, read with
the streams' normalisation. The fake serves the vendors' documented unary bodies; the official
`openai` SDK, reading the same bytes from the same fake, is the oracle.
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
from upstream_support import user

from provider_gateway.fakes import FakeUpstream, Reply, kinds
from provider_gateway.fakes import chat_completions as cc
from provider_gateway.v1 import provider_service_pb2 as pb

KEY = "sk-test-unary"
AZURE_VERSION = "2024-08-01-preview"
# name: (kind, base path on the fake, chat path)
HOSTS = {
    "oa": ("openai", "/v1", "/v1/chat/completions"),
    "ds": ("deepseek", "/deepseek", "/deepseek/chat/completions"),
    "groq": ("groq", "/openai/v1", "/openai/v1/chat/completions"),
    "lms": ("lmstudio", "/lmstudio/v1", "/lmstudio/v1/chat/completions"),
    "or": ("openrouter", "/api/v1", "/api/v1/chat/completions"),
    "xai": ("xai", "/xai/v1", "/xai/v1/chat/completions"),
    "tog": ("together", "/together/v1", "/together/v1/chat/completions"),
    "fw": ("fireworks", "/inference/v1", "/inference/v1/chat/completions"),
    "vl": ("vllm", "/vllm/v1", "/vllm/v1/chat/completions"),
    "mis": ("mistral", "/mistral/v1", "/mistral/v1/chat/completions"),
}
AZURE_PATH = "/openai/deployments/prod-4o/chat/completions"


class Env:
    def __init__(self, fake: FakeUpstream, stub: Any) -> None:
        self.fake = fake
        self.stub = stub

    def sdk(self, provider: str) -> openai.AsyncOpenAI:
        if provider == "az":
            return openai.AsyncAzureOpenAI(
                azure_endpoint=self.fake.url,
                azure_deployment="prod-4o",
                api_key=KEY,
                api_version=AZURE_VERSION,
                max_retries=0,
            )
        return openai.AsyncOpenAI(api_key=KEY, base_url=self.fake.url + HOSTS[provider][1], max_retries=0)

    def path(self, provider: str) -> str:
        return AZURE_PATH if provider == "az" else HOSTS[provider][2]

    async def both(self, provider: str, model: str, body: dict[str, Any]) -> tuple[pb.ChatResponse, Any]:
        """The gateway's Chat and the SDK's `chat.completions.create` on the same bytes."""
        reply = Reply.json(body)
        self.fake.script(self.path(provider), reply, reply)
        response = await self.stub.Chat(
            pb.ChatRequest(model=f"{provider}/{model}", messages=[user("Q")]), timeout=10
        )
        sdk = self.sdk(provider)
        answer = await sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": "Q"}])
        await sdk.close()
        return response, answer


@pytest.fixture(scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    key_file = Path(tmp_path_factory.mktemp("keys")) / "key"
    key_file.write_text(KEY)
    async with FakeUpstream() as fake:
        kinds.openai(fake)
        tables = [
            f'[providers.{name}]\nkind = "{kind}"\nbase_url = "{fake.url}{base}"\napi_key_file = "{key_file}"\n'
            for name, (kind, base, _) in HOSTS.items()
        ]
        tables.append(
            f'[providers.az]\nkind = "azure"\nbase_url = "{fake.url}"\napi_key_file = "{key_file}"\n'
            'deployment = "prod-4o"\n'
        )
        async with run_gateway("\n".join([*tables, ADAPTER_ROUTING])) as gateway:
            yield Env(fake, gateway.stub)


def weather_call(call_id: str = "call_Wx7") -> dict[str, Any]:
    return cc.tool_call(call_id, "get_weather", '{"city":"Paris"}')


def assert_same(response: pb.ChatResponse, answer: Any) -> None:
    """The gateway's reading equals the SDK's: text, tool calls, usage, finish, id."""
    choice = answer.choices[0]
    assert response.text == (choice.message.content or "")
    sdk_calls = [
        (c.id, c.function.name, json.loads(c.function.arguments)) for c in choice.message.tool_calls or []
    ]
    assert [(c.id, c.name, json.loads(c.arguments_json)) for c in response.tool_calls] == sdk_calls
    usage = answer.usage
    cached = (usage.prompt_tokens_details.cached_tokens or 0) if usage.prompt_tokens_details else 0
    reasoning = (
        (usage.completion_tokens_details.reasoning_tokens or 0) if usage.completion_tokens_details else 0
    )
    got = response.usage
    assert (got.input_tokens, got.output_tokens, got.cache_read_tokens, got.reasoning_tokens) == (
        usage.prompt_tokens,
        usage.completion_tokens,
        cached,
        reasoning,
    )
    assert got.total_tokens == usage.total_tokens
    assert not got.estimated
    assert (response.finish.raw_finish_reason, response.finish.response_id) == (
        choice.finish_reason,
        answer.id,
    )


@pytest.mark.parametrize("provider", [*HOSTS, "az"])
async def test_every_host_answers_chat_with_one_unary_call_read_as_the_sdk_reads_it(
    env: Env, provider: str
) -> None:
    entry = cc.message("It is 18C.", tool_calls=[weather_call()])
    body = cc.completion("gpt-4o", entry, "tool_calls", cc.usage(2006, 300, cached=1920, reasoning=128))
    response, answer = await env.both(provider, "gpt-4o", body)
    assert_same(response, answer)
    assert response.finish.reason == pb.FINISH_REASON_TOOL_CALLS
    sent = env.fake.last(env.path(provider)).json()
    assert "stream" not in sent
    assert "stream_options" not in sent


async def test_deepseek_reasoning_content_and_cache_fields(env: Env) -> None:
    usage = {
        "prompt_tokens": 100,
        "completion_tokens": 50,
        "total_tokens": 150,
        "prompt_cache_hit_tokens": 64,
        "prompt_cache_miss_tokens": 36,
        "completion_tokens_details": {"reasoning_tokens": 30},
    }
    entry = {"role": "assistant", "content": "42", "reasoning_content": "6 times 7."}
    response, answer = await env.both(
        "ds", "deepseek-reasoner", cc.completion("deepseek-reasoner", entry, "stop", usage)
    )
    assert (response.text, response.reasoning) == ("42", answer.choices[0].message.reasoning_content)
    assert (response.usage.input_tokens, response.usage.cache_read_tokens) == (100, 64)
    assert response.usage.raw["prompt_cache_miss_tokens"] == 36
    assert [p.text for p in response.reasoning_parts] == ["6 times 7."]


async def test_think_tags_at_position_zero_of_a_unary_message(env: Env) -> None:
    entry = cc.message("<think>step 1</think>Answer <think>x</think>")
    response, answer = await env.both(
        "groq", "qwen-qwq", cc.completion("qwen-qwq", entry, "stop", cc.usage(5, 9))
    )
    assert answer.choices[0].message.content.startswith("<think>")  # the SDK leaves tags to the caller
    assert (response.reasoning, response.text) == ("step 1", "Answer <think>x</think>")


async def test_azure_content_filter_fields_are_passed_over(env: Env) -> None:
    safe = {
        name: {"filtered": False, "severity": "safe"} for name in ("hate", "self_harm", "sexual", "violence")
    }
    body = cc.completion("gpt-4o-2024-08-06", cc.message("Fine."), "stop", cc.usage(9, 2))
    body["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": safe}]
    body["choices"][0]["content_filter_results"] = safe
    response, answer = await env.both("az", "gpt-4o", body)
    assert_same(response, answer)
    assert env.fake.last(AZURE_PATH).query == {"api-version": AZURE_VERSION}


async def test_url_citations_reach_the_client_raw(env: Env) -> None:
    citation = {
        "type": "url_citation",
        "url_citation": {
            "start_index": 0,
            "end_index": 5,
            "title": "Paris",
            "url": "https://example.com/paris",
        },
    }
    entry = cc.message("Paris is lovely.", annotations=[citation])
    response, answer = await env.both(
        "oa", "gpt-4o-search-preview", cc.completion("gpt-4o", entry, "stop", cc.usage(9, 4))
    )
    sdk = answer.choices[0].message.annotations[0]
    assert [(r.type, r.raw["url_citation"]["url"]) for r in response.raw_content] == [
        (sdk.type, sdk.url_citation.url)
    ]


async def test_a_refusal_reaches_the_client_as_text(env: Env) -> None:
    entry = cc.message(None, refusal="I can't help with that.")
    response, answer = await env.both("oa", "gpt-4o", cc.completion("gpt-4o", entry, "stop", cc.usage(9, 6)))
    assert response.text == answer.choices[0].message.refusal == "I can't help with that."


async def test_complete_is_one_unary_chat_call(env: Env) -> None:
    env.fake.script(
        HOSTS["oa"][2], Reply.json(cc.completion("gpt-4o", cc.message("Hi!"), "length", cc.usage(3, 1)))
    )
    answer = await env.stub.Complete(
        pb.CompleteRequest(model="oa/gpt-4o", prompt="Say hi", max_tokens=1), timeout=10
    )
    assert (answer.text, answer.finish.reason, answer.usage.output_tokens) == (
        "Hi!",
        pb.FINISH_REASON_LENGTH,
        1,
    )
    assert env.fake.last(HOSTS["oa"][2]).json() == {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "Say hi"}],
        "max_tokens": 1,
    }


async def test_a_unary_answer_without_usage_gets_an_estimate(env: Env) -> None:
    env.fake.script(HOSTS["lms"][2], Reply.json(cc.completion("qwen", cc.message("12345678"), "stop", None)))
    response = await env.stub.Chat(pb.ChatRequest(model="lms/qwen", messages=[user("Hi")]), timeout=10)
    assert (response.usage.estimated, response.usage.output_tokens) == (True, 2)


@pytest.mark.parametrize(
    ("reply", "code", "words"),
    [
        (
            Reply.error(429, {"error": {"message": "Rate limit reached"}}, {"retry-after": "1"}),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "rate limited",
        ),
        (
            Reply(body=b"<html>bad gateway</html>", content_type="text/html"),
            grpc.StatusCode.UNAVAILABLE,
            "not JSON",
        ),
        (
            Reply.json({"object": "chat.completion", "model": "m"}),
            grpc.StatusCode.UNAVAILABLE,
            "without choices",
        ),
        (
            Reply.json({"error": {"message": "overloaded", "code": 503}}),
            grpc.StatusCode.UNAVAILABLE,
            "overloaded",
        ),
        (
            Reply.json({"choices": [{"index": 0, "message": {"content": 7}}]}),
            grpc.StatusCode.UNAVAILABLE,
            "JSON type int",
        ),
    ],
)
async def test_unary_errors(env: Env, reply: Reply, code: grpc.StatusCode, words: str) -> None:
    env.fake.script(HOSTS["tog"][2], reply)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await env.stub.Chat(pb.ChatRequest(model="tog/limited-model", messages=[user("Hi")]), timeout=10)
    assert caught.value.code() == code
    assert words in (caught.value.details() or "")
    assert KEY not in (caught.value.details() or "")
