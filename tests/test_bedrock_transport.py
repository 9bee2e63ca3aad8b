"""Bedrock's own transport against botocore as the oracle: the same signature at a frozen clock, the
same requests on the wire, the same decoded streams; API keys; usage from InvokeModel's headers; and
no botocore loaded by a gateway that serves Bedrock with environment credentials.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from typing import Any
from unittest import mock

import grpc
import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.session import get_session
from conftest import ADAPTER_ROUTING, use_fake_aws_credentials

from provider_gateway.fakes.bedrock import (
    ACCESS_KEY,
    SECRET_KEY,
    FakeBedrock,
    Reply,
    SeenRequest,
    chunk_frame,
    event_frame,
    invoke_stream_chunks,
)
from provider_gateway.providers.bedrock.credentials import AwsCredentials
from provider_gateway.providers.bedrock.signing import sigv4_headers
from provider_gateway.v1 import provider_service_pb2 as pb

CLAUDE = "anthropic.claude-3-5-sonnet-20241022-v2:0"
LLAMA = "meta.llama3-8b-instruct-v1:0"
REGION = "us-west-2"
# What botocore adds that is SDK telemetry (or its own identity), not part of the call.
SDK_ONLY_HEADERS = {"user-agent", "amz-sdk-invocation-id", "amz-sdk-request"}


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    use_fake_aws_credentials(monkeypatch)


@pytest.fixture
async def fake(aws_env: None) -> AsyncIterator[FakeBedrock]:
    async with FakeBedrock() as running:
        yield running


def config(url: str, extra: str = "") -> str:
    return f'[providers.bedrock]\nkind = "bedrock"\nregion = "{REGION}"\nendpoint_url = "{url}"\n{extra}\n{ADAPTER_ROUTING}'


@pytest.fixture
async def gw(fake: FakeBedrock, gateway_factory: Any) -> AsyncIterator[Any]:
    async with gateway_factory(config(fake.url)) as running:
        yield running


def user(text: str) -> pb.Message:
    return pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text=text)])


async def with_botocore(fake: FakeBedrock, service: str, call: Callable[[Any], Any]) -> Any:
    """Run `call(client)` with botocore's own client for `service`, pointed at the fake (in a thread:
    botocore blocks, and the fake answers on this loop)."""

    def run() -> Any:
        client = get_session().create_client(
            service,
            region_name=REGION,
            endpoint_url=fake.url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(retries={"total_max_attempts": 1}),
        )
        return call(client)

    return await asyncio.to_thread(run)


# --- the signature ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url", "headers", "body", "token"),
    [
        pytest.param(
            "POST",
            "https://bedrock-runtime.us-west-2.amazonaws.com/model/anthropic.claude-3-5-sonnet-20241022-v2:0/converse",
            {"Content-Type": "application/json"},
            b'{"messages": [{"role": "user", "content": [{"text": "h\\u00e9"}]}]}',
            None,
            id="converse",
        ),
        pytest.param(
            "POST",
            "http://127.0.0.1:8123/model/arn:aws:bedrock:us-west-2:1:imported-model%2Fabc/invoke",
            {"Content-Type": "application/json", "Accept": "application/json"},
            b'{"prompt": "x"}',
            "session-token",
            id="invoke-arn-session-token",
        ),
        pytest.param(
            "GET",
            "https://bedrock.us-west-2.amazonaws.com/inference-profiles?nextToken=a%2Fb%2Bc%3D",
            {},
            b"",
            None,
            id="control-plane-get",
        ),
    ],
)
async def test_sigv4_headers_equal_botocores_at_a_frozen_clock(
    method: str, url: str, headers: dict[str, str], body: bytes, token: str | None
) -> None:
    ours = await sigv4_headers(
        AwsCredentials(ACCESS_KEY, SECRET_KEY, token),
        REGION,
        method,
        httpx.URL(url),
        headers,
        body,
        date="20250102T030405Z",
    )
    theirs = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
    frozen = datetime.datetime(2025, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    with mock.patch("botocore.auth.get_current_datetime", return_value=frozen):
        SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY, token), "bedrock", REGION).add_auth(theirs)
    assert ours == dict(theirs.headers.items())
    assert ("X-Amz-Security-Token" in ours) is (token is not None)


# --- the same requests as botocore ---------------------------------------------------------------


def wire(seen: SeenRequest) -> dict[str, Any]:
    """What a request put on the wire, but its clock-dependent signature and SDK telemetry."""
    method, path = seen.request_line.split(" ", 1)
    headers = {k.lower(): v for k, v in seen.headers.items() if k.lower() not in SDK_ONLY_HEADERS}
    if headers.get("accept") == "*/*":  # aiohttp's default when a call sets none (unsigned)
        del headers["accept"]
    authorization = headers.pop("authorization")
    del headers["x-amz-date"]
    return {
        "method": method,
        # botocore sends `:` as %3A; aiohttp sends it plain (equivalent in a path; signed as sent).
        "path": path.replace("%3A", ":"),
        "headers": headers,
        "signed_headers": authorization.split("SignedHeaders=", 1)[1].split(",", 1)[0],
        "body": seen.raw_body,
        "signature_valid": seen.signature_valid,
    }


async def test_runtime_requests_match_botocores_for_the_same_calls(gw: Any, fake: FakeBedrock) -> None:
    parameters_json = '{"type": "object", "properties": {"city": {"type": "string"}}}'
    from google.protobuf import json_format, struct_pb2

    parameters = json_format.Parse(parameters_json, struct_pb2.Struct())
    chat = pb.ChatRequest(
        model=f"bedrock/{CLAUDE}",
        messages=[user("Weather in Paris? é")],
        max_tokens=50,
        temperature=0.5,
        tools=[pb.Tool(name="get_weather", description="by city", parameters=parameters)],
    )
    await gw.stub.Chat(chat)
    [event async for event in gw.stub.ChatStream(chat)]
    completion = pb.CompleteRequest(model=f"bedrock/{LLAMA}", prompt="Say hi", max_tokens=9)
    await gw.stub.Complete(completion)
    [event async for event in gw.stub.CompleteStream(completion)]
    await gw.stub.CountTokens(pb.CountTokensRequest(model=f"bedrock/{CLAUDE}", text="four words to count"))
    ours = {seen.operation: wire(seen) for seen in fake.seen}
    converse = json.loads(ours["converse"]["body"])
    invoke_body = ours["invoke"]["body"]
    count_input = json.loads(ours["count-tokens"]["body"])["input"]
    fake.seen.clear()

    def calls(client: Any) -> None:
        client.converse(modelId=CLAUDE, **converse)
        for _ in client.converse_stream(modelId=CLAUDE, **converse)["stream"]:
            pass
        client.invoke_model(
            modelId=LLAMA, body=invoke_body, contentType="application/json", accept="application/json"
        )
        stream = client.invoke_model_with_response_stream(
            modelId=LLAMA, body=invoke_body, contentType="application/json", accept="application/json"
        )
        for _ in stream["body"]:
            pass
        client.count_tokens(modelId=CLAUDE, input=count_input)

    await with_botocore(fake, "bedrock-runtime", calls)
    theirs = {seen.operation: wire(seen) for seen in fake.seen}
    assert set(ours) == {
        "converse",
        "converse-stream",
        "invoke",
        "invoke-with-response-stream",
        "count-tokens",
    }
    for operation, request in ours.items():
        assert request == theirs[operation], operation
    assert ours["converse"]["headers"]["content-type"] == "application/json"


async def test_control_plane_requests_match_botocores(gw: Any, fake: FakeBedrock) -> None:
    await gw.stub.ListModels(pb.ListModelsRequest())
    ours = {seen.operation: wire(seen) for seen in fake.seen}
    fake.seen.clear()

    def calls(client: Any) -> None:
        client.list_foundation_models()
        client.list_inference_profiles()

    await with_botocore(fake, "bedrock", calls)
    theirs = {seen.operation: wire(seen) for seen in fake.seen}
    assert set(ours) == {"list-foundation-models", "list-inference-profiles"}
    assert ours == theirs


# --- botocore decodes the same streams to what the gateway reports ------------------------------

TOOL_STREAM = [
    event_frame("messageStart", {"role": "assistant"}),
    event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Checking "}}),
    event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "the weather."}}),
    event_frame("contentBlockStop", {"contentBlockIndex": 0}),
    event_frame(
        "contentBlockStart",
        {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather"}}},
    ),
    event_frame("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"city":'}}}),
    event_frame("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '"Paris"}'}}}),
    event_frame("contentBlockStop", {"contentBlockIndex": 1}),
    event_frame("messageStop", {"stopReason": "tool_use"}),
    event_frame("metadata", {"usage": {"inputTokens": 30, "outputTokens": 9, "totalTokens": 39}}),
]


def botocore_converse_view(
    events: list[dict[str, Any]],
) -> tuple[str, list[tuple[str, str, str]], tuple[int, int]]:
    text, tools, usage = "", [], (0, 0)
    for event in events:
        if "contentBlockStart" in event:
            tool = event["contentBlockStart"]["start"]["toolUse"]
            tools.append([tool["toolUseId"], tool["name"], ""])
        elif "contentBlockDelta" in event:
            delta = event["contentBlockDelta"]["delta"]
            text += delta.get("text", "")
            if "toolUse" in delta:
                tools[-1][2] += delta["toolUse"]["input"]
        elif "metadata" in event:
            used = event["metadata"]["usage"]
            usage = (used["inputTokens"], used["outputTokens"])
    return text, [tuple(tool) for tool in tools], usage


def gateway_view(events: list[pb.StreamEvent]) -> tuple[str, list[tuple[str, str, str]], tuple[int, int]]:
    text = "".join(e.text_delta.text for e in events)
    tools = [
        (e.tool_call_end.call.id, e.tool_call_end.call.name, e.tool_call_end.call.arguments_json)
        for e in events
        if e.HasField("tool_call_end")
    ]
    usage = next((e.usage.input_tokens, e.usage.output_tokens) for e in events if e.HasField("usage"))
    return text, tools, usage


async def test_botocore_decodes_the_same_converse_stream_to_what_the_gateway_reports(
    gw: Any, fake: FakeBedrock
) -> None:
    fake.push(Reply(frames=TOOL_STREAM))
    request = pb.ChatRequest(model=f"bedrock/{CLAUDE}", messages=[user("Weather?")])
    ours = gateway_view([event async for event in gw.stub.ChatStream(request)])
    fake.push(Reply(frames=TOOL_STREAM))
    body = json.loads(fake.last("converse-stream").raw_body)
    theirs = await with_botocore(
        fake, "bedrock-runtime", lambda client: list(client.converse_stream(modelId=CLAUDE, **body)["stream"])
    )
    assert ours == botocore_converse_view(theirs)
    assert ours[1] == [("tooluse_1", "get_weather", '{"city":"Paris"}')]


INVOKE_MODELS = {
    "anthropic": "anthropic.claude-3-haiku-20240307-v1:0",
    "nova": "amazon.nova-lite-v1:0",
    "titan": "amazon.titan-text-express-v1",
    "llama": LLAMA,
    "mistral": "mistral.mistral-7b-instruct-v0:2",
    "cohere": "cohere.command-r-v1:0",
}


def chunk_text(family: str, chunk: dict[str, Any]) -> str:
    """The text in one chunk, read the way each family documents it (botocore gives raw chunks)."""
    if family == "anthropic":
        return str(chunk["delta"]["text"]) if chunk["type"] == "content_block_delta" else ""
    if family == "nova":
        return str(chunk["contentBlockDelta"]["delta"]["text"]) if "contentBlockDelta" in chunk else ""
    if family == "titan":
        return str(chunk["outputText"])
    if family == "llama":
        return str(chunk["generation"])
    if family == "mistral":
        return str(chunk["outputs"][0]["text"])
    return str(chunk["text"]) if chunk["event_type"] == "text-generation" else ""


@pytest.mark.parametrize("family", list(INVOKE_MODELS))
async def test_botocore_decodes_the_same_invoke_stream_to_what_the_gateway_reports(
    gw: Any, fake: FakeBedrock, family: str
) -> None:
    frames = [chunk_frame(chunk) for chunk in invoke_stream_chunks(family, ["Hel", "lo ", "there"])]
    model = INVOKE_MODELS[family]
    fake.push(Reply(frames=frames))
    request = pb.CompleteRequest(model=f"bedrock/{model}", prompt="x")
    events = [e async for e in gw.stub.CompleteStream(request)]
    fake.push(Reply(frames=frames))
    sent = fake.last("invoke-with-response-stream").raw_body

    def call(client: Any) -> list[dict[str, Any]]:
        stream = client.invoke_model_with_response_stream(modelId=model, body=sent)
        return [json.loads(event["chunk"]["bytes"]) for event in stream["body"]]

    chunks = await with_botocore(fake, "bedrock-runtime", call)
    text = "".join(chunk_text(family, chunk) for chunk in chunks)
    metrics = chunks[-1]["amazon-bedrock-invocationMetrics"]  # Bedrock's own counts, every family
    usage = next(e.usage for e in events if e.HasField("usage"))
    assert "".join(e.text_delta.text for e in events) == text
    assert text.endswith("there")
    assert (usage.input_tokens, usage.output_tokens) == (
        metrics["inputTokenCount"],
        metrics["outputTokenCount"],
    )


# --- InvokeModel's usage headers ----------------------------------------------------------------


async def test_invoke_model_usage_comes_from_the_response_headers_when_the_body_has_none(
    gw: Any, fake: FakeBedrock
) -> None:
    counts = {"X-Amzn-Bedrock-Input-Token-Count": "21", "X-Amzn-Bedrock-Output-Token-Count": "7"}
    # Mistral's InvokeModel body carries no token counts at all.
    fake.push(Reply(body={"outputs": [{"text": "Hi", "stop_reason": "stop"}]}, headers=counts))
    model = "mistral.mistral-7b-instruct-v0:2"
    response = await gw.stub.Complete(pb.CompleteRequest(model=f"bedrock/{model}", prompt="x"))
    assert response.text == "Hi"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (21, 7)


async def test_a_body_with_usage_keeps_its_own_counts(gw: Any, fake: FakeBedrock) -> None:
    counts = {"X-Amzn-Bedrock-Input-Token-Count": "500", "X-Amzn-Bedrock-Output-Token-Count": "500"}
    body = {"generation": "Hi", "prompt_token_count": 9, "generation_token_count": 4, "stop_reason": "stop"}
    fake.push(Reply(body=body, headers=counts))
    response = await gw.stub.Complete(pb.CompleteRequest(model=f"bedrock/{LLAMA}", prompt="x"))
    assert (response.usage.input_tokens, response.usage.output_tokens) == (9, 4)


async def test_a_session_token_is_sent_and_signed(
    fake: FakeBedrock, gateway_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token-from-a-role")
    async with gateway_factory(config(fake.url)) as gw:
        await gw.stub.Chat(pb.ChatRequest(model=f"bedrock/{CLAUDE}", messages=[user("Hi")]))
    seen = fake.last("converse")
    assert seen.signature_valid
    headers = {name.lower(): value for name, value in seen.headers.items()}
    assert headers["x-amz-security-token"] == "session-token-from-a-role"
    assert "x-amz-security-token" in headers["authorization"]


@pytest.mark.parametrize("model", ["custom=model@v1:0", "imported(model)!v2,x;y", "it's*$&"])
async def test_a_model_id_with_reserved_characters_is_signed_as_sent(
    gw: Any, fake: FakeBedrock, model: str
) -> None:
    """The pool's transport (aiohttp) sends `@ = , ; ( ) ! * $ & '` decoded in a path; a signature
    over the percent-encoded form does not match what arrives, and Bedrock would answer a
    signature error (UNAUTHENTICATED: "check your credentials") instead of judging the model id."""
    response = await gw.stub.Chat(pb.ChatRequest(model=f"bedrock/{model}", messages=[user("Hi")]))
    assert response.text == "Hello from Bedrock"
    seen = fake.last("converse")
    assert (seen.model_id, seen.signature_valid) == (model, True)


# --- Bedrock API keys -----------------------------------------------------------------------------


async def test_a_bedrock_api_key_is_sent_as_a_bearer_token_instead_of_sigv4(
    aws_env: None, gateway_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "bedrock-api-key-abc123")
    async with (
        FakeBedrock(bearer_token="bedrock-api-key-abc123") as fake,
        gateway_factory(config(fake.url)) as gw,
    ):
        events = [
            e
            async for e in gw.stub.ChatStream(
                pb.ChatRequest(model=f"bedrock/{CLAUDE}", messages=[user("Hi")])
            )
        ]
        await gw.stub.ListModels(pb.ListModelsRequest())
    assert "".join(e.text_delta.text for e in events) == "Hello from Bedrock"
    assert {seen.operation for seen in fake.seen} >= {"converse-stream", "list-foundation-models"}
    for seen in fake.seen:
        assert seen.signature_valid
        assert seen.headers["Authorization"] == "Bearer bedrock-api-key-abc123"
        assert "x-amz-date" not in {name.lower() for name in seen.headers}


async def test_a_wrong_api_key_is_unauthenticated_and_never_echoed(
    aws_env: None, gateway_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "bedrock-api-key-wrong")
    async with (
        FakeBedrock(bearer_token="bedrock-api-key-right") as fake,
        gateway_factory(config(fake.url)) as gw,
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await gw.stub.Chat(pb.ChatRequest(model=f"bedrock/{CLAUDE}", messages=[user("Hi")]))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "bedrock-api-key-wrong" not in (caught.value.details() or "")


# --- no botocore at run time ----------------------------------------------------------------------

NO_SDK_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from provider_gateway.config import Section
    from provider_gateway.domain import ChatRequest, CompletionRequest, Message, Role, TextPart
    from provider_gateway.http.pool import UpstreamPool
    from provider_gateway.providers.bedrock.adapter import from_config
    from provider_gateway.providers.context import ProviderContext

    async def main(url, claude, llama):
        pool = UpstreamPool()
        options = {"kind": "bedrock", "region": "us-west-2", "endpoint_url": url}
        provider = from_config("bedrock", Section(options, "test", "providers.bedrock"), ProviderContext(pool))
        assert (await provider.health_check()).healthy
        hi = [Message(Role.USER, (TextPart("Hi"),))]
        async for _ in provider.chat_stream(ChatRequest(model=claude, messages=hi)):
            pass
        await provider.complete(CompletionRequest(model=llama, prompt="Hi"))
        await provider.aclose()
        await pool.aclose()
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("botocore", "aiobotocore", "boto3"))
        print("LOADED", loaded)

    asyncio.run(main(*sys.argv[1:]))
    """
)


async def test_serving_bedrock_with_environment_credentials_loads_no_botocore(fake: FakeBedrock) -> None:
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", NO_SDK_SCRIPT, fake.url, CLAUDE, LLAMA],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),  # the fake's keys, set by the fixture
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stdout
    assert {seen.operation for seen in fake.seen} == {"converse-stream", "invoke"}
    assert all(seen.signature_valid for seen in fake.seen)


# --- max_connections ----------------------------------------------------------------------------


async def test_max_connections_bounds_the_calls_open_at_once(fake: FakeBedrock, gateway_factory: Any) -> None:
    opening = [event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "first"}})]
    fake.push(Reply(frames=opening, hang=True))
    async with gateway_factory(config(fake.url, "max_connections = 1")) as gw:
        request = pb.ChatRequest(model=f"bedrock/{CLAUDE}", messages=[user("Hi")])
        holding = gw.stub.ChatStream(request)
        assert (await holding.read()).text_delta.text == "first"
        # The one slot is taken by the open stream: a second call waits for it until its deadline.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await gw.stub.Chat(request, timeout=1.0)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert [seen.operation for seen in fake.seen] == ["converse-stream"]
        holding.cancel()  # closing the stream frees the slot
        response = await gw.stub.Chat(request, timeout=20)
    assert response.text == "Hello from Bedrock"


async def test_inference_profiles_are_followed_page_by_page_with_signed_tokens(
    gw: Any, fake: FakeBedrock
) -> None:
    fake.profile_pages = [
        [
            {"inferenceProfileId": f"us.anthropic.claude-{page}-{i}", "inferenceProfileName": "p"}
            for i in range(2)
        ]
        for page in range(3)
    ]
    response = await gw.stub.ListModels(pb.ListModelsRequest())
    ids = {model.id for model in response.models}
    assert {f"us.anthropic.claude-{page}-{i}" for page in range(3) for i in range(2)} <= ids
    pages = [seen for seen in fake.seen if seen.operation == "list-inference-profiles"]
    assert len(pages) == 3
    assert all(seen.signature_valid for seen in pages)  # the tokens' `/ + =` signed as sent
