"""Mistral through the real gRPC API against a fake serving Mistral's documented chunk shapes, with
the official `mistralai` SDK reading the same bytes from the same fake as the oracle.

Mistral differs from OpenAI where `providers/openai/mistral.py` says: content-chunk arrays
(`thinking`, `text`, `reference`...), 9-character tool ids, object arguments, `reasoning_effort` and
`prompt_mode`, its own usage fields, thinking sent back in its own format.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from conftest import ADAPTER_ROUTING, run_gateway
from mistralai.client import Mistral
from mistralai.client import models as mm
from upstream_support import Collected, chat_stream, user

from provider_gateway.fakes import FakeUpstream, Reply, kinds
from provider_gateway.fakes import mistral as wire
from provider_gateway.v1 import provider_service_pb2 as pb

KEY = "mistral-test-key"
PATH = "/v1/chat/completions"


class Env:
    def __init__(self, fake: FakeUpstream, stub: Any) -> None:
        self.fake = fake
        self.stub = stub
        self.sdk = Mistral(api_key=KEY, server_url=fake.url)

    def script_twice(self, reply: Reply) -> None:
        """The same bytes for the gateway and for the SDK."""
        self.fake.script(PATH, reply, reply)  # a Reply is read, never changed, by the fake


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[Env]:
    async with FakeUpstream() as fake:
        kinds.mistral(fake)
        config = (
            f'[providers.mis]\nkind = "mistral"\nbase_url = "{fake.url}/v1"\napi_key_env = "PG_T_MISTRAL"\n'
            + ADAPTER_ROUTING
        )
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("PG_T_MISTRAL", KEY)
            async with run_gateway(config) as gateway:
                yield Env(fake, gateway.stub)


def sdk_reasoning_and_text(contents: list[Any]) -> tuple[str, str, list[str]]:
    """What the SDK reads out of `delta.content` / `message.content` values."""
    reasoning, text, signatures = [], [], []
    for content in contents:
        if isinstance(content, str):
            text.append(content)
            continue
        for chunk in content or []:
            if isinstance(chunk, mm.ThinkChunk):
                reasoning += [t.text for t in chunk.thinking if isinstance(t, mm.TextChunk)]
                if isinstance(chunk.signature, str):
                    signatures.append(chunk.signature)
            elif isinstance(chunk, mm.TextChunk):
                text.append(chunk.text)
    return "".join(reasoning), "".join(text), signatures


async def sdk_stream(env: Env, model: str, **options: Any) -> tuple[list[mm.CompletionChunk], Any]:
    stream = await env.sdk.chat.stream_async(
        model=model, messages=[{"role": "user", "content": "Hi"}], **options
    )
    chunks = [event.data async for event in stream]
    return chunks, [c.choices[0].delta.content for c in chunks if c.choices]


def signatures(got: Collected) -> list[str]:
    return [e.signature for e in got.of("reasoning_delta") if e.signature]


async def test_thinking_stream_gives_the_sdks_reasoning_text_and_signature(env: Env) -> None:
    request = pb.ChatRequest(
        model="mis/magistral-medium-latest",
        messages=[user("Hi")],
        reasoning=pb.ReasoningOptions(enabled=True),
    )
    got = await chat_stream(env.stub, request)
    assert got.error is None, got.error
    sent = env.fake.last(PATH).json()
    assert (sent["prompt_mode"], "reasoning_effort" in sent) == ("reasoning", False)
    chunks, contents = await sdk_stream(env, "magistral-medium-latest")
    reasoning, text, sdk_signatures = sdk_reasoning_and_text(contents)
    assert reasoning == "".join(wire.THINKING)  # the fake's text, as the SDK reads it
    assert (got.reasoning, got.text) == (reasoning, text)
    assert signatures(got) == sdk_signatures == [wire.SIGNATURE]
    # Reasoning first, then text: the order the model produced them in.
    kinds_seen = got.kinds()
    assert kinds_seen.index("text_delta") > max(i for i, k in enumerate(kinds_seen) if k == "reasoning_delta")
    usage = chunks[-1].usage
    assert (got.usage.input_tokens, got.usage.output_tokens) == (usage.prompt_tokens, usage.completion_tokens)
    assert got.finish.reason == pb.FINISH_REASON_STOP


async def test_unary_chat_reads_content_chunks_as_the_sdk_does(env: Env) -> None:
    response = await env.stub.Chat(
        pb.ChatRequest(
            model="mis/mistral-medium-3-5", messages=[user("Hi")], reasoning=pb.ReasoningOptions(enabled=True)
        ),
        timeout=10,
    )
    sent = env.fake.last(PATH).json()
    assert "stream" not in sent
    assert sent["reasoning_effort"] == "high"
    answer = await env.sdk.chat.complete_async(
        model="mistral-medium-3-5", messages=[{"role": "user", "content": "Hi"}], reasoning_effort="high"
    )
    reasoning, text, sdk_signatures = sdk_reasoning_and_text([answer.choices[0].message.content])
    assert (
        (response.reasoning, response.text)
        == (reasoning, text)
        == ("".join(wire.THINKING), "".join(wire.ANSWER))
    )
    assert [(p.text, p.signature) for p in response.reasoning_parts] == [(reasoning, sdk_signatures[0])]
    assert response.usage.input_tokens == answer.usage.prompt_tokens
    assert response.finish.reason == pb.FINISH_REASON_STOP


async def test_reference_and_image_chunks_reach_the_client_raw_never_dropped(env: Env) -> None:
    content = [
        {"type": "text", "text": "Paris is the capital"},
        {"type": "reference", "reference_ids": [1, 2]},
        {"type": "text", "text": " of France."},
    ]
    env.script_twice(Reply.json(wire.completion("mistral-large-latest", content)))
    response = await env.stub.Chat(
        pb.ChatRequest(model="mis/mistral-large-latest", messages=[user("Q")]), timeout=10
    )
    answer = await env.sdk.chat.complete_async(
        model="mistral-large-latest", messages=[{"role": "user", "content": "Q"}]
    )
    sdk_refs = [
        c.reference_ids for c in answer.choices[0].message.content if isinstance(c, mm.ReferenceChunk)
    ]
    assert response.text == "Paris is the capital of France."
    assert [(r.type, list(r.raw["reference_ids"])) for r in response.raw_content] == [("reference", [1, 2])]
    assert sdk_refs == [[1, 2]]
    # Streamed, the chunk arrives in place, between the text deltas around it.
    env.fake.script(
        PATH,
        Reply.sse(
            [
                wire.chunk("m", {"content": [content[0]]}),
                wire.chunk(
                    "m", {"content": [content[1], {"type": "image_url", "image_url": "https://x/y.png"}]}
                ),
                wire.chunk("m", {"content": [content[2]]}, "stop", usage=wire.usage(3, 4)),
            ]
        ),
    )
    got = await chat_stream(env.stub, pb.ChatRequest(model="mis/mistral-large-latest", messages=[user("Q")]))
    assert got.error is None, got.error
    assert got.kinds()[:4] == ["text_delta", "raw_content", "raw_content", "text_delta"]
    assert [e.type for e in got.of("raw_content")] == ["reference", "image_url"]


async def test_an_undocumented_chunk_type_fails_the_stream(env: Env) -> None:
    env.fake.script(
        PATH,
        Reply.sse(
            [wire.chunk("m", {"content": "ok"}), wire.chunk("m", {"content": [{"type": "hologram", "x": 1}]})]
        ),
    )
    got = await chat_stream(env.stub, pb.ChatRequest(model="mis/mistral-large-latest", messages=[user("Q")]))
    assert got.text == "ok"
    assert got.error is not None
    assert got.error.code() == grpc.StatusCode.UNAVAILABLE
    assert "'hologram'" in (got.error.details() or "")


async def test_tool_calls_with_object_arguments_and_nine_character_ids(env: Env) -> None:
    calls = [
        {"id": "null", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}, "index": 0},
        {"id": "D681PevKs", "function": {"name": "get_time", "arguments": '{"tz":"CET"}'}, "index": 1},
    ]
    env.script_twice(Reply.json(wire.completion("mistral-large-latest", "", "tool_calls", tool_calls=calls)))
    response = await env.stub.Chat(
        pb.ChatRequest(model="mis/mistral-large-latest", messages=[user("Q")]), timeout=10
    )
    answer = await env.sdk.chat.complete_async(
        model="mistral-large-latest", messages=[{"role": "user", "content": "Q"}]
    )
    sdk_calls = answer.choices[0].message.tool_calls or []
    sdk_args = [
        a if isinstance(a, dict) else json.loads(a) for a in (c.function.arguments for c in sdk_calls)
    ]
    assert [(c.name, json.loads(c.arguments_json)) for c in response.tool_calls] == [
        (c.function.name, a) for c, a in zip(sdk_calls, sdk_args, strict=True)
    ]
    ids = [c.id for c in response.tool_calls]
    assert ids[1] == "D681PevKs"
    assert all(len(i) == 9 and i.isalnum() for i in ids)
    assert response.finish.reason == pb.FINISH_REASON_TOOL_CALLS


async def test_multi_turn_sends_thinking_back_in_mistrals_format(env: Env) -> None:
    """The client copies reasoning_parts into the next turn; Mistral gets its ThinkChunk back,
    signature included, and the body is one the SDK's request model accepts."""
    first = await env.stub.Chat(
        pb.ChatRequest(
            model="mis/mistral-small-latest",
            messages=[user("Hi")],
            reasoning=pb.ReasoningOptions(effort=pb.ReasoningOptions.EFFORT_HIGH),
        ),
        timeout=10,
    )
    call = pb.ToolCall(id="call_abc_123456789", name="f", arguments_json="{}")
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
        content=[pb.ContentPart(tool_result=pb.ToolResult(tool_call_id=call.id, content="ok"))],
    )
    await env.stub.Chat(
        pb.ChatRequest(
            model="mis/mistral-small-latest", messages=[user("Hi"), assistant, result, user("More")]
        ),
        timeout=10,
    )
    sent = env.fake.last(PATH).json()
    mm.ChatCompletionRequest.model_validate(sent)  # the SDK's own request model takes it
    replayed = sent["messages"][1]
    assert replayed["content"] == [
        {
            "type": "thinking",
            "thinking": [{"type": "text", "text": "".join(wire.THINKING)}],
            "signature": wire.SIGNATURE,
        },
        {"type": "text", "text": "".join(wire.ANSWER)},
    ]
    short = replayed["tool_calls"][0]["id"]
    assert len(short) == 9
    assert sent["messages"][2]["tool_call_id"] == short


async def test_mistral_usage_fields_and_finish_error(env: Env) -> None:
    env.fake.script(
        PATH,
        Reply.sse(
            [wire.chunk("m", {"content": "a"}, "stop", usage=wire.usage(100, 5, num_cached_tokens=64))]
        ),
        Reply.sse([wire.chunk("m", {"content": "par"}), wire.chunk("m", {"content": ""}, "error")]),
    )
    got = await chat_stream(env.stub, pb.ChatRequest(model="mis/mistral-large-latest", messages=[user("Q")]))
    assert (got.usage.input_tokens, got.usage.cache_read_tokens) == (100, 64)
    assert got.usage.raw["num_cached_tokens"] == 64
    got = await chat_stream(env.stub, pb.ChatRequest(model="mis/mistral-large-latest", messages=[user("Q")]))
    assert got.text == "par"
    assert got.error is not None
    assert got.error.code() == grpc.StatusCode.UNAVAILABLE
    assert "finish" not in got.kinds()


async def test_json_schema_response_format_as_mistral_documents_it(env: Env) -> None:
    fmt = pb.ResponseFormat(type=pb.ResponseFormat.TYPE_JSON_SCHEMA, schema_name="Book", strict=True)
    fmt.json_schema.update({"type": "object", "properties": {"title": {"type": "string"}}})
    await env.stub.Chat(
        pb.ChatRequest(model="mis/mistral-large-latest", messages=[user("A book?")], response_format=fmt),
        timeout=10,
    )
    sent = env.fake.last(PATH).json()
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "Book",
            "schema": {"type": "object", "properties": {"title": {"type": "string"}}},
            "strict": True,
        },
    }
    parsed = mm.ChatCompletionRequest.model_validate(sent).response_format
    assert parsed is not None
    assert parsed.json_schema is not None
    assert (parsed.json_schema.name, parsed.json_schema.strict) == ("Book", True)


def test_thinking_another_vendor_issued_is_not_sent_to_mistral() -> None:
    """After a fallback, Claude's or OpenRouter's signed thinking stays out of Mistral's request, as
    every replay leaves out foreign signatures; Mistral's own and unmarked thinking go."""
    from provider_gateway.domain import ChatRequest, Message, ReasoningPart, Role, TextPart
    from provider_gateway.providers.openai.presets import PRESETS
    from provider_gateway.providers.openai.wires import wire_for

    turn = (
        ReasoningPart("Claude's.", signature="claude-sig", issuer="anthropic"),
        ReasoningPart("Relayed.", signature="or-sig", issuer="openrouter"),
        ReasoningPart("Own.", signature="own-sig", issuer="mistral"),
        ReasoningPart("Unmarked."),
        TextPart("Answer."),
    )
    messages = [
        Message(Role.USER, (TextPart("q"),)),
        Message(Role.ASSISTANT, turn),
        Message(Role.USER, (TextPart("more"),)),
    ]
    body = wire_for(PRESETS["mistral"]).chat_body(
        ChatRequest(model="magistral-medium-latest", messages=messages), stream=False
    )
    chunks = body["messages"][1]["content"]
    thinking = [(c["thinking"][0]["text"], c.get("signature")) for c in chunks if c["type"] == "thinking"]
    assert thinking == [("Own.", "own-sig"), ("Unmarked.", None)]
