"""A tool-use turn through OpenRouter, and the next request: the Python client sends the answer back
as the assistant turn (reasoning parts with their issuer), and OpenRouter receives the
`reasoning_details` it gave, in order, with their ids, signatures, encrypted data, index and
format. Without them Claude refuses the tool-use turn (no signed thinking) and Gemini the function
call (no thought signature). Another OpenAI-compatible host is not sent the field. Real gateway,
fake upstreams on 127.0.0.1."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from conftest import ADAPTER_ROUTING, run_gateway
from openai.types.chat import ChatCompletion

from provider_gateway.fakes import FakeUpstream, Reply
from provider_gateway.fakes.chat_completions import chunk, completion, message, tool_call, usage, usage_chunk
from provider_gateway_client import ChatResult, GatewayClient, tool_result
from provider_gateway_client import message as user_message

OPENROUTER = "/openrouter/chat/completions"
TOGETHER = "/together/chat/completions"
CLAUDE = "anthropic/claude-sonnet-4.5"
CALL = tool_call("toolu_01", "get_weather", '{"city":"Paris"}')
NEXT_ANSWER = completion(CLAUDE, message("18C and sunny."), "stop", usage(30, 5))


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[tuple[FakeUpstream, GatewayClient]]:
    os.environ["PG_TEST_OR_REPLAY_KEY"] = "replay-key"
    try:
        async with FakeUpstream() as fake:
            config = f"""
[providers.openrouter]
kind = "openrouter"
base_url = "{fake.url}/openrouter"
api_key_env = "PG_TEST_OR_REPLAY_KEY"
[providers.together]
kind = "together"
base_url = "{fake.url}/together"
api_key_env = "PG_TEST_OR_REPLAY_KEY"
{ADAPTER_ROUTING}"""
            async with run_gateway(config) as gateway, GatewayClient(gateway.target) as client:
                yield fake, client
    finally:
        os.environ.pop("PG_TEST_OR_REPLAY_KEY", None)


def detail(kind: str, fmt: str, index: int, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "format": fmt, "index": index, **fields}


async def sent_back(
    env: tuple[FakeUpstream, GatewayClient], answer: ChatResult, model: str, path: str = OPENROUTER
) -> dict[str, Any]:
    """The assistant turn of the next request, as the upstream at `path` receives it."""
    fake, client = env
    fake.script(path, Reply.json(NEXT_ANSWER))
    (call,) = answer.tool_calls
    history = [user_message("user", "Weather in Paris?"), answer.message(), tool_result(call, '{"c": 18}')]
    await client.chat(model, history)
    messages = fake.last(path).json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    return messages[1]  # type: ignore[no-any-return]


async def test_a_streamed_claude_turn_goes_back_with_its_signed_and_redacted_thinking(
    env: tuple[FakeUpstream, GatewayClient],
) -> None:
    fake, client = env
    fmt = "anthropic-claude-v1"
    deltas = [
        {"role": "assistant", "content": "", "reasoning": "Let me check",
         "reasoning_details": [detail("reasoning.text", fmt, 0, text="Let me check")]},
        {"content": "", "reasoning": " the weather.",
         "reasoning_details": [detail("reasoning.text", fmt, 0, text=" the weather.")]},
        {"content": "", "reasoning_details": [detail("reasoning.text", fmt, 0, text="", signature="EqQBCkYIBxgC")]},
        {"content": "", "reasoning_details": [detail("reasoning.encrypted", fmt, 1, data="EmwKAhgBEgy-opaque")]},
        {"content": "Checking."},
        {"tool_calls": [{"index": 0, **CALL, "function": {"name": "get_weather", "arguments": ""}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"city":"Paris"}'}}]},
    ]  # fmt: skip
    chunks = [chunk(CLAUDE, d) for d in deltas] + [chunk(CLAUDE, {}, "tool_calls")]
    fake.script(OPENROUTER, Reply.sse([*chunks, usage_chunk(CLAUDE, usage(20, 10))]))
    answer = await client.chat_stream(f"openrouter/{CLAUDE}", "Weather in Paris?").final()

    assistant = await sent_back(env, answer, f"openrouter/{CLAUDE}")
    assert assistant["reasoning_details"] == [  # each block once, its streamed text joined
        detail("reasoning.text", fmt, 0, text="Let me check the weather.", signature="EqQBCkYIBxgC"),
        detail("reasoning.encrypted", fmt, 1, data="EmwKAhgBEgy-opaque"),
    ]
    assert assistant["content"] == "Checking."
    assert assistant["tool_calls"] == [CALL]


# One assistant message per vendor as OpenRouter answers it whole: Claude's two signed blocks and a
# redacted one, Gemini's thought text and its thought signature (one block: one index, the id on
# the signature), an OpenAI reasoning item's summary and encrypted content (one id).
WHOLE_ANSWERS = {
    CLAUDE: [
        detail("reasoning.text", "anthropic-claude-v1", 0, text="First I look.", signature="EqQBsig1"),
        detail("reasoning.text", "anthropic-claude-v1", 1, text="Then I call.", signature="EqQBsig2"),
        detail("reasoning.encrypted", "anthropic-claude-v1", 2, data="EmwKredacted"),
    ],
    "google/gemini-3-pro-preview": [
        detail("reasoning.text", "google-gemini-v1", 0, text="The user wants the weather."),
        detail("reasoning.encrypted", "google-gemini-v1", 0, data="CiQBthought==", id="tool_get_weather_x1"),
    ],
    "openai/gpt-5": [
        detail("reasoning.summary", "openai-responses-v1", 0, summary="Weather lookup.", id="rs_0d38"),
        detail("reasoning.encrypted", "openai-responses-v1", 0, data="gAAAAABq-opaque", id="rs_0d38"),
    ],
}


@pytest.mark.parametrize("model", list(WHOLE_ANSWERS))
async def test_a_whole_answer_goes_back_as_the_sdk_reads_it(
    env: tuple[FakeUpstream, GatewayClient], model: str
) -> None:
    fake, client = env
    details = WHOLE_ANSWERS[model]
    reasoning = "".join(d.get("text") or d.get("summary") or "" for d in details)
    entry = message(None, tool_calls=[CALL], reasoning=reasoning, reasoning_details=details)
    body = orjson.dumps(completion(model, entry, "tool_calls", usage(20, 10)))
    fake.script(OPENROUTER, Reply(body=body))
    answer = await client.chat(f"openrouter/{model}", "Weather in Paris?")

    assistant = await sent_back(env, answer, f"openrouter/{model}")
    # What an openai SDK user passes back "unmodified", as OpenRouter documents, from the same bytes.
    sdk_message = ChatCompletion.model_validate_json(body).choices[0].message
    assert assistant["reasoning_details"] == (sdk_message.model_extra or {})["reasoning_details"]
    assert assistant["tool_calls"] == [CALL]


async def test_another_openai_compatible_host_is_not_sent_the_field(
    env: tuple[FakeUpstream, GatewayClient],
) -> None:
    """The same turn, continued on Together after a switch: only `content` and `tool_calls`."""
    fake, client = env
    entry = message(None, tool_calls=[CALL], reasoning="Look.", reasoning_details=WHOLE_ANSWERS[CLAUDE])
    fake.script(OPENROUTER, Reply.json(completion(CLAUDE, entry, "tool_calls", usage(20, 10))))
    answer = await client.chat(f"openrouter/{CLAUDE}", "Weather in Paris?")
    assert answer.reasoning_parts  # there was reasoning to send

    assistant = await sent_back(env, answer, "together/meta-llama/Llama-3.3-70B-Instruct-Turbo", TOGETHER)
    assert "reasoning_details" not in assistant
    assert assistant["tool_calls"] == [CALL]
