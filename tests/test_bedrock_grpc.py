"""Bedrock end to end: the real gRPC API -> the gateway (its own SigV4 transport on the shared HTTP
pool) -> a fake Bedrock endpoint.

The fake speaks the real wire formats (JSON, AWS JSON errors, binary eventstream frames) and checks
every request's SigV4 signature with botocore's signer; tests/test_bedrock_transport.py compares the
gateway's requests and decoding with botocore's own client.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime
import json
import struct
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from conftest import ADAPTER_ROUTING, use_fake_aws_credentials
from google.protobuf import struct_pb2
from test_bedrock_transport import with_botocore

from provider_gateway.fakes.bedrock import (
    ACCESS_KEY,
    SECRET_KEY,
    FakeBedrock,
    Reply,
    event_frame,
    exception_frame,
    fake_vector,
)
from provider_gateway.v1 import provider_service_pb2 as pb

CLAUDE = "anthropic.claude-3-5-sonnet-20241022-v2:0"
CLAUDE_THINKING = "anthropic.claude-sonnet-4-5-20250929-v1:0"
FAMILY_MODELS = {
    "anthropic": "anthropic.claude-3-haiku-20240307-v1:0",
    "nova": "amazon.nova-lite-v1:0",
    "titan": "amazon.titan-text-express-v1",
    "llama": "meta.llama3-8b-instruct-v1:0",
    "mistral": "mistral.mistral-7b-instruct-v0:2",
    "cohere": "cohere.command-r-v1:0",
}
WAIT_S = 20  # generous: eight engineers share this machine


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials from the environment, and nothing that could reach a real AWS service."""
    use_fake_aws_credentials(monkeypatch)


def config(url: str, region: str = "us-west-2", extra: str = "") -> str:
    return f"""
[providers.bedrock]
kind = "bedrock"
region = "{region}"
endpoint_url = "{url}"
{extra}
{ADAPTER_ROUTING}"""


@pytest.fixture
async def fake(aws_env: None) -> AsyncIterator[FakeBedrock]:
    async with FakeBedrock() as running:
        yield running


@pytest.fixture
async def gw(fake: FakeBedrock, gateway_factory: Any) -> AsyncIterator[Any]:
    async with gateway_factory(config(fake.url)) as running:
        yield running


def user(text: str, *, cache: bool = False) -> pb.Message:
    return pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text=text, cache_breakpoint=cache)])


def chat(model: str = CLAUDE, *messages: pb.Message, **fields: Any) -> pb.ChatRequest:
    return pb.ChatRequest(model=f"bedrock/{model}", messages=list(messages) or [user("Hi")], **fields)


async def collect(call: Any) -> list[pb.StreamEvent]:
    return [event async for event in call]


async def collect_until_error(call: Any) -> tuple[list[pb.StreamEvent], grpc.aio.AioRpcError]:
    """The events a stream delivered before it ended with an error status (which it must)."""
    received: list[pb.StreamEvent] = []
    try:
        async for event in call:
            received.append(event)
    except grpc.aio.AioRpcError as error:
        return received, error
    raise AssertionError(f"the stream ended cleanly after {len(received)} events")


def corrupt(frame: bytes) -> bytearray:
    damaged = bytearray(frame)
    damaged[-6] ^= 0xFF  # a payload byte: the message CRC no longer matches
    return damaged


def chunk_frame_raw(payload: bytes) -> bytes:
    return event_frame("chunk", {"bytes": base64.b64encode(payload).decode()})


def kinds(events: list[pb.StreamEvent]) -> list[str]:
    """The stream's shape, consecutive repeats collapsed: the server joins deltas in hand."""
    names = [e.WhichOneof("event") for e in events]
    return [name for i, name in enumerate(names) if i == 0 or names[i - 1] != name]


def text_of(events: list[pb.StreamEvent]) -> str:
    return "".join(e.text_delta.text for e in events)


def assert_signed(fake: FakeBedrock, region: str = "us-west-2") -> None:
    assert fake.seen, "the fake saw no request"
    for seen in fake.seen:
        assert seen.signature_valid, seen.operation
        assert (seen.region, seen.service) == (region, "bedrock")
        assert seen.headers["Authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/")
        assert f"/{region}/bedrock/aws4_request" in seen.headers["Authorization"]


# --- chat through Converse ---------------------------------------------------------------------


async def test_chat_stream_sends_signed_converse_and_streams_text_usage_finish(
    gw: Any, fake: FakeBedrock
) -> None:
    system = pb.Message(role=pb.ROLE_SYSTEM, content=[pb.ContentPart(text="Be brief.")])
    request = chat(CLAUDE, system, user("Hi"), max_tokens=100, temperature=0.5, stop=["END"])
    events = await collect(gw.stub.ChatStream(request))
    assert kinds(events) == ["text_delta", "usage", "finish"]
    assert text_of(events) == "Hello from Bedrock"
    usage, finish = events[-2].usage, events[-1].finish
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (11, 5, 16)
    assert usage.raw["latencyMs"] == 42
    assert (finish.provider, finish.model, finish.reason, finish.raw_finish_reason) == (
        "bedrock",
        CLAUDE,
        pb.FINISH_REASON_STOP,
        "end_turn",
    )
    seen = fake.last("converse-stream")
    assert seen.model_id == CLAUDE
    assert seen.body["system"] == [{"text": "Be brief."}]
    assert seen.body["messages"] == [{"role": "user", "content": [{"text": "Hi"}]}]
    assert seen.body["inferenceConfig"] == {"maxTokens": 100, "temperature": 0.5, "stopSequences": ["END"]}
    assert_signed(fake)


@pytest.mark.parametrize("family", sorted(FAMILY_MODELS))
async def test_chat_stream_works_for_every_family(gw: Any, fake: FakeBedrock, family: str) -> None:
    events = await collect(gw.stub.ChatStream(chat(FAMILY_MODELS[family])))
    assert text_of(events) == "Hello from Bedrock"
    assert fake.last("converse-stream").model_id == FAMILY_MODELS[family]


async def test_unary_chat_uses_converse(gw: Any, fake: FakeBedrock) -> None:
    response = await gw.stub.Chat(chat())
    assert response.text == "Hello from Bedrock"
    assert response.usage.input_tokens == 11
    assert fake.last().operation == "converse"


async def test_tool_use_round_trip(gw: Any, fake: FakeBedrock) -> None:
    fake.push(
        Reply(
            frames=[
                event_frame("messageStart", {"role": "assistant"}),
                event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Checking."}}),
                event_frame("contentBlockStop", {"contentBlockIndex": 0}),
                event_frame(
                    "contentBlockStart",
                    {
                        "contentBlockIndex": 1,
                        "start": {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather"}},
                    },
                ),
                event_frame(
                    "contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"city":'}}}
                ),
                event_frame(
                    "contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '"Paris"}'}}}
                ),
                event_frame("contentBlockStop", {"contentBlockIndex": 1}),
                event_frame("messageStop", {"stopReason": "tool_use"}),
                event_frame("metadata", {"usage": {"inputTokens": 30, "outputTokens": 9}}),
            ]
        )
    )
    parameters = struct_pb2.Struct()
    parameters.update({"type": "object", "properties": {"city": {"type": "string"}}})
    history = [
        user("Weather in Rome?"),
        pb.Message(
            role=pb.ROLE_ASSISTANT,
            content=[
                pb.ContentPart(
                    tool_call=pb.ToolCall(
                        id="tooluse_0", name="get_weather", arguments_json='{"city":"Rome"}'
                    )
                )
            ],
        ),
        pb.Message(
            role=pb.ROLE_TOOL,
            content=[pb.ContentPart(tool_result=pb.ToolResult(tool_call_id="tooluse_0", content="18C"))],
        ),
        user("And Paris?"),
    ]
    request = chat(
        CLAUDE,
        *history,
        tools=[pb.Tool(name="get_weather", description="Weather by city", parameters=parameters)],
        tool_choice=pb.ToolChoice(mode=pb.ToolChoice.MODE_REQUIRED),
    )
    events = await collect(gw.stub.ChatStream(request))
    assert kinds(events) == [
        "text_delta",
        "tool_call_start",
        "tool_call_delta",
        "tool_call_end",
        "usage",
        "finish",
    ]
    start = next(e.tool_call_start for e in events if e.HasField("tool_call_start"))
    end = next(e.tool_call_end for e in events if e.HasField("tool_call_end"))
    assert (start.index, start.id, start.name) == (0, "tooluse_1", "get_weather")
    assert json.loads(end.call.arguments_json) == {"city": "Paris"}
    assert events[-1].finish.reason == pb.FINISH_REASON_TOOL_CALLS
    body = fake.last("converse-stream").body
    assert body["toolConfig"] == {
        "tools": [
            {
                "toolSpec": {
                    "name": "get_weather",
                    "description": "Weather by city",
                    "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}}},
                }
            }
        ],
        "toolChoice": {"any": {}},
    }
    # The tool result and the next user text merge into one user turn, as Bedrock requires.
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"] == [
        {"toolUse": {"toolUseId": "tooluse_0", "name": "get_weather", "input": {"city": "Rome"}}}
    ]
    assert body["messages"][2]["content"] == [
        {"toolResult": {"toolUseId": "tooluse_0", "content": [{"text": "18C"}], "status": "success"}},
        {"text": "And Paris?"},
    ]


async def test_image_bytes_are_sent_as_an_image_block(gw: Any, fake: FakeBedrock) -> None:
    png = b"\x89PNG\r\n\x1a\nfake-image"
    message = pb.Message(
        role=pb.ROLE_USER,
        content=[
            pb.ContentPart(text="What is this?"),
            pb.ContentPart(image=pb.Image(data=png, media_type="image/png")),
        ],
    )
    await collect(gw.stub.ChatStream(chat(CLAUDE, message)))
    block = fake.last("converse-stream").body["messages"][0]["content"][1]
    assert block["image"]["format"] == "png"
    assert base64.b64decode(block["image"]["source"]["bytes"]) == png


async def test_image_url_is_rejected_with_the_field_named(gw: Any, fake: FakeBedrock) -> None:
    message = pb.Message(
        role=pb.ROLE_USER, content=[pb.ContentPart(image=pb.Image(url="https://example.com/a.png"))]
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await collect(gw.stub.ChatStream(chat(CLAUDE, message)))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "image.url" in caught.value.details()
    assert not fake.seen


def reasoning_then_answer(*reasoning: dict[str, str]) -> list[bytes]:
    """A ConverseStream whose block 0 is reasoning (these `reasoningContent` deltas) and block 1
    the answer "42"."""
    deltas = [
        event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": r}})
        for r in reasoning
    ]
    return [
        event_frame("messageStart", {"role": "assistant"}),
        *deltas,
        event_frame("contentBlockStop", {"contentBlockIndex": 0}),
        event_frame("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"text": "42"}}),
        event_frame("contentBlockStop", {"contentBlockIndex": 1}),
        event_frame("messageStop", {"stopReason": "end_turn"}),
    ]


async def test_reasoning_streams_and_replays_with_signature(gw: Any, fake: FakeBedrock) -> None:
    fake.push(Reply(frames=reasoning_then_answer({"text": "Let me think."}, {"signature": "sig-1"})))
    earlier = pb.Message(
        role=pb.ROLE_ASSISTANT,
        content=[
            pb.ContentPart(text="Before."),
            pb.ContentPart(reasoning=pb.Reasoning(text="Old thought", signature="sig-0")),
        ],
    )
    request = chat(
        CLAUDE_THINKING,
        user("Q1"),
        earlier,
        user("Q2"),
        reasoning=pb.ReasoningOptions(enabled=True, budget_tokens=2048),
    )
    events = await collect(gw.stub.ChatStream(request))
    assert kinds(events) == ["reasoning_delta", "text_delta", "finish"]
    reasoning = [e.reasoning_delta for e in events if e.HasField("reasoning_delta")]
    assert "".join(r.text for r in reasoning) == "Let me think."
    assert reasoning[-1].signature == "sig-1"  # the block's closing delta
    body = fake.last("converse-stream").body
    assert body["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 2048}}
    # Claude thinking needs maxTokens beyond the budget.
    assert body["inferenceConfig"] == {"maxTokens": 2048 + 4096}
    assert body["messages"][1]["content"] == [
        {"reasoningContent": {"reasoningText": {"text": "Old thought", "signature": "sig-0"}}},
        {"text": "Before."},
    ]


async def test_cache_points_and_cache_usage(fake: FakeBedrock, gateway_factory: Any) -> None:
    fake.push(
        Reply(
            frames=[
                event_frame("messageStart", {"role": "assistant"}),
                event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "ok"}}),
                event_frame("messageStop", {"stopReason": "end_turn"}),
                event_frame(
                    "metadata",
                    {
                        "usage": {
                            "inputTokens": 10,
                            "outputTokens": 2,
                            "totalTokens": 1512,
                            "cacheReadInputTokens": 1000,
                            "cacheWriteInputTokens": 500,
                        },
                        "metrics": {"latencyMs": 7},
                    },
                ),
            ]
        )
    )
    system = pb.Message(role=pb.ROLE_SYSTEM, content=[pb.ContentPart(text="Long system prompt")])
    async with gateway_factory(config(fake.url, extra="prompt_caching = true")) as gw:
        events = await collect(gw.stub.ChatStream(chat(CLAUDE, system, user("A", cache=True))))
    usage = events[-2].usage
    # Normalised: input includes cache reads and writes; Bedrock's own figures are kept raw.
    assert (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == (1510, 1000, 500)
    assert usage.total_tokens == 1512
    assert usage.raw["inputTokens"] == 10
    assert usage.raw["cacheReadInputTokens"] == 1000
    body = fake.last("converse-stream").body
    assert body["system"] == [{"text": "Long system prompt"}, {"cachePoint": {"type": "default"}}]
    # The explicit breakpoint's cache point is not doubled by the automatic one.
    assert body["messages"][0]["content"] == [{"text": "A"}, {"cachePoint": {"type": "default"}}]


# --- completions through InvokeModel -----------------------------------------------------------


FAMILY_BODY_CHECKS = {
    "anthropic": lambda b: (
        b["anthropic_version"] == "bedrock-2023-05-31"
        and b["max_tokens"] == 64
        and b["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Say hi"}]}]
    ),
    "nova": lambda b: (
        b["messages"] == [{"role": "user", "content": [{"text": "Say hi"}]}]
        and b["inferenceConfig"]["maxTokens"] == 64
    ),
    "titan": lambda b: b["inputText"] == "Say hi" and b["textGenerationConfig"]["maxTokenCount"] == 64,
    "llama": lambda b: b["prompt"] == "Say hi" and b["max_gen_len"] == 64,
    "mistral": lambda b: b["prompt"] == "Say hi" and b["max_tokens"] == 64,
    "cohere": lambda b: b["message"] == "Say hi" and b["chat_history"] == [] and b["max_tokens"] == 64,
}


@pytest.mark.parametrize("family", sorted(FAMILY_MODELS))
async def test_complete_stream_uses_each_familys_invoke_body(gw: Any, fake: FakeBedrock, family: str) -> None:
    model = FAMILY_MODELS[family]
    request = pb.CompleteRequest(model=f"bedrock/{model}", prompt="Say hi", max_tokens=64)
    events = await collect(gw.stub.CompleteStream(request))
    assert text_of(events) == f"Hello from {family}"
    assert kinds(events)[-2:] == ["usage", "finish"]
    assert events[-2].usage.input_tokens == 9
    assert events[-2].usage.output_tokens == 3
    assert events[-1].finish.reason == pb.FINISH_REASON_STOP
    seen = fake.last("invoke-with-response-stream")
    assert seen.model_id == model
    assert FAMILY_BODY_CHECKS[family](seen.body), seen.body

    response = await gw.stub.Complete(request)
    assert response.text == f"Hello from {family}"
    assert response.finish.reason == pb.FINISH_REASON_STOP
    assert FAMILY_BODY_CHECKS[family](fake.last("invoke").body)
    assert_signed(fake)


async def test_complete_stream_surfaces_a_claude_error_chunk(gw: Any, fake: FakeBedrock) -> None:
    from provider_gateway.fakes.bedrock import chunk_frame

    fake.push(
        Reply(
            frames=[
                chunk_frame({"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 1}}}),
                chunk_frame(
                    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}
                ),
                exception_frame("ThrottlingException", "Too many tokens, please wait"),
            ]
        )
    )
    call = gw.stub.CompleteStream(pb.CompleteRequest(model=f"bedrock/{CLAUDE}", prompt="x"))
    received, error = await collect_until_error(call)
    assert text_of(received) == "Hi"
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error_type", "status"),
    [
        ("ThrottlingException", grpc.StatusCode.RESOURCE_EXHAUSTED),
        ("ValidationException", grpc.StatusCode.INVALID_ARGUMENT),
        ("AccessDeniedException", grpc.StatusCode.PERMISSION_DENIED),
        ("ModelNotReadyException", grpc.StatusCode.UNAVAILABLE),
        ("ServiceUnavailableException", grpc.StatusCode.UNAVAILABLE),
        ("InternalServerException", grpc.StatusCode.UNAVAILABLE),
    ],
)
async def test_http_errors_map_to_statuses(
    gw: Any, fake: FakeBedrock, error_type: str, status: grpc.StatusCode
) -> None:
    fake.push(Reply(error=(error_type, "upstream says no")))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await collect(gw.stub.ChatStream(chat()))
    assert caught.value.code() == status
    assert "upstream says no" in caught.value.details()
    assert len(fake.seen) == 1  # the adapter does not retry: the router owns retries


@pytest.mark.parametrize("skew_minutes", [7, -7])
async def test_a_clock_off_by_more_than_five_minutes_is_named_as_the_cause(
    aws_env: None, gateway_factory: Any, skew_minutes: int
) -> None:
    """Bedrock rejects a signature dated more than 5 minutes from its own clock with a 403
    InvalidSignatureException; the caller must learn that the host's clock is the problem, not
    the credentials (botocore does not correct the skew either)."""
    skewed = FakeBedrock(clock_offset=datetime.timedelta(minutes=skew_minutes))
    async with skewed as fake, gateway_factory(config(fake.url)) as gw:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await collect(gw.stub.ChatStream(chat()))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    details = caught.value.details() or ""
    assert "clock differs from AWS's by more than 5 minutes" in details
    assert "NTP" in details
    assert "Signature expired" in details or "Signature not yet current" in details


async def test_access_denied_names_the_model(gw: Any, fake: FakeBedrock) -> None:
    fake.push(
        Reply(
            error=("AccessDeniedException", "You don't have access to the model with the specified model ID.")
        )
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gw.stub.Chat(chat())
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert CLAUDE in caught.value.details()
    assert "Model access" in caught.value.details()


@pytest.mark.parametrize(
    ("exception_type", "status"),
    [
        ("ModelStreamErrorException", grpc.StatusCode.UNAVAILABLE),
        ("ThrottlingException", grpc.StatusCode.RESOURCE_EXHAUSTED),
        ("ValidationException", grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
async def test_exception_inside_the_stream_ends_with_a_status_after_partial_output(
    gw: Any, fake: FakeBedrock, exception_type: str, status: grpc.StatusCode
) -> None:
    fake.push(
        Reply(
            frames=[
                event_frame("messageStart", {"role": "assistant"}),
                event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "partial"}}),
                exception_frame(exception_type, "model failed mid-answer"),
            ]
        )
    )
    received, error = await collect_until_error(gw.stub.ChatStream(chat()))
    assert kinds(received) == ["text_delta"]
    assert error.code() == status
    assert "model failed mid-answer" in (error.details() or "")


async def test_stream_cut_before_message_stop_is_an_error_not_a_clean_end(gw: Any, fake: FakeBedrock) -> None:
    fake.push(
        Reply(frames=[event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "cut"}})])
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await collect(gw.stub.ChatStream(chat()))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_client_cancel_closes_the_bedrock_stream(gw: Any, fake: FakeBedrock) -> None:
    fake.push(
        Reply(
            frames=[
                event_frame("messageStart", {"role": "assistant"}),
                event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "first"}}),
            ],
            hang=True,
        )
    )
    call = gw.stub.ChatStream(chat())
    first = await asyncio.wait_for(call.read(), WAIT_S)
    assert first.text_delta.text == "first"
    call.cancel()
    await asyncio.wait_for(fake.disconnected.wait(), WAIT_S)
    assert fake.streams_open == 0


async def test_a_wrong_secret_fails_the_fakes_signature_check(
    fake: FakeBedrock, gateway_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    async with gateway_factory(config(fake.url)) as gw:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await collect(gw.stub.ChatStream(chat()))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert not fake.seen[-1].signature_valid


# --- model ids, listing, counting, embeddings --------------------------------------------------


async def test_cross_region_profile_from_the_region_and_arns_pass_through(
    fake: FakeBedrock, gateway_factory: Any
) -> None:
    arn = "arn:aws:bedrock:eu-west-1:123456789012:application-inference-profile/abc123"
    async with gateway_factory(
        config(fake.url, region="eu-west-1", extra='inference_profile = "regional"')
    ) as gw:
        await collect(gw.stub.ChatStream(chat(CLAUDE)))
        assert fake.last().model_id == f"eu.{CLAUDE}"
        await collect(gw.stub.ChatStream(chat(f"us.{CLAUDE}")))
        assert fake.last().model_id == f"us.{CLAUDE}"
        await collect(gw.stub.ChatStream(chat(arn)))
        assert fake.last().model_id == arn
    assert_signed(fake, "eu-west-1")


async def test_list_models_includes_foundation_models_and_inference_profiles(
    gw: Any, fake: FakeBedrock
) -> None:
    response = await gw.stub.ListModels(pb.ListModelsRequest(provider="bedrock"))
    by_id = {m.id: m for m in response.models}
    assert by_id[CLAUDE].vision
    assert by_id[CLAUDE].tools
    assert by_id["amazon.titan-embed-text-v2:0"].embeddings
    assert f"us.{CLAUDE}" in by_id
    assert {s.operation for s in fake.seen} == {"list-foundation-models", "list-inference-profiles"}
    assert_signed(fake)


async def test_count_tokens_uses_the_count_tokens_api_for_claude(gw: Any, fake: FakeBedrock) -> None:
    response = await gw.stub.CountTokens(
        pb.CountTokensRequest(model=f"bedrock/{CLAUDE}", messages=[user("one two three")])
    )
    assert (response.input_tokens, response.estimated) == (3, False)
    seen = fake.last("count-tokens")
    assert seen.body["input"]["converse"]["messages"] == [
        {"role": "user", "content": [{"text": "one two three"}]}
    ]


async def test_count_tokens_estimates_for_models_without_the_api(gw: Any, fake: FakeBedrock) -> None:
    request = pb.CountTokensRequest(model=f"bedrock/{FAMILY_MODELS['llama']}", text="x" * 40)
    response = await gw.stub.CountTokens(request)
    assert (response.input_tokens, response.estimated) == (10, True)
    assert not fake.seen


@pytest.mark.parametrize("model", ["amazon.titan-embed-text-v2:0", "cohere.embed-english-v3"])
async def test_embed(gw: Any, fake: FakeBedrock, model: str) -> None:
    response = await gw.stub.Embed(pb.EmbedRequest(model=f"bedrock/{model}", inputs=["alpha beta", "gamma"]))
    assert [e.index for e in response.embeddings] == [0, 1]
    assert all(len(e.values) == 4 for e in response.embeddings)
    assert response.embeddings[0].values != response.embeddings[1].values
    bodies = [s.body for s in fake.seen if s.operation == "invoke"]
    if model.startswith("amazon"):
        # One request per input, sent together: they may reach the upstream in either order, and
        # each answer lands at its own input's index.
        assert sorted(b["inputText"] for b in bodies) == ["alpha beta", "gamma"]
        assert [list(e.values) for e in response.embeddings] == [
            pytest.approx(fake_vector(text, 4)) for text in ("alpha beta", "gamma")
        ]
    else:
        assert bodies == [
            {"texts": ["alpha beta", "gamma"], "input_type": "search_document", "embedding_types": ["float"]}
        ]


async def test_provider_is_listed_healthy_with_credentials(gw: Any) -> None:
    response = await gw.stub.ListProviders(pb.ListProvidersRequest())
    bedrock = next(p for p in response.providers if p.name == "bedrock")
    assert bedrock.kind == "bedrock"
    assert bedrock.health == pb.PROVIDER_HEALTH_SERVING


async def test_named_profile_supplies_credentials_and_region(
    fake: FakeBedrock, gateway_factory: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    credentials, aws_config = tmp_path / "credentials", tmp_path / "config"
    credentials.write_text(f"[gw]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n")
    aws_config.write_text("[profile gw]\nregion = ap-northeast-1\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(aws_config))
    toml = f'[providers.bedrock]\nkind = "bedrock"\nprofile = "gw"\nendpoint_url = "{fake.url}"\ninference_profile = "regional"\n'
    async with gateway_factory(toml) as gw:
        await collect(gw.stub.ChatStream(chat()))
    assert fake.last().model_id == f"jp.{CLAUDE}"
    assert_signed(fake, "ap-northeast-1")


async def test_count_tokens_falls_back_to_the_estimate_when_the_model_cannot_count(
    gw: Any, fake: FakeBedrock
) -> None:
    fake.push(Reply(error=("ValidationException", "The provided model doesn't support counting tokens.")))
    response = await gw.stub.CountTokens(pb.CountTokensRequest(model=f"bedrock/{CLAUDE}", text="x" * 40))
    assert (response.input_tokens, response.estimated) == (10, True)
    assert fake.last().operation == "count-tokens"


async def test_missing_region_is_a_config_error_naming_the_key(aws_env: None, gateway_factory: Any) -> None:
    from provider_gateway.config import ConfigError

    with pytest.raises(ConfigError, match=r"providers\.bedrock\.region"):
        async with gateway_factory('[providers.bedrock]\nkind = "bedrock"\n'):
            pass


async def test_a_passed_deadline_closes_the_bedrock_stream(gw: Any, fake: FakeBedrock) -> None:
    fake.push(
        Reply(
            frames=[event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "first"}})],
            hang=True,
        )
    )
    call = gw.stub.ChatStream(chat(), timeout=3.0)
    first = await call.read()  # the upstream stream is open before the deadline passes
    assert first.text_delta.text == "first"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await asyncio.wait_for(fake.disconnected.wait(), WAIT_S)


async def test_an_unreachable_endpoint_is_unavailable(aws_env: None, gateway_factory: Any) -> None:
    import socket

    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with gateway_factory(config(f"http://127.0.0.1:{port}")) as gw:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await collect(gw.stub.ChatStream(chat()))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_one_client_and_connection_serve_many_calls(gw: Any, fake: FakeBedrock) -> None:
    provider = gw.provider("bedrock")
    host = provider.runtime.host  # the shared pool's client for the endpoint's origin
    for _ in range(3):
        await collect(gw.stub.ChatStream(chat()))
        await gw.stub.Complete(pb.CompleteRequest(model=f"bedrock/{FAMILY_MODELS['llama']}", prompt="x"))
    assert provider.runtime.host is host
    assert host.stats.requests == 6
    # Streams read to their end hand the connection back to the pool: one TCP connection for all.
    assert len({s.client_port for s in fake.seen}) == 1


@pytest.mark.parametrize(
    "frames",
    [
        pytest.param([bytes(corrupt(event_frame("messageStart", {"role": "assistant"})))], id="bad-crc"),
        pytest.param([b"\x00\x00\x00\x40\x00\x00\x00\x00trailing"], id="truncated"),
        pytest.param([event_frame("chunk", {"bytes": "!!not base64"})], id="bad-base64-chunk"),
        pytest.param([chunk_frame_raw(b"[1, 2]")], id="chunk-not-an-object"),
    ],
)
async def test_malformed_streams_end_with_unavailable(
    gw: Any, fake: FakeBedrock, frames: list[bytes]
) -> None:
    fake.push(Reply(frames=frames))
    request = pb.CompleteRequest(model=f"bedrock/{FAMILY_MODELS['llama']}", prompt="x")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await collect(gw.stub.CompleteStream(request))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_corrupt_prelude_fails_the_stream_at_once_not_after_buffering_its_length(
    gw: Any, fake: FakeBedrock
) -> None:
    """A prelude whose CRC does not match declares a length nobody can trust (here 15 MB, within
    the format's bound); botocore refuses it as soon as the 12 bytes are read. Waiting for that
    many bytes instead, while the connection stays open, leaves the caller hanging until its
    deadline (or the 120 s idle timeout)."""
    prelude = struct.pack("!II", 15 * 1024 * 1024, 0)
    damaged = prelude + struct.pack("!I", binascii.crc32(prelude) ^ 1) + b"{}"
    fake.push(Reply(frames=[event_frame("messageStart", {"role": "assistant"}), damaged], hang=True))
    events, error = await collect_until_error(gw.stub.ChatStream(chat(), timeout=WAIT_S))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "prelude CRC" in (error.details() or "")
    assert not any(e.HasField("finish") for e in events)
    await asyncio.wait_for(fake.disconnected.wait(), WAIT_S)  # the upstream request was closed


async def test_without_credentials_the_provider_is_not_serving_and_calls_are_unauthenticated(
    fake: FakeBedrock, gateway_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    async with gateway_factory(config(fake.url)) as gw:
        providers = await gw.stub.ListProviders(pb.ListProvidersRequest())
        bedrock = next(p for p in providers.providers if p.name == "bedrock")
        assert bedrock.health == pb.PROVIDER_HEALTH_NOT_SERVING
        assert "credentials" in bedrock.health_message
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await collect(gw.stub.ChatStream(chat()))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "AWS_ACCESS_KEY_ID" in (caught.value.details() or "")
    assert not fake.seen


async def test_completions_for_models_without_a_known_body_go_through_converse(
    gw: Any, fake: FakeBedrock
) -> None:
    arn = "arn:aws:bedrock:us-west-2:123456789012:imported-model/abc123"
    request = pb.CompleteRequest(model=f"bedrock/{arn}", prompt="Say hi", max_tokens=9)
    events = await collect(gw.stub.CompleteStream(request))
    assert text_of(events) == "Hello from Bedrock"
    response = await gw.stub.Complete(request)
    assert response.text == "Hello from Bedrock"
    assert [s.operation for s in fake.seen] == ["converse-stream", "converse"]
    assert fake.last().model_id == arn
    assert fake.last().body["messages"] == [{"role": "user", "content": [{"text": "Say hi"}]}]
    assert fake.last().body["inferenceConfig"] == {"maxTokens": 9}


async def test_unary_chat_returns_reasoning_tool_calls_and_cache_usage(gw: Any, fake: FakeBedrock) -> None:
    fake.push(
        Reply(
            body={
                "output": {
                    "message": {
                        "role": "assistant",
                        "content": [
                            {
                                "reasoningContent": {
                                    "reasoningText": {"text": "Need weather.", "signature": "sig"}
                                }
                            },
                            {"text": "Let me check."},
                            {
                                "toolUse": {
                                    "toolUseId": "t1",
                                    "name": "get_weather",
                                    "input": {"city": "Oslo"},
                                }
                            },
                        ],
                    }
                },
                "stopReason": "tool_use",
                "usage": {"inputTokens": 3, "outputTokens": 8, "cacheReadInputTokens": 100},
            }
        )
    )
    response = await gw.stub.Chat(chat())
    assert (response.text, response.reasoning, response.reasoning_signature) == (
        "Let me check.",
        "Need weather.",
        "sig",
    )
    assert [(c.id, c.name, json.loads(c.arguments_json)) for c in response.tool_calls] == [
        ("t1", "get_weather", {"city": "Oslo"})
    ]
    assert (response.usage.input_tokens, response.usage.cache_read_tokens) == (103, 100)
    assert response.finish.reason == pb.FINISH_REASON_TOOL_CALLS


async def test_a_failed_titan_embedding_call_is_the_status_of_the_whole_embed(
    gw: Any, fake: FakeBedrock
) -> None:
    fake.push(Reply(error=("ThrottlingException", "Too many requests")))
    request = pb.EmbedRequest(model="bedrock/amazon.titan-embed-text-v2:0", inputs=["a", "b", "c"])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gw.stub.Embed(request)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


# --- no silent drops (issue 17.3): what Converse cannot take is refused or emulated, never dropped ---


def weather_history() -> list[pb.Message]:
    call = pb.ToolCall(id="tooluse_0", name="get_weather", arguments_json='{"city":"Rome"}')
    return [
        user("Weather in Rome?"),
        pb.Message(role=pb.ROLE_ASSISTANT, content=[pb.ContentPart(tool_call=call)]),
        pb.Message(
            role=pb.ROLE_TOOL,
            content=[pb.ContentPart(tool_result=pb.ToolResult(tool_call_id="tooluse_0", content="18C"))],
        ),
        user("Thanks. Any advice?"),
    ]


WEATHER_TOOL = pb.Tool(name="get_weather", description="Weather by city")


async def test_tool_choice_none_over_a_tool_history_sends_no_tools_and_is_flagged_emulated(
    gw: Any, fake: FakeBedrock
) -> None:
    """Converse takes tool blocks only with a toolConfig, which would let the model call the tools:
    the tools are left out and the history's calls and results go as text, flagged emulated."""
    none = pb.ToolChoice(mode=pb.ToolChoice.MODE_NONE)
    for call in (gw.stub.Chat, gw.stub.ChatStream):
        request = chat(CLAUDE, *weather_history(), tools=[WEATHER_TOOL], tool_choice=none)
        result = call(request, timeout=WAIT_S)
        finish = (await result).finish if call is gw.stub.Chat else (await collect(result))[-1].finish
        assert list(finish.emulated) == ["tool_choice"]
        body = fake.seen[-1].body
        assert "toolConfig" not in body
        texts = [b["text"] for m in body["messages"] for b in m["content"]]
        assert texts == [
            "Weather in Rome?",
            '[called tool get_weather (id tooluse_0) with {"city":"Rome"}]',
            "[tool result for id tooluse_0: 18C]",
            "Thanks. Any advice?",
        ]
    # Without tool_choice none the history keeps its tool blocks and nothing is emulated.
    response = await gw.stub.Chat(chat(CLAUDE, *weather_history(), tools=[WEATHER_TOOL]), timeout=WAIT_S)
    assert list(response.finish.emulated) == []
    assert "toolConfig" in fake.seen[-1].body


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"temperature": 0.3}, "temperature"),
        ({"top_p": 0.5}, "top_p"),
        (
            {"reasoning": pb.ReasoningOptions(enabled=True, effort=pb.ReasoningOptions.EFFORT_HIGH)},
            "reasoning",
        ),
    ],
)
async def test_what_claude_thinking_cannot_take_is_refused_not_dropped(
    gw: Any, fake: FakeBedrock, fields: dict[str, Any], field: str
) -> None:
    """As on Anthropic's API: with thinking only temperature 1 and top_p 0.95-1, and a budget, not
    an effort."""
    request = chat(CLAUDE_THINKING, **{"reasoning": pb.ReasoningOptions(enabled=True), **fields})
    sent = len(fake.seen)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await gw.stub.Chat(request, timeout=WAIT_S)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (refused.value.details() or "").startswith(f"bedrock: {field}")
    assert CLAUDE_THINKING in (refused.value.details() or "")
    assert len(fake.seen) == sent  # nothing went upstream


async def test_claude_thinking_sends_the_sampling_it_accepts(gw: Any, fake: FakeBedrock) -> None:
    thinking = pb.ReasoningOptions(enabled=True)
    await gw.stub.Chat(chat(CLAUDE_THINKING, reasoning=thinking, temperature=1, top_p=0.97), timeout=WAIT_S)
    inference = fake.seen[-1].body["inferenceConfig"]
    assert (inference["temperature"], inference["topP"]) == (1, pytest.approx(0.97))


async def test_nova_2_sends_sampling_with_reasoning_and_refuses_a_budget(gw: Any, fake: FakeBedrock) -> None:
    nova = "amazon.nova-2-lite-v1:0"
    effort = pb.ReasoningOptions(effort=pb.ReasoningOptions.EFFORT_LOW)
    await gw.stub.Chat(chat(nova, reasoning=effort, temperature=0.2), timeout=WAIT_S)
    body = fake.seen[-1].body
    assert body["additionalModelRequestFields"]["reasoningConfig"]["maxReasoningEffort"] == "low"
    assert body["inferenceConfig"]["temperature"] == pytest.approx(0.2)
    budget = pb.ReasoningOptions(enabled=True, budget_tokens=2048)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await gw.stub.Chat(chat(nova, reasoning=budget), timeout=WAIT_S)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "reasoning.budget_tokens" in (refused.value.details() or "")


@pytest.mark.parametrize(
    ("model", "fields", "field"),
    [
        ("meta.llama3-8b-instruct-v1:0", {"tools": [WEATHER_TOOL]}, "tools"),
        ("amazon.titan-text-express-v1", {"tools": [WEATHER_TOOL]}, "tools"),
        ("mistral.mistral-large-2407-v1:0", {"reasoning": pb.ReasoningOptions(enabled=True)}, "reasoning"),
        (
            "deepseek.r1-v1:0",
            {"reasoning": pb.ReasoningOptions(effort=pb.ReasoningOptions.EFFORT_LOW)},
            "reasoning.effort",
        ),
        (
            "amazon.nova-micro-v1:0",
            {
                "messages": [
                    pb.Message(
                        role=pb.ROLE_USER,
                        content=[
                            pb.ContentPart(
                                image=pb.Image(data=b"\x89PNG\r\n\x1a\nfake-image", media_type="image/png")
                            )
                        ],
                    )
                ]
            },
            "image",
        ),
    ],
)
async def test_what_a_family_lacks_is_refused_before_sending(
    gw: Any, fake: FakeBedrock, model: str, fields: dict[str, Any], field: str
) -> None:
    sent = len(fake.seen)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await gw.stub.Chat(
            pb.ChatRequest(model=f"bedrock/{model}", **{"messages": [user("Hi")], **fields}), timeout=WAIT_S
        )
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (refused.value.details() or "").startswith(f"bedrock: {field}")
    assert model in (refused.value.details() or "")
    assert len(fake.seen) == sent


async def test_list_models_reports_what_converse_offers_each_family(gw: Any, fake: FakeBedrock) -> None:
    """Tools, images and reasoning as each family's codec knows them per model, not one guess for
    all: Llama 3 8B calls no tools, Nova Micro reads no images, DeepSeek-R1 reasons but calls none."""
    ids = [
        "us.meta.llama3-8b-instruct-v1:0",
        "us.meta.llama3-2-90b-instruct-v1:0",
        "us.amazon.nova-micro-v1:0",
        "us.amazon.nova-2-lite-v1:0",
        "us.deepseek.r1-v1:0",
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "us.qwen.qwen3-32b-v1:0",  # no known family: nothing vouched for
    ]
    fake.profile_pages = [[{"inferenceProfileId": i, "inferenceProfileName": i} for i in ids]]
    response = await gw.stub.ListModels(pb.ListModelsRequest(provider="bedrock"), timeout=WAIT_S)
    offered = {m.id: (m.tools, m.vision, m.reasoning) for m in response.models if m.id in ids}
    assert offered == {
        "us.meta.llama3-8b-instruct-v1:0": (False, False, False),
        "us.meta.llama3-2-90b-instruct-v1:0": (True, True, False),
        "us.amazon.nova-micro-v1:0": (True, False, False),
        "us.amazon.nova-2-lite-v1:0": (True, True, True),
        "us.deepseek.r1-v1:0": (False, False, True),
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0": (True, True, True),
        "us.qwen.qwen3-32b-v1:0": (False, False, False),
    }


async def test_redacted_reasoning_comes_back_redacted_and_is_replayed_as_redacted_content(
    gw: Any, fake: FakeBedrock
) -> None:
    """Claude's redacted thinking reaches Converse as `reasoningContent.redactedContent` (a blob,
    base64 in the JSON): relayed as a redacted reasoning part, and sent back as Bedrock gave it,
    never as a signed text block."""
    encrypted = base64.b64encode(b"encrypted-thinking").decode()
    fake.push(Reply(frames=reasoning_then_answer({"redactedContent": encrypted})))
    thinking = pb.ReasoningOptions(enabled=True)
    events = await collect(gw.stub.ChatStream(chat(CLAUDE_THINKING, reasoning=thinking)))
    (delta,) = [e.reasoning_delta for e in events if e.HasField("reasoning_delta")]
    assert (delta.text, delta.signature, delta.redacted) == ("", encrypted, True)
    content = [{"reasoningContent": {"redactedContent": encrypted}}, {"text": "42"}]
    answer = {"role": "assistant", "content": content}
    fake.push(Reply(body={"output": {"message": answer}, "stopReason": "end_turn"}))
    response = await gw.stub.Chat(chat(CLAUDE_THINKING, reasoning=thinking), timeout=WAIT_S)
    (part,) = response.reasoning_parts
    assert (part.text, part.signature, part.redacted) == ("", encrypted, True)
    earlier = pb.Message(
        role=pb.ROLE_ASSISTANT, content=[pb.ContentPart(reasoning=part), pb.ContentPart(text="42")]
    )
    await gw.stub.Chat(
        chat(CLAUDE_THINKING, user("Q1"), earlier, user("Q2"), reasoning=thinking), timeout=WAIT_S
    )
    assert fake.seen[-1].body["messages"][1]["content"] == [
        {"reasoningContent": {"redactedContent": encrypted}},
        {"text": "42"},
    ]


async def test_botocore_reads_and_writes_redacted_thinking_as_the_gateway_does(
    gw: Any, fake: FakeBedrock
) -> None:
    """The oracle: botocore decodes the fake's `redactedContent` to the encrypted bytes, and
    serialises those bytes, replayed, to the very message the gateway sends back."""
    secret = b"encrypted-thinking"
    encrypted = base64.b64encode(secret).decode()
    fake.push(Reply(frames=reasoning_then_answer({"redactedContent": encrypted})))
    question = [{"role": "user", "content": [{"text": "Q1"}]}]
    events = await with_botocore(
        fake,
        "bedrock-runtime",
        lambda client: list(client.converse_stream(modelId=CLAUDE_THINKING, messages=question)["stream"]),
    )
    deltas = [e["contentBlockDelta"]["delta"] for e in events if "contentBlockDelta" in e]
    assert [d["reasoningContent"] for d in deltas if "reasoningContent" in d] == [{"redactedContent": secret}]
    replayed = [
        *question,
        {"role": "assistant", "content": [{"reasoningContent": {"redactedContent": secret}}, {"text": "42"}]},
        {"role": "user", "content": [{"text": "Q2"}]},
    ]
    await with_botocore(
        fake, "bedrock-runtime", lambda client: client.converse(modelId=CLAUDE_THINKING, messages=replayed)
    )
    theirs = fake.seen[-1].body["messages"]
    part = pb.Reasoning(signature=encrypted, redacted=True)
    earlier = pb.Message(
        role=pb.ROLE_ASSISTANT, content=[pb.ContentPart(reasoning=part), pb.ContentPart(text="42")]
    )
    await gw.stub.Chat(chat(CLAUDE_THINKING, user("Q1"), earlier, user("Q2")), timeout=WAIT_S)
    assert fake.seen[-1].body["messages"] == theirs
