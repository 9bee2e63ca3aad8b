"""Every Bedrock InvokeModel family through Complete and CompleteStream (issues 20 and 14.5): the real
gRPC API -> the gateway -> a fake Bedrock answering with each family's documented bodies and
chunks. botocore decodes the fake's event-stream frames as the oracle for what the stream says.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
from botocore.eventstream import EventStreamBuffer
from conftest import ADAPTER_ROUTING, use_fake_aws_credentials
from google.protobuf import json_format
from rpc_util import collect_until_error, text_of

from provider_gateway.fakes import bedrock_invoke_bodies as bodies
from provider_gateway.fakes.bedrock import (
    FakeBedrock,
    Reply,
    chunk_frame,
    default_frames,
    invoke_stream_chunks,
)
from provider_gateway.v1 import provider_service_pb2 as pb

# fake family -> a model id Bedrock serves it under
MODELS = {
    "anthropic": "anthropic.claude-3-5-haiku-20241022-v1:0",
    "nova": "us.amazon.nova-pro-v1:0",
    "titan": "amazon.titan-text-premier-v1:0",
    "llama": "us.meta.llama4-scout-17b-instruct-v1:0",
    "mistral": "mistral.mixtral-8x7b-instruct-v0:1",
    "mistral-chat": "mistral.mistral-large-2407-v1:0",
    "cohere": "cohere.command-r-plus-v1:0",
    "cohere-command": "cohere.command-text-v14",
    "jamba": "ai21.jamba-1-5-mini-v1:0",
    "gpt-oss": "openai.gpt-oss-120b-1:0",
    "deepseek": "us.deepseek.r1-v1:0",
    "writer": "us.writer.palmyra-x5-v1:0",
}
# What each family's request body must say for prompt "Say hi", max_tokens 64, stop ["END"].
BODY_CHECKS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "anthropic": lambda b: b["anthropic_version"] == "bedrock-2023-05-31" and b["stop_sequences"] == ["END"],
    "nova": lambda b: b["schemaVersion"] == "messages-v1" and b["inferenceConfig"]["stopSequences"] == ["END"],
    "titan": lambda b: b["inputText"] == "Say hi" and b["textGenerationConfig"]["maxTokenCount"] == 64,
    "llama": lambda b: b == {"prompt": "Say hi", "max_gen_len": 64},
    "mistral": lambda b: b == {"prompt": "Say hi", "max_tokens": 64, "stop": ["END"]},
    "mistral-chat": lambda b: b == {"messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 64},
    "cohere": lambda b: b["message"] == "Say hi" and b["chat_history"] == [] and b["stop_sequences"] == ["END"],
    "cohere-command": lambda b: b.items() >= {"prompt": "Say hi", "max_tokens": 64, "stop_sequences": ["END"]}.items(),
    "jamba": lambda b: b == {"messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 64, "stop": ["END"]},
    "gpt-oss": lambda b: (
        b == {"messages": [{"role": "user", "content": "Say hi"}], "max_completion_tokens": 64, "stop": ["END"]}
    ),
    "deepseek": lambda b: b == {"prompt": "Say hi", "max_tokens": 64, "stop": ["END"]},
    "writer": lambda b: b["messages"] == [{"role": "user", "content": {"text": "Say hi"}}] and b["max_tokens"] == 64,
}  # fmt: skip
NO_STOP = {"llama", "mistral-chat"}  # their bodies document no stop sequences
# The text of one decoded chunk, read the way each family's Bedrock page documents it.
CHUNK_TEXT: dict[str, Callable[[dict[str, Any]], str]] = {
    "anthropic": lambda c: c.get("delta", {}).get("text", ""),
    "nova": lambda c: c.get("contentBlockDelta", {}).get("delta", {}).get("text", ""),
    "titan": lambda c: c["outputText"],
    "llama": lambda c: c["generation"],
    "mistral": lambda c: c["outputs"][0]["text"],
    "mistral-chat": lambda c: c["choices"][0]["message"]["content"],
    "cohere": lambda c: c.get("text", ""),
    "cohere-command": lambda c: c.get("text", ""),
    "jamba": lambda c: c["choices"][0]["delta"].get("content", ""),
    "gpt-oss": lambda c: c["choices"][0]["delta"].get("content", ""),
    "deepseek": lambda c: c["choices"][0]["text"],
    "writer": lambda c: c["choices"][0]["delta"].get("content", ""),
}
# How many chunks from the end the family's final message is (Nova's metadata follows messageStop).
FINAL_FROM_END = {"nova": 2}
WAIT_S = 20


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeBedrock]:
    use_fake_aws_credentials(monkeypatch)
    async with FakeBedrock() as running:
        yield running


@pytest.fixture
async def gw(fake: FakeBedrock, gateway_factory: Any) -> AsyncIterator[Any]:
    config = f"""
[providers.bedrock]
kind = "bedrock"
region = "us-west-2"
endpoint_url = "{fake.url}"
{ADAPTER_ROUTING}"""
    async with gateway_factory(config) as running:
        yield running


def complete(family: str, **fields: Any) -> pb.CompleteRequest:
    fields = {"prompt": "Say hi", "max_tokens": 64, **fields}
    if family not in NO_STOP:
        fields.setdefault("stop", ["END"])
    return pb.CompleteRequest(model=f"bedrock/{MODELS[family]}", **fields)


async def collect(call: Any) -> list[pb.StreamEvent]:
    return [event async for event in call]


def botocore_chunks(frames: list[bytes]) -> list[dict[str, Any]]:
    """botocore's reading of the frames: each `chunk` event's payload, base64 and JSON decoded."""
    buffer = EventStreamBuffer()
    for frame in frames:
        buffer.add_data(frame)
    chunks = []
    for message in buffer:
        assert message.headers[":event-type"] == "chunk"
        chunks.append(json.loads(base64.b64decode(json.loads(message.payload)["bytes"])))
    return chunks


@pytest.mark.parametrize("family", sorted(MODELS))
async def test_complete_stream_reads_each_familys_chunks_as_botocore_does(
    gw: Any, fake: FakeBedrock, family: str
) -> None:
    events = await collect(gw.stub.CompleteStream(complete(family), timeout=WAIT_S))
    oracle = botocore_chunks(default_frames("invoke-with-response-stream", family))
    assert text_of(events) == "".join(CHUNK_TEXT[family](c) for c in oracle) == f"Hello from {family}"
    usage, finish = events[-2].usage, events[-1].finish
    metrics = oracle[-1]["amazon-bedrock-invocationMetrics"]
    assert (usage.input_tokens, usage.output_tokens) == (
        metrics["inputTokenCount"],
        metrics["outputTokenCount"],
    )
    assert json_format.MessageToDict(usage.raw)["amazon-bedrock-invocationMetrics"] == metrics
    assert finish.reason == pb.FINISH_REASON_STOP
    seen = fake.last("invoke-with-response-stream")
    assert seen.model_id == MODELS[family]
    assert BODY_CHECKS[family](seen.body), seen.body


@pytest.mark.parametrize("family", sorted(MODELS))
async def test_complete_reads_each_familys_whole_response(gw: Any, fake: FakeBedrock, family: str) -> None:
    answer = await gw.stub.Complete(complete(family), timeout=WAIT_S)
    assert answer.text == f"Hello from {family}"
    assert answer.finish.reason == pb.FINISH_REASON_STOP
    assert BODY_CHECKS[family](fake.last("invoke").body)


async def test_the_recorded_gpt_oss_body_is_read_not_an_empty_success(gw: Any, fake: FakeBedrock) -> None:
    recorded = {
        "choices": [{"message": {"content": "pong"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 17, "completion_tokens": 5},
    }
    fake.push(Reply(body=recorded))
    answer = await gw.stub.Complete(complete("gpt-oss"), timeout=WAIT_S)
    assert answer.text == "pong"
    assert answer.finish.reason == pb.FINISH_REASON_STOP
    assert (answer.usage.input_tokens, answer.usage.output_tokens, answer.usage.estimated) == (17, 5, False)


async def test_gpt_oss_reasoning_tags_become_reasoning(gw: Any, fake: FakeBedrock) -> None:
    pieces = ["<reas", "oning>Two words.</reason", "ing>Hello", " there"]
    chunks = [bodies.chat_chunk({"content": p}) for p in pieces] + [bodies.chat_chunk({}, finish="stop")]
    fake.push(Reply(frames=[chunk_frame(c) for c in chunks]))
    events = await collect(gw.stub.CompleteStream(complete("gpt-oss"), timeout=WAIT_S))
    assert "".join(e.reasoning_delta.text for e in events) == "Two words."
    assert text_of(events) == "Hello there"


@pytest.mark.parametrize(
    ("family", "foreign"),
    [
        ("gpt-oss", "llama"),
        ("llama", "gpt-oss"),
        ("mistral-chat", "jamba"),
        ("deepseek", "mistral"),
        ("cohere", "cohere-command"),
        ("titan", "nova"),
        ("anthropic", "cohere"),
    ],
)
async def test_a_body_of_another_family_is_unavailable_naming_the_model(
    gw: Any, fake: FakeBedrock, family: str, foreign: str
) -> None:
    from provider_gateway.fakes.bedrock import invoke_response

    fake.push(Reply(body=invoke_response(foreign, "Hello")))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gw.stub.Complete(complete(family), timeout=WAIT_S)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert MODELS[family] in (caught.value.details() or "")


@pytest.mark.parametrize("family", sorted(MODELS))
async def test_a_stream_cut_before_the_familys_final_message_is_unavailable(
    gw: Any, fake: FakeBedrock, family: str
) -> None:
    chunks = invoke_stream_chunks(family, ["Hello", " from", " cut"])
    cut = chunks[: -FINAL_FROM_END.get(family, 1)]
    fake.push(Reply(frames=[chunk_frame(c) for c in cut]))
    received, error = await collect_until_error(gw.stub.CompleteStream(complete(family), timeout=WAIT_S))
    assert error is not None, f"the stream ended cleanly after {len(received)} events"
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert MODELS[family] in (error.details() or "")
    assert not any(e.HasField("finish") for e in received)


@pytest.mark.parametrize("family", ["mistral", "cohere-command", "deepseek"])
async def test_invocation_metrics_give_the_usage_a_body_does_not_carry(
    gw: Any, fake: FakeBedrock, family: str
) -> None:
    events = await collect(gw.stub.CompleteStream(complete(family), timeout=WAIT_S))
    usage = events[-2].usage
    assert (usage.input_tokens, usage.output_tokens, usage.estimated) == (9, 3, False)


async def test_claude_usage_reports_bedrocks_metrics_and_keeps_both_in_raw(
    gw: Any, fake: FakeBedrock
) -> None:
    fake.push(Reply(frames=[chunk_frame(c) for c in bodies.claude_disagreeing_chunks(130, 98)]))
    events = await collect(gw.stub.CompleteStream(complete("anthropic"), timeout=WAIT_S))
    usage = events[-2].usage
    assert (usage.input_tokens, usage.output_tokens) == (25, 98)
    raw = json_format.MessageToDict(usage.raw)
    assert raw["output_tokens"] == 130  # Claude's own message_delta count
    assert raw["amazon-bedrock-invocationMetrics"]["outputTokenCount"] == 98


async def test_a_recorded_nova_tool_use_is_relayed_by_complete_stream_and_refused_by_complete(
    gw: Any, fake: FakeBedrock
) -> None:
    fake.push(Reply(frames=[chunk_frame(c) for c in bodies.nova_tool_use_chunks()]))
    events = await collect(gw.stub.CompleteStream(complete("nova"), timeout=WAIT_S))
    (end,) = [e.tool_call_end for e in events if e.HasField("tool_call_end")]
    assert (end.call.name, json.loads(end.call.arguments_json)) == ("get_weather", {"city": "Paris"})
    assert events[-1].finish.reason == pb.FINISH_REASON_TOOL_CALLS

    fake.push(Reply(body=bodies.NOVA_TOOL_USE))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gw.stub.Complete(complete("nova"), timeout=WAIT_S)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "get_weather" in (caught.value.details() or "")


@pytest.mark.parametrize("family", sorted(NO_STOP))
async def test_stop_sequences_a_family_cannot_honour_are_refused(
    gw: Any, fake: FakeBedrock, family: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gw.stub.Complete(complete(family, stop=["END"]), timeout=WAIT_S)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # well formed, not honourable
    assert (caught.value.details() or "").startswith("bedrock: stop: Bedrock model")
    assert MODELS[family] in (caught.value.details() or "")
    assert not fake.seen


@pytest.mark.parametrize("model", ["qwen.qwen3-32b-v1:0", "deepseek.v3-v1:0"])
async def test_families_without_a_documented_body_complete_through_converse(
    gw: Any, fake: FakeBedrock, model: str
) -> None:
    request = pb.CompleteRequest(model=f"bedrock/{model}", prompt="Say hi")
    assert text_of(await collect(gw.stub.CompleteStream(request, timeout=WAIT_S))) == "Hello from Bedrock"
    assert (await gw.stub.Complete(request, timeout=WAIT_S)).text == "Hello from Bedrock"
    assert [s.operation for s in fake.seen] == ["converse-stream", "converse"]


async def test_cohere_command_asks_for_a_stream_only_when_streaming(gw: Any, fake: FakeBedrock) -> None:
    await collect(gw.stub.CompleteStream(complete("cohere-command"), timeout=WAIT_S))
    await gw.stub.Complete(complete("cohere-command"), timeout=WAIT_S)
    assert fake.last("invoke-with-response-stream").body["stream"] is True
    assert "stream" not in fake.last("invoke").body


def botocore_stream_text(url: str, family: str) -> tuple[str, dict[str, Any]]:
    """botocore's own bedrock-runtime client against the fake: the stream's text, read per the
    family's documented chunk fields, and the last chunk's invocation metrics."""
    import botocore.session

    client = botocore.session.get_session().create_client(
        "bedrock-runtime", region_name="us-west-2", endpoint_url=url
    )
    # Every family's required keys at once: the fake answers each model with its family's stream.
    body = json.dumps({"prompt": "Say hi", "messages": [], "inputText": "Say hi", "anthropic_version": "bedrock-2023-05-31", "max_tokens": 8, "message": "Say hi"})  # fmt: skip
    response = client.invoke_model_with_response_stream(modelId=MODELS[family], body=body)
    chunks = [json.loads(event["chunk"]["bytes"]) for event in response["body"] if "chunk" in event]
    return "".join(CHUNK_TEXT[family](c) for c in chunks), chunks[-1]["amazon-bedrock-invocationMetrics"]


@pytest.mark.parametrize("family", sorted(MODELS))
async def test_botocores_client_reads_the_same_stream_as_the_gateway(
    gw: Any, fake: FakeBedrock, family: str
) -> None:
    oracle_text, metrics = await asyncio.to_thread(botocore_stream_text, fake.url, family)
    events = await collect(gw.stub.CompleteStream(complete(family), timeout=WAIT_S))
    assert text_of(events) == oracle_text
    assert (events[-2].usage.input_tokens, events[-2].usage.output_tokens) == (
        metrics["inputTokenCount"],
        metrics["outputTokenCount"],
    )
