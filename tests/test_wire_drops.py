"""Output the gateway used to drop, and answers it used to refuse that the official SDKs accept,
through the real gRPC server against a fake upstream on 127.0.0.1; each SDK (openai, google-genai,
botocore) reads the same bytes as the oracle:

- Gemini 3's thought signature on the tool calls of its OpenAI-compatible endpoint (the
  `gemini-openai` kind): read as the `gemini` kind reads `thoughtSignature` (a reasoning delta that
  closes a block), sent back on the first tool call of the replayed turn, to that host only;
- Gemini, Vertex and Cohere unary answers without a finish reason: UNSPECIFIED, as their streams;
- OpenAI audio output (`message.audio`, streamed `delta.audio`) as RawContent of type "audio";
- Bedrock Converse `additionalModelResponseFields` (unary body, ConverseStream `messageStop`) as
  RawContent of that type.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from botocore.config import Config
from botocore.session import get_session
from conftest import ADAPTER_ROUTING, run_gateway, use_fake_aws_credentials
from google import genai
from google.genai import types
from google.protobuf import struct_pb2
from replay.support import KEY, VERTEX_MODELS, Reasoning, ask, gateway_stream, gateway_unary, pieces

from provider_gateway.fakes import FakeUpstream, Reply
from provider_gateway.fakes.bedrock import ACCESS_KEY, SECRET_KEY, event_frame
from provider_gateway.v1 import provider_service_pb2 as pb

# google-genai's own aiohttp session subclass warns on import; nothing of the gateway's.
pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")

KEY_ENV = "PG_TEST_WIRE_DROPS_KEY"
GEMINI_OA = "/v1beta/openai"  # Google's OpenAI-compatible base path, on the fake
GEMINI_MODEL = "gemini-3-pro-preview"
GPT = "gpt-4o-audio-preview"
BEDROCK_MODEL = "anthropic.claude-sonnet-4-5-20250929-v1:0"
REGION = "us-west-2"
VERTEX_PATH = VERTEX_MODELS.format(publisher="google", model=GEMINI_MODEL)


@pytest.fixture(scope="module")
async def upstream() -> AsyncIterator[tuple[FakeUpstream, Any]]:
    """One fake behind a gateway with each provider the tests need, each named after its kind."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(KEY_ENV, KEY)
        use_fake_aws_credentials(patch)
        async with FakeUpstream() as fake:
            config = f"""
[providers.gemini-openai]
kind = "gemini-openai"
base_url = "{fake.url}{GEMINI_OA}"
api_key_env = "{KEY_ENV}"
[providers.openai]
kind = "openai"
base_url = "{fake.url}/v1"
api_key_env = "{KEY_ENV}"
[providers.gemini]
kind = "gemini"
base_url = "{fake.url}"
api_key_env = "{KEY_ENV}"
[providers.vertex]
kind = "vertex"
project = "replay-project"
location = "us-east5"
base_url = "{fake.url}"
access_token_env = "{KEY_ENV}"
[providers.cohere]
kind = "cohere"
base_url = "{fake.url}"
api_key_env = "{KEY_ENV}"
[providers.bedrock]
kind = "bedrock"
region = "{REGION}"
endpoint_url = "{fake.url}"
{ADAPTER_ROUTING}"""
            async with run_gateway(config) as gateway:
                yield fake, gateway.stub


def openai_sdk(fake: FakeUpstream, path: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{fake.url}{path}", api_key=KEY, max_retries=0)


def sse(*chunks: dict[str, Any]) -> Reply:
    """The chunks as SSE events, then `data: [DONE]`, written in pieces that split events."""
    body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    return Reply(status=200, chunks=pieces(body.encode()), content_type="text/event-stream")


def chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "chatcmpl-w", "object": "chat.completion.chunk", "created": 1, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip


def completion(model: str, message: dict[str, Any], finish: str) -> dict[str, Any]:
    return {"id": "chatcmpl-w", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}}  # fmt: skip


# --- Gemini's OpenAI-compatible endpoint: thought signatures on tool calls --------------------

# As Google documents the endpoint: each call whole, without `index`; only the first call of a
# turn carries the signature (parallel calls); a tool-calling turn ends with "stop".
SIGNED = {"id": "function-call-1", "type": "function",
          "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
          "extra_content": {"google": {"thought_signature": "CsMBAdHtim9sig=="}}}  # fmt: skip
UNSIGNED = {"id": "function-call-2", "type": "function",
            "function": {"name": "get_time", "arguments": '{"tz":"CET"}'}}  # fmt: skip
CALLS = [
    ("function-call-1", "get_weather", {"city": "Paris"}),
    ("function-call-2", "get_time", {"tz": "CET"}),
]


def sdk_signatures(calls: list[Any]) -> list[str]:
    """The signatures the openai SDK keeps on tool calls (an extra field of its models)."""
    extras = [call.to_dict().get("extra_content") for call in calls]
    return [extra["google"]["thought_signature"] for extra in extras if extra]


async def test_a_streamed_tool_calls_thought_signature_reaches_the_client(
    upstream: tuple[FakeUpstream, Any],
) -> None:
    fake, stub = upstream
    reply = sse(
        chunk(GEMINI_MODEL, {"role": "assistant", "tool_calls": [SIGNED]}),
        chunk(GEMINI_MODEL, {"tool_calls": [UNSIGNED]}),
        chunk(GEMINI_MODEL, {}, "stop"),
    )
    fake.script(f"{GEMINI_OA}/chat/completions", reply, reply)
    ours, error = await gateway_stream(stub, ask(f"gemini-openai/{GEMINI_MODEL}"))
    theirs = []
    async for piece in await openai_sdk(fake, GEMINI_OA).chat.completions.create(
        model=GEMINI_MODEL, messages=[{"role": "user", "content": "Go on."}], stream=True
    ):
        theirs += sdk_signatures(piece.choices[0].delta.tool_calls or [] if piece.choices else [])
    assert error is None, error.details()
    assert theirs == ["CsMBAdHtim9sig=="]
    assert ours.reasoning == [Reasoning("", "CsMBAdHtim9sig==")]
    assert ours.tool_calls == CALLS
    assert ours.finish_reason == pb.FINISH_REASON_TOOL_CALLS


async def test_a_unary_tool_calls_thought_signature_reaches_the_client(
    upstream: tuple[FakeUpstream, Any],
) -> None:
    fake, stub = upstream
    message = {"role": "assistant", "content": None, "tool_calls": [SIGNED, UNSIGNED]}
    reply = Reply.json(completion(GEMINI_MODEL, message, "stop"))
    fake.script(f"{GEMINI_OA}/chat/completions", reply, reply)
    ours = await stub.Chat(ask(f"gemini-openai/{GEMINI_MODEL}"), timeout=20)
    theirs = await openai_sdk(fake, GEMINI_OA).chat.completions.create(
        model=GEMINI_MODEL, messages=[{"role": "user", "content": "Go on."}]
    )
    assert sdk_signatures(theirs.choices[0].message.tool_calls) == ["CsMBAdHtim9sig=="]
    assert [(p.text, p.signature) for p in ours.reasoning_parts] == [("", "CsMBAdHtim9sig==")]
    assert ours.reasoning_signature == "CsMBAdHtim9sig=="
    assert [(c.id, c.name, json.loads(c.arguments_json)) for c in ours.tool_calls] == CALLS


def next_turn(signature: str, issuer: str = "") -> list[pb.Message]:
    """The turn after the calls, as a client builds it from the answer: the reasoning block (the
    signature, and who issued it), the calls, their results."""
    calls = [pb.ToolCall(id=i, name=n, arguments_json=json.dumps(a)) for i, n, a in CALLS]
    assistant = [pb.ContentPart(reasoning=pb.Reasoning(signature=signature, issuer=issuer))]
    assistant += [pb.ContentPart(tool_call=c) for c in calls]
    results = [pb.ContentPart(tool_result=pb.ToolResult(tool_call_id=c.id, content="ok")) for c in calls]
    return [
        pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text="Weather and time?")]),
        pb.Message(role=pb.ROLE_ASSISTANT, content=assistant),
        pb.Message(role=pb.ROLE_TOOL, content=results),
    ]


@pytest.mark.parametrize(("provider", "path"), [("gemini-openai", GEMINI_OA), ("openai", "/v1")])
async def test_the_signature_goes_back_on_the_first_call_to_gemini_only(
    upstream: tuple[FakeUpstream, Any], provider: str, path: str
) -> None:
    fake, stub = upstream
    reply = Reply.json(completion(GEMINI_MODEL, {"role": "assistant", "content": "Sunny, 10:00."}, "stop"))
    fake.script(f"{path}/chat/completions", reply)
    request = pb.ChatRequest(model=f"{provider}/{GEMINI_MODEL}", messages=next_turn("CsMBAdHtim9sig=="))
    assert (await stub.Chat(request, timeout=20)).text == "Sunny, 10:00."
    sent = fake.last(f"{path}/chat/completions").json()["messages"][1]["tool_calls"]
    extra = [call.get("extra_content") for call in sent]
    if provider == "gemini-openai":
        assert extra == [{"google": {"thought_signature": "CsMBAdHtim9sig=="}}, None]
    else:  # another host would reject (or misread) Google's field
        assert extra == [None, None]


@pytest.mark.parametrize(
    ("issuer", "sent"), [("gemini", "CsMBAdHtim9sig=="), ("anthropic", None), ("", "sig")]
)
async def test_only_gemini_signatures_go_back_to_gemini_openai(
    upstream: tuple[FakeUpstream, Any], issuer: str, sent: str | None
) -> None:
    # After a fallback, a history can hold Claude's signature: Gemini would refuse it, so it is left
    # out; one of unknown issuer (an older client) goes as before.
    fake, stub = upstream
    reply = Reply.json(completion(GEMINI_MODEL, {"role": "assistant", "content": "Sunny, 10:00."}, "stop"))
    fake.script(f"{GEMINI_OA}/chat/completions", reply)
    signature = sent or "EqQBCkYIBxgCKkDclaude=="
    request = pb.ChatRequest(model=f"gemini-openai/{GEMINI_MODEL}", messages=next_turn(signature, issuer))
    assert (await stub.Chat(request, timeout=20)).text == "Sunny, 10:00."
    calls = fake.last(f"{GEMINI_OA}/chat/completions").json()["messages"][1]["tool_calls"]
    expected = None if sent is None else {"google": {"thought_signature": sent}}
    assert calls[0].get("extra_content") == expected


# --- Gemini, Vertex and Cohere: a whole answer without a finish reason -------------------------

UNFINISHED = {
    "candidates": [{"content": {"role": "model", "parts": [{"text": "Half of it"}]}, "index": 0}],
    "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 3, "totalTokenCount": 7},
    "modelVersion": GEMINI_MODEL,
    "responseId": "r-1",
}
GENERATE = {
    "gemini": f"/v1beta/models/{GEMINI_MODEL}:generateContent",
    "vertex": f"{VERTEX_PATH}:generateContent",
}


@pytest.mark.parametrize("host", GENERATE)
async def test_a_whole_gemini_answer_without_a_finish_reason_is_unspecified(
    upstream: tuple[FakeUpstream, Any], host: str
) -> None:
    """google-genai reads the body as an answer whose finish_reason is None; the gateway answers it
    with FINISH_REASON_UNSPECIFIED (never a claimed STOP), as a stream's unspecified reason."""
    fake, stub = upstream
    fake.script(GENERATE[host], Reply.json(UNFINISHED))
    fake.script(GENERATE["gemini"], Reply.json(UNFINISHED))
    ours = await gateway_unary(stub, ask(f"{host}/{GEMINI_MODEL}"))
    sdk = genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=fake.url, api_version="v1beta"))
    theirs = await sdk.aio.models.generate_content(model=GEMINI_MODEL, contents="Go on.")
    assert theirs.candidates
    assert theirs.candidates[0].finish_reason is None
    assert ours.text == theirs.text == "Half of it"
    assert (ours.finish_reason, ours.raw_finish_reason) == (pb.FINISH_REASON_UNSPECIFIED, "")
    assert (ours.usage["input"], ours.usage["output"]) == (4, 3)


def cohere_events(*events: dict[str, Any]) -> Reply:
    body = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)
    return Reply(status=200, chunks=pieces(body.encode()), content_type="text/event-stream")


async def test_a_whole_cohere_answer_without_a_finish_reason_is_read_as_its_stream(
    upstream: tuple[FakeUpstream, Any],
) -> None:
    """No cohere SDK in this environment: the oracle is the stream's rule (a message-end without
    a finish_reason is UNSPECIFIED), which the unary answer must match."""
    fake, stub = upstream
    usage = {
        "billed_units": {"input_tokens": 4, "output_tokens": 3},
        "tokens": {"input_tokens": 4, "output_tokens": 3},
    }
    message = {"role": "assistant", "content": [{"type": "text", "text": "Half of it"}]}
    fake.script("/v2/chat", Reply.json({"id": "c-1", "message": message, "usage": usage}))
    fake.script("/v2/chat", cohere_events(
        {"type": "message-start", "id": "c-1", "delta": {"message": {"role": "assistant"}}},
        {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "Half of it"}}}},
        {"type": "message-end", "delta": {"usage": usage}},
    ))  # fmt: skip
    ours = await gateway_unary(stub, ask("cohere/command-a-03-2025"))
    streamed, error = await gateway_stream(stub, ask("cohere/command-a-03-2025"))
    assert error is None, error.details()
    assert (ours.text, ours.finish_reason, ours.raw_finish_reason) == (
        "Half of it",
        pb.FINISH_REASON_UNSPECIFIED,
        "",
    )
    assert ours == streamed


# --- OpenAI audio output -------------------------------------------------------------------------

AUDIO_OPTIONS = {"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}}


def audio_request() -> pb.ChatRequest:
    options = struct_pb2.Struct()
    options.update(AUDIO_OPTIONS)
    request = ask(f"openai/{GPT}")
    request.provider_options.CopyFrom(options)
    return request


async def test_unary_audio_output_reaches_the_client_as_raw_content(
    upstream: tuple[FakeUpstream, Any],
) -> None:
    fake, stub = upstream
    audio = {"id": "audio_abc123", "data": "UklGRiQAAABXQVZF", "expires_at": 1729018505,
             "transcript": "Hello there."}  # fmt: skip
    message = {"role": "assistant", "content": None, "refusal": None, "audio": audio}
    reply = Reply.json(completion(GPT, message, "stop"))
    fake.script("/v1/chat/completions", reply, reply)
    ours = await gateway_unary(stub, audio_request())
    sent = fake.last("/v1/chat/completions").json()
    theirs = await openai_sdk(fake, "/v1").chat.completions.create(
        model=GPT,
        messages=[{"role": "user", "content": "Go on."}],
        **AUDIO_OPTIONS,  # type: ignore[arg-type]
    )
    assert theirs.choices[0].message.audio is not None
    assert (sent["modalities"], sent["audio"]) == (AUDIO_OPTIONS["modalities"], AUDIO_OPTIONS["audio"])
    assert ours.raw_content == [("audio", theirs.choices[0].message.audio.to_dict())]
    assert ours.finish_reason == pb.FINISH_REASON_STOP


async def test_streamed_audio_pieces_reach_the_client_each_as_it_comes(
    upstream: tuple[FakeUpstream, Any],
) -> None:
    fake, stub = upstream
    pieces_sent = [
        {"id": "audio_abc123", "transcript": "Hello"},
        {"transcript": " there."},
        {"data": "UklGRiQA"},
        {"data": "AABXQVZF", "expires_at": 1729018505},
    ]
    reply = sse(
        chunk(GPT, {"role": "assistant", "content": None}),
        *[chunk(GPT, {"audio": piece}) for piece in pieces_sent],
        chunk(GPT, {}, "stop"),
    )
    fake.script("/v1/chat/completions", reply, reply)
    ours, error = await gateway_stream(stub, audio_request())
    theirs = []
    async for piece in await openai_sdk(fake, "/v1").chat.completions.create(
        model=GPT,
        messages=[{"role": "user", "content": "Go on."}],
        stream=True,
        **AUDIO_OPTIONS,  # type: ignore[call-overload]
    ):
        theirs += [audio for choice in piece.choices if (audio := choice.delta.to_dict().get("audio"))]
    assert error is None, error.details()
    assert theirs == pieces_sent
    assert ours.raw_content == [("audio", piece) for piece in theirs]
    assert ours.finish_reason == pb.FINISH_REASON_STOP


# --- Bedrock Converse additionalModelResponseFields ----------------------------------------------

FIELD_PATHS = {"additionalModelResponseFieldPaths": ["/stop_sequence"]}
MODEL_FIELDS = {"stop_sequence": "###"}


def bedrock_request() -> pb.ChatRequest:
    options = struct_pb2.Struct()
    options.update(FIELD_PATHS)
    request = ask(f"bedrock/{BEDROCK_MODEL}")
    request.provider_options.CopyFrom(options)
    return request


def botocore(fake: FakeUpstream, operation: str) -> Any:
    """botocore's own client reading the fake (in a thread: it blocks, the fake runs on this loop)."""

    def run() -> Any:
        client = get_session().create_client(
            "bedrock-runtime",
            region_name=REGION,
            endpoint_url=fake.url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(retries={"total_max_attempts": 1}),
        )
        response = getattr(client, operation)(
            modelId=BEDROCK_MODEL, messages=[{"role": "user", "content": [{"text": "Go on."}]}], **FIELD_PATHS
        )
        return list(response["stream"]) if operation == "converse_stream" else response

    return asyncio.to_thread(run)


async def test_converse_model_response_fields_reach_the_client(upstream: tuple[FakeUpstream, Any]) -> None:
    fake, stub = upstream
    body = {
        "output": {"message": {"role": "assistant", "content": [{"text": "Counted to three"}]}},
        "stopReason": "stop_sequence",
        "usage": {"inputTokens": 5, "outputTokens": 4, "totalTokens": 9},
        "metrics": {"latencyMs": 120},
        "additionalModelResponseFields": MODEL_FIELDS,
    }
    path = f"/model/{BEDROCK_MODEL}/converse"
    fake.script(path, Reply.json(body), Reply.json(body))
    ours = await gateway_unary(stub, bedrock_request())
    assert fake.last(path).json()["additionalModelResponseFieldPaths"] == ["/stop_sequence"]
    theirs = await botocore(fake, "converse")
    assert theirs["additionalModelResponseFields"] == MODEL_FIELDS
    assert ours.text == "Counted to three"
    assert ours.raw_content == [("additionalModelResponseFields", theirs["additionalModelResponseFields"])]


async def test_converse_stream_model_response_fields_reach_the_client(
    upstream: tuple[FakeUpstream, Any],
) -> None:
    fake, stub = upstream
    frames = [
        event_frame("messageStart", {"role": "assistant"}),
        event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Counted to three"}}),
        event_frame("contentBlockStop", {"contentBlockIndex": 0}),
        event_frame("messageStop", {"stopReason": "stop_sequence", "additionalModelResponseFields": MODEL_FIELDS}),
        event_frame("metadata", {"usage": {"inputTokens": 5, "outputTokens": 4, "totalTokens": 9},
                                 "metrics": {"latencyMs": 120}}),
    ]  # fmt: skip
    reply = Reply(
        status=200, chunks=pieces(b"".join(frames)), content_type="application/vnd.amazon.eventstream"
    )
    path = f"/model/{BEDROCK_MODEL}/converse-stream"
    fake.script(path, reply, reply)
    ours, error = await gateway_stream(stub, bedrock_request())
    assert fake.last(path).json()["additionalModelResponseFieldPaths"] == ["/stop_sequence"]
    events = await botocore(fake, "converse_stream")
    (stop,) = [e["messageStop"] for e in events if "messageStop" in e]
    assert error is None, error.details()
    assert ours.text == "Counted to three"
    assert ours.raw_content == [("additionalModelResponseFields", stop["additionalModelResponseFields"])]
