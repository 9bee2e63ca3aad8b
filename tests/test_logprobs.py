"""Token log-probabilities (`ChatRequest.logprobs`) through the real gRPC server on the fakes.

The fakes serve logprobs as the vendors document them; the official SDKs (`openai`,
`google-genai`), reading the same bytes from the same fake, are the oracles: the gateway's entries
(`ChatResponse.logprobs`, the stream's `TextDelta.logprobs`) hold the same tokens, numbers, bytes
and alternatives, unary and streamed. Providers without logprobs refuse the request, naming the
field and the model; the vendors' own fields are refused in provider_options.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from conftest import run_gateway
from google import genai
from google.genai import types
from google.protobuf import struct_pb2
from logprobs_support import CHAT_PATH, TOP, Entry, Env, logprobs_env
from replay.support import KEY as GEMINI_KEY
from replay.support import replay_gateway
from upstream_support import Collected, chat_stream, user

from provider_gateway import domain as d
from provider_gateway.fakes import FakeUpstream, Reply, kinds
from provider_gateway.fakes import chat_completions as cc
from provider_gateway.fakes import gemini as fake_gemini
from provider_gateway.fakes import logprobs as lp
from provider_gateway.fakes import openai_responses as fake_responses
from provider_gateway.fakes.server import _sse_piece
from provider_gateway.server.split_deltas import scored_bytes, within
from provider_gateway.v1 import provider_service_pb2 as pb
from provider_gateway_client import GatewayClient, Text
from provider_gateway_client import pb as client_pb

pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")

RESPONSES_PATH = "/v1/responses"


@pytest.fixture(scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    async with logprobs_env(tmp_path_factory.mktemp("keys"), responses=True) as env:
        yield env


def ask(model: str, top: int = TOP, **fields: Any) -> pb.ChatRequest:
    return pb.ChatRequest(
        model=model,
        messages=[user("Say hello")],
        logprobs=pb.LogprobsOptions(enabled=True, top_logprobs=top),
        **fields,
    )


def ours(entries: Any) -> list[Entry]:
    def one(e: pb.TokenLogprob) -> tuple[str, float, bytes | None]:
        return e.token, e.logprob, e.bytes if e.HasField("bytes") else None

    return [(*one(e), [one(t) for t in e.top_logprobs]) for e in entries]


def openai_sdk(entries: Any) -> list[Entry]:
    """The SDK's `ChatCompletionTokenLogprob`s (or the Responses API's `Logprob`s)."""

    def one(e: Any) -> tuple[str, float, bytes | None]:
        return e.token, e.logprob, None if e.bytes is None else bytes(e.bytes)

    return [(*one(e), [one(t) for t in e.top_logprobs]) for e in entries]


def streamed(got: Collected) -> list[Entry]:
    assert got.error is None, got.error.details()
    return ours(entry for delta in got.of("text_delta") for entry in delta.logprobs)


# --- OpenAI Chat Completions -----------------------------------------------------------------------


async def test_a_chat_answer_carries_the_logprobs_the_sdk_reads(env: Env) -> None:
    response = await env.stub.Chat(ask("oa/gpt-4o"), timeout=10)
    sent = env.fake.last(CHAT_PATH).json()
    assert (sent["logprobs"], sent["top_logprobs"]) == (True, TOP)
    answer = await env.sdk.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Say hello"}], logprobs=True, top_logprobs=TOP
    )
    logprobs = answer.choices[0].logprobs
    assert logprobs is not None
    assert logprobs.content is not None
    assert ours(response.logprobs) == openai_sdk(logprobs.content)
    assert len(response.logprobs) == len(kinds.GREETING)
    assert all(len(e.top_logprobs) == TOP for e in response.logprobs)
    assert "".join(e.token for e in response.logprobs) == response.text


async def test_a_stream_carries_each_tokens_logprobs_on_its_text(env: Env) -> None:
    got = await chat_stream(env.stub, ask("oa/gpt-4o"))
    sdk_entries: list[Any] = []
    async for chunk in await env.sdk.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "Say hello"}],
        logprobs=True,
        top_logprobs=TOP,
        stream=True,
    ):
        for choice in chunk.choices:
            if choice.logprobs is not None:
                sdk_entries.extend(choice.logprobs.content or [])
    assert streamed(got) == openai_sdk(sdk_entries)
    for delta in got.of("text_delta"):  # each delta's entries spell its own text
        assert "".join(e.token for e in delta.logprobs) == delta.text


def split_character_body() -> bytes:
    """A stream whose `é` is two tokens (OpenAI names each by its byte), all in one write."""
    tokens: list[str | bytes] = ["Caf", b"\xc3", b"\xa9", " ouvert"]
    texts = ["Caf", "", "é", " ouvert"]
    events: list[Any] = [cc.chunk("gpt-4o", {"role": "assistant", "content": "", "refusal": None})]
    events += [
        cc.chunk("gpt-4o", {"content": text}, logprobs=cc.content_logprobs(lp.openai_entries([tok], 2, i)))
        for i, (tok, text) in enumerate(zip(tokens, texts, strict=True))
    ]
    events += [cc.chunk("gpt-4o", {}, "stop"), cc.usage_chunk("gpt-4o", cc.usage(5, 4)), "data: [DONE]\n\n"]
    return b"".join(_sse_piece(e) for e in events)


async def test_tokens_read_together_are_joined_with_every_entry_in_order(env: Env) -> None:
    body = split_character_body()
    reply = Reply(chunks=[body], content_type="text/event-stream")
    env.fake.script(CHAT_PATH, reply, reply)
    got = await chat_stream(env.stub, ask("oa/gpt-4o", top=2))
    sdk_entries: list[Any] = []
    async for chunk in await env.sdk.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "x"}],
        logprobs=True,
        top_logprobs=2,
        stream=True,
    ):
        for choice in chunk.choices:
            sdk_entries.extend(choice.logprobs.content or [] if choice.logprobs else [])
    assert streamed(got) == openai_sdk(sdk_entries)
    # One read: fewer messages than tokens, one of them carrying several tokens' entries.
    assert any(len(delta.logprobs) > 1 for delta in got.of("text_delta"))
    # The entries' bytes spell the text exactly, the character split across two tokens included.
    entries = [e for delta in got.of("text_delta") for e in delta.logprobs]
    assert b"".join(e.bytes for e in entries) == got.text.encode() == "Café ouvert".encode()


async def test_without_logprobs_nothing_is_asked_nor_returned(env: Env) -> None:
    plain = pb.ChatRequest(model="oa/gpt-4o", messages=[user("Say hello")])
    response = await env.stub.Chat(plain, timeout=10)
    assert not ({"logprobs", "top_logprobs"} & set(env.fake.last(CHAT_PATH).json()))
    assert response.text
    assert not response.logprobs
    got = await chat_stream(env.stub, plain)
    assert got.text
    assert not streamed(got)


async def test_the_vendors_own_logprobs_fields_are_refused_in_provider_options(env: Env) -> None:
    options = struct_pb2.Struct()
    options.update({"logprobs": True, "top_logprobs": 2})
    request = pb.ChatRequest(model="oa/gpt-4o", messages=[user("x")], provider_options=options)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await env.stub.Chat(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "logprobs" in (caught.value.details() or "")


async def test_the_python_client_gives_the_entries_typed(env: Env) -> None:
    asked = client_pb.LogprobsOptions(enabled=True, top_logprobs=2)
    async with GatewayClient(env.target, timeout=10) as client:
        result = await client.chat("oa/gpt-4o", "Say hello", logprobs=asked)
        async with client.chat_stream("oa/gpt-4o", "Say hello", logprobs=asked) as stream:
            texts = [event async for event in stream if isinstance(event, Text)]
            final = await stream.final()
    assert [e.token for e in result.logprobs] == kinds.GREETING
    assert [e.token for text in texts for e in text.logprobs] == kinds.GREETING
    assert ours(final.logprobs) == ours(result.logprobs)


def test_a_delta_split_to_fit_the_message_limit_spreads_its_entries_with_their_text() -> None:
    """Before, every entry rode on the last piece, which outgrew the limit with them
    (tests/test_send_limit_logprobs.py)."""
    entries = tuple(d.TokenLogprob("ab", -0.5) for _ in range(3000))
    delta = d.TextDeltaWithLogprobs("ab" * 3000, entries)
    pieces = within([delta], 1024)
    assert len(pieces) > 1
    assert "".join(p.text for p in pieces if isinstance(p, d.TextDelta)) == delta.text
    scored = [p for p in pieces if isinstance(p, d.TextDeltaWithLogprobs)]
    assert [e for p in scored for e in p.logprobs] == list(entries)
    assert all(p.text == "ab" * len(p.logprobs) and scored_bytes(p) <= 1024 for p in scored)


async def test_the_mock_scores_each_word_so_the_no_credential_server_shows_the_feature() -> None:
    async with run_gateway() as gateway:
        response = await gateway.stub.Chat(ask("mock/echo", top=20), timeout=10)
        got = await chat_stream(gateway.stub, ask("mock/echo", top=2))
    assert "".join(e.token for e in response.logprobs) == response.text
    assert [len(e.top_logprobs) for e in response.logprobs] == [20] * len(response.logprobs)
    assert streamed(got) == [(*e[:3], e[3][:2]) for e in ours(response.logprobs)]


# --- OpenAI Responses API --------------------------------------------------------------------------


async def test_the_responses_api_gives_the_logprobs_the_sdk_reads(env: Env) -> None:
    include: Any = ["message.output_text.logprobs"]
    response = await env.stub.Chat(ask("rs/gpt-4.1"), timeout=10)
    sent = env.fake.last(RESPONSES_PATH).json()
    assert "message.output_text.logprobs" in sent["include"]
    assert sent["top_logprobs"] == TOP
    answer = await env.sdk.responses.create(model="gpt-4.1", input="x", include=include, top_logprobs=TOP)
    parts = [p for item in answer.output if item.type == "message" for p in item.content]
    expected = openai_sdk(e for p in parts if p.type == "output_text" for e in p.logprobs or [])
    assert ours(response.logprobs) == expected
    assert len(expected) == len(fake_responses.TEXT)

    got = await chat_stream(env.stub, ask("rs/gpt-4.1"))
    deltas: list[Any] = []
    async with env.sdk.responses.stream(
        model="gpt-4.1", input="x", include=include, top_logprobs=TOP
    ) as stream:
        async for event in stream:
            if event.type == "response.output_text.delta":
                deltas.extend(event.logprobs)
    assert streamed(got) == openai_sdk(deltas) == expected


# --- refusals ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "why"),
    [
        ("ant/claude-sonnet-4-5", "Claude has no logprobs"),
        ("groq/llama-3.3-70b-versatile", "Groq"),
        ("oa/o3-mini", "reasoning models"),
        ("rs/gpt-5", "reasoning models"),
    ],
)
async def test_a_provider_without_logprobs_refuses_naming_the_field_and_model(
    env: Env, model: str, why: str
) -> None:
    before = len(env.fake.requests)
    for call in (env.stub.Chat(ask(model), timeout=10), chat_stream(env.stub, ask(model))):
        try:
            outcome = await call
        except grpc.aio.AioRpcError as error:
            outcome = Collected(error=error)
        assert isinstance(outcome, Collected)
        assert outcome.error is not None
        assert outcome.error.code() == grpc.StatusCode.FAILED_PRECONDITION
        details = outcome.error.details() or ""
        for named in ("logprobs", model.split("/")[1], why):
            assert named in details, details
    assert len(env.fake.requests) == before  # refused before anything was sent


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        (pb.LogprobsOptions(enabled=True, top_logprobs=21), "between 0 and 20"),
        (pb.LogprobsOptions(enabled=True, top_logprobs=-1), "between 0 and 20"),
        (pb.LogprobsOptions(top_logprobs=5), "set logprobs.enabled"),
    ],
)
async def test_top_logprobs_out_of_range_or_without_enabled_is_invalid(
    env: Env, options: pb.LogprobsOptions, complaint: str
) -> None:
    request = pb.ChatRequest(model="oa/gpt-4o", messages=[user("x")], logprobs=options)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await env.stub.Chat(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert complaint in (caught.value.details() or "")


# --- Gemini ------------------------------------------------------------------------------------------

GEMINI = "gemini-2.5-flash"
GEMINI_STREAM = f"/v1beta/models/{GEMINI}:streamGenerateContent"
GEMINI_UNARY = f"/v1beta/models/{GEMINI}:generateContent"


@pytest.fixture(scope="module")
async def gemini() -> AsyncIterator[tuple[FakeUpstream, Any]]:
    async with replay_gateway("gemini") as running:
        yield running


def gemini_sdk(fake: FakeUpstream) -> tuple[genai.Client, types.GenerateContentConfig]:
    client = genai.Client(
        api_key=GEMINI_KEY, http_options=types.HttpOptions(base_url=fake.url, api_version="v1beta")
    )
    return client, types.GenerateContentConfig(response_logprobs=True, logprobs=TOP)


def genai_entries(result: types.LogprobsResult | None) -> list[Entry]:
    """The SDK's chosen candidates with their step's top candidates (no bytes: Gemini gives none).
    A missing logProbability (proto3 JSON leaves zero out) is the SDK's None: 0.0."""
    assert result is not None
    tops = result.top_candidates or []

    def one(c: types.LogprobsResultCandidate) -> tuple[str, float, bytes | None]:
        return c.token or "", c.log_probability or 0.0, None

    return [
        (*one(c), [one(t) for t in (tops[i].candidates or [])] if i < len(tops) else [])
        for i, c in enumerate(result.chosen_candidates or [])
    ]


async def test_gemini_logprobs_unary_and_streamed_read_as_the_sdk_reads_them(
    gemini: tuple[FakeUpstream, Any],
) -> None:
    fake, stub = gemini
    frames, _ = fake_gemini.frames_for("ok", GEMINI, top=TOP)
    stream_reply = Reply(chunks=[f.encode() for f in frames], content_type="text/event-stream")
    fake.script(GEMINI_STREAM, stream_reply, stream_reply)
    unary_reply = Reply.json(fake_gemini.generate_body("ok", GEMINI, top=TOP))
    fake.script(GEMINI_UNARY, unary_reply, unary_reply)
    client, config = gemini_sdk(fake)

    response = await stub.Chat(ask(f"gemini/{GEMINI}"), timeout=10)
    generation = fake.last(GEMINI_UNARY).json()["generationConfig"]
    assert (generation["responseLogprobs"], generation["logprobs"]) == (True, TOP)
    answer = await client.aio.models.generate_content(model=GEMINI, contents="x", config=config)
    assert answer.candidates
    expected = genai_entries(answer.candidates[0].logprobs_result)
    assert ours(response.logprobs) == expected
    assert expected[0][1] == 0.0
    assert len(expected[0][3]) == TOP

    got = await chat_stream(stub, ask(f"gemini/{GEMINI}"))
    sdk_streamed: list[Entry] = []
    async for chunk in await client.aio.models.generate_content_stream(
        model=GEMINI, contents="x", config=config
    ):
        if chunk.candidates and chunk.candidates[0].logprobs_result is not None:
            sdk_streamed += genai_entries(chunk.candidates[0].logprobs_result)
    assert streamed(got) == sdk_streamed == expected
    assert got.text == response.text == "".join(e[0] for e in expected)
