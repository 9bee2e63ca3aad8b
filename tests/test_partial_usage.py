"""Provider-reported usage that arrived before a cut (issue 16.3): Anthropic's message_start carries
the prompt's tokens, an OpenAI-compatible host may send its usage chunk and then drop the connection
before [DONE]. What the provider said is charged instead of an estimate, marked partial, in the
failed call's trailers, its log line and its cost; a failed-over attempt's is charged in the Finish."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc
import orjson
import pytest
from conftest import ADAPTER_ROUTING, run_gateway, use_fake_aws_credentials
from rpc_util import access_line, collect_until_error
from test_observability import observed_gateway
from vendor_cases import chat_request

from provider_gateway.fakes import FakeUpstream, Reply
from provider_gateway.fakes.bedrock import FakeBedrock, chunk_frame, converse_text_frames
from provider_gateway.fakes.bedrock import Reply as BedrockReply
from provider_gateway.server.auth import hash_key
from provider_gateway.v1 import provider_service_pb2 as pb

# The prompt's tokens as Claude reports them at message_start: fresh, cache write, cache read.
FRESH, WRITE, READ = 1_200, 4_000, 10_000
MODEL = "claude-sonnet-4-5-20250929"


def frame(kind: str, data: dict[str, object]) -> bytes:
    return f"event: {kind}\ndata: ".encode() + orjson.dumps({"type": kind, **data}) + b"\n\n"


def claude_start() -> bytes:
    usage = {
        "input_tokens": FRESH,
        "cache_creation_input_tokens": WRITE,
        "cache_read_input_tokens": READ,
        "output_tokens": 1,
    }
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": MODEL, "content": []}
    return frame("message_start", {"message": {**message, "stop_reason": None, "usage": usage}})


def claude_text(text: str) -> list[bytes]:
    return [
        frame("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
        frame("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": text}}),
    ]


def cut_stream(*chunks: bytes) -> Reply:
    return Reply(chunks=list(chunks), content_type="text/event-stream", then="cut")


def anthropic_config(url: str, extra: str = "") -> str:
    return f'[providers.a]\nkind = "anthropic"\nbase_url = "{url}"\napi_key_env = "PG_X_KEY"\n{extra}'


# $3 input, $3.75 cache write, $0.30 cache read, $15 output per million tokens: micro-USD per token.
PROMPT_MICROS = FRESH * 3 + WRITE * 3.75 + READ * 0.30


async def test_a_claude_stream_cut_after_message_start_charges_the_reported_prompt(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PG_X_KEY", "k")
    relayed = "The weather in Paris is mild, with a light breeze."
    async with FakeUpstream() as fake:
        fake.script("/v1/messages", cut_stream(claude_start(), *claude_text(relayed)))
        config = anthropic_config(fake.url, "[routing]\nretries = 0\n")
        async with run_gateway(config) as gateway:
            with caplog.at_level(logging.INFO, logger="provider_gateway.access"):
                call = gateway.stub.ChatStream(chat_request(f"a/{MODEL}"), timeout=20)
                events, error = await collect_until_error(call)
                trailers = dict(await call.trailing_metadata())
                line = await access_line(caplog)
    assert error is not None
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "".join(e.text_delta.text for e in events) == relayed
    output = -(-len(relayed) // 4)  # the relayed text (about four characters a token) beats "1"
    assert trailers["usage-source"] == "partial"
    assert trailers["usage-estimated"] == "false"
    assert int(trailers["usage-input-tokens"]) == FRESH + WRITE + READ  # the provider's, not a guess
    assert int(trailers["usage-output-tokens"]) == output
    assert int(trailers["cost-usd-micros"]) == round(PROMPT_MICROS + output * 15)
    assert line.usage_source == "partial"  # type: ignore[attr-defined]
    assert line.input_tokens == FRESH + WRITE + READ  # type: ignore[attr-defined]
    assert line.cost_usd_micros == round(PROMPT_MICROS + output * 15)  # type: ignore[attr-defined]


async def cut_call(
    kind: str, base_path: str, path: str, reply: Reply, model: str
) -> tuple[grpc.aio.AioRpcError, dict[str, str]]:
    """One stream through the gateway to a `kind` provider whose upstream answers `reply` (no
    retry): the error it ends with, and its trailing metadata."""
    async with FakeUpstream() as fake:
        fake.script(path, reply)
        config = (
            f'[providers.p]\nkind = "{kind}"\nbase_url = "{fake.url}{base_path}"\napi_key_env = "PG_X_KEY"\n'
        )
        async with run_gateway(config + "[routing]\nretries = 0\n") as gateway:
            call = gateway.stub.ChatStream(chat_request(f"p/{model}"), timeout=20)
            _, error = await collect_until_error(call)
            trailers = dict(await call.trailing_metadata())
    assert error is not None
    return error, {k: str(v) for k, v in trailers.items()}


async def test_an_openai_usage_chunk_before_a_missing_done_is_charged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PG_X_KEY", "k")
    chunks = [
        {"id": "c", "model": "gpt-4o", "choices": [{"index": 0, "delta": {"content": "Mild."}}]},
        {"id": "c", "model": "gpt-4o", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {
            "id": "c",
            "model": "gpt-4o",
            "choices": [],
            "usage": {"prompt_tokens": 4_321, "completion_tokens": 7},
        },
    ]
    reply = Reply.sse(chunks, then="cut")  # no data: [DONE]
    error, trailers = await cut_call("openai", "/v1", "/v1/chat/completions", reply, "gpt-4o")
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert trailers["usage-source"] == "partial"
    assert (int(trailers["usage-input-tokens"]), int(trailers["usage-output-tokens"])) == (4_321, 7)
    assert int(trailers["cost-usd-micros"]) == round(4_321 * 2.5 + 7 * 10)  # gpt-4o: $2.50 in, $10 out


async def test_a_failed_over_attempt_is_charged_in_the_requests_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first deployment reports its prompt, then drops before any content; the fallback answers.
    The request's cost is both attempts'; the first is marked partial."""
    monkeypatch.setenv("PG_X_KEY", "k")
    async with FakeUpstream() as fake:
        fake.script("/v1/messages", cut_stream(claude_start()))
        config = anthropic_config(fake.url, "[providers.mock]\nkind = 'mock'\n[routing]\nretries = 0\n")
        async with run_gateway(config) as gateway:
            request = chat_request(f"a/{MODEL}", fallbacks=["mock/echo"])
            events = [e async for e in gateway.stub.ChatStream(request, timeout=20)]
    finish = events[-1].finish
    first, second = finish.attempts
    assert (first.provider, first.outcome, second.provider, second.outcome) == (
        "a",
        "UNAVAILABLE",
        "mock",
        "ok",
    )
    assert first.cost.usage_source == "partial"
    assert first.cost.amount_micros == round(PROMPT_MICROS + 1 * 15)  # message_start's output: 1 token
    assert finish.cost.known
    assert finish.cost.amount_micros == first.cost.amount_micros + second.cost.amount_micros
    assert finish.cost.usage_source == "partial"  # the least certain attempt names the whole


TEAM_KEY = "team-key-0123456789abcdefghijklmnop"
PRICED_MOCK = f"""
[providers.mock]
kind = "mock"
[providers.mock.models.flaky]
fault = "error_after_tokens"
fault_after_tokens = 4
fault_status = "UNAVAILABLE"
[prices.mock."echo"]
input = 1_000.0
output = 1_000.0
[prices.mock."flaky"]
input = 1_000.0
output = 1_000.0
[[auth.keys]]
name = "team-a"
sha256 = "{hash_key(TEAM_KEY)}"
"""


def cost_points(data: Any) -> dict[tuple[str, str, str], int]:
    points: dict[tuple[str, str, str], int] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == "provider_gateway.cost":
                    for p in metric.data.data_points:
                        a = p.attributes
                        points[(a["provider"], a["model"], a["key"])] = p.value
    return points


async def test_the_cost_metric_is_labelled_by_the_keys_name_and_counts_failed_calls() -> None:
    auth = (("authorization", f"Bearer {TEAM_KEY}"),)
    async with observed_gateway(PRICED_MOCK) as gw:
        stub = gw.running.stub
        ok = [e async for e in stub.ChatStream(chat_request("mock/echo"), metadata=auth, timeout=20)]
        call = stub.ChatStream(chat_request("mock/flaky"), metadata=auth, timeout=20)
        _, error = await collect_until_error(call)
        trailers = dict(await call.trailing_metadata())
        assert error is not None
        points: dict[tuple[str, str, str], int] = {}
        for _ in range(200):  # bounded: the failed call's metrics land once its handler unwinds
            points = cost_points(gw.reader.get_metrics_data())
            if ("mock", "flaky", "team-a") in points:
                break
            await asyncio.sleep(0.05)
    assert points[("mock", "echo", "team-a")] == ok[-1].finish.cost.amount_micros > 0
    assert points[("mock", "flaky", "team-a")] == int(trailers["cost-usd-micros"]) > 0
    assert not any(TEAM_KEY in label for labels in points for label in labels)


async def test_a_gemini_stream_cut_after_a_chunk_with_usage_metadata_charges_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Gemini repeats usageMetadata (cumulative) in its chunks: the last one heard is charged."""
    monkeypatch.setenv("PG_X_KEY", "k")
    chunk = {
        "candidates": [{"content": {"role": "model", "parts": [{"text": "Mild and"}]}, "index": 0}],
        "usageMetadata": {"promptTokenCount": 30_000, "candidatesTokenCount": 3, "totalTokenCount": 30_003},
        "modelVersion": "gemini-2.5-flash",
    }
    path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    error, trailers = await cut_call("gemini", "", path, Reply.sse([chunk], then="cut"), "gemini-2.5-flash")
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert trailers["usage-source"] == "partial"
    assert (int(trailers["usage-input-tokens"]), int(trailers["usage-output-tokens"])) == (30_000, 3)
    assert int(trailers["cost-usd-micros"]) == round(30_000 * 0.30 + 3 * 2.50)  # $0.30 in, $2.50 out


async def test_a_cancelled_claude_stream_is_logged_with_the_prompt_claude_reported(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PG_X_KEY", "k")
    hanging = Reply(
        chunks=[claude_start(), *claude_text("Mild")], content_type="text/event-stream", then="hang"
    )
    async with FakeUpstream() as fake:
        fake.script("/v1/messages", hanging)
        async with run_gateway(anthropic_config(fake.url)) as gateway:
            with caplog.at_level(logging.INFO, logger="provider_gateway.access"):
                call = gateway.stub.ChatStream(chat_request(f"a/{MODEL}"), timeout=20)
                first = await call.read()
                assert first.text_delta.text == "Mild"
                call.cancel()
                line = await access_line(caplog)
    assert line.usage_source == "partial"  # type: ignore[attr-defined]
    assert line.input_tokens == FRESH + WRITE + READ  # type: ignore[attr-defined]
    assert line.cost_usd_micros == round(PROMPT_MICROS + 1 * 15)  # type: ignore[attr-defined]


async def test_an_attempt_the_provider_refused_with_an_http_error_is_not_charged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 429 (or any HTTP error answer) is a refusal: the vendor processed and bills nothing. The
    failed-over request's cost is the fallback's alone, and a request that fails so carries no
    usage trailers (they fed the key's token quota and the cost metric with a phantom prompt)."""
    monkeypatch.setenv("PG_X_KEY", "k")
    refusal = orjson.dumps({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}})
    async with FakeUpstream() as fake:
        fake.script("/v1/messages", Reply(status=429, body=refusal), Reply(status=429, body=refusal))
        config = anthropic_config(fake.url, "[providers.mock]\nkind = 'mock'\n[routing]\nretries = 0\n")
        async with run_gateway(config) as gateway:
            request = chat_request(f"a/{MODEL}", fallbacks=["mock/echo"])
            events = [e async for e in gateway.stub.ChatStream(request, timeout=20)]
            alone = gateway.stub.ChatStream(chat_request(f"a/{MODEL}"), timeout=20)
            _, error = await collect_until_error(alone)
        assert len([r for r in fake.requests if r.path == "/v1/messages"]) == 2  # both refused there
    finish = events[-1].finish
    first, second = finish.attempts
    assert (first.provider, first.outcome, second.provider) == ("a", "RESOURCE_EXHAUSTED", "mock")
    assert first.cost.amount_micros == 0
    assert finish.cost.amount_micros == second.cost.amount_micros
    assert error is not None
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    trailers = dict(error.trailing_metadata() or ())
    assert "usage-input-tokens" not in trailers
    assert "cost-usd-micros" not in trailers


# --- Bedrock: ConverseStream's `metadata` and InvokeModel's chunk usage, reported as they arrive ---


async def bedrock_cut(
    frames: list[bytes], call: str, model: str, caplog: pytest.LogCaptureFixture
) -> tuple[dict[str, str], Any]:
    """One Bedrock stream (ChatStream or CompleteStream) whose fake sends `frames` then ends, cut:
    its trailing metadata and its access log line."""
    with pytest.MonkeyPatch.context() as patch:
        use_fake_aws_credentials(patch)
        async with FakeBedrock() as fake:
            fake.push(BedrockReply(frames=frames))
            config = f'[providers.b]\nkind = "bedrock"\nregion = "us-west-2"\nendpoint_url = "{fake.url}"\n'
            async with run_gateway(config + ADAPTER_ROUTING) as gateway:
                with caplog.at_level(logging.INFO, logger="provider_gateway.access"):
                    if call == "chat":
                        stream = gateway.stub.ChatStream(chat_request(f"b/{model}"), timeout=20)
                    else:
                        request = pb.CompleteRequest(model=f"b/{model}", prompt="Weather?")
                        stream = gateway.stub.CompleteStream(request, timeout=20)
                    _, error = await collect_until_error(stream)
                    trailers = dict(await stream.trailing_metadata())
                    line = await access_line(caplog)
    assert error is not None
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    return {k: str(v) for k, v in trailers.items()}, line


async def test_a_converse_stream_cut_after_its_metadata_charges_bedrocks_usage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    usage = {"inputTokens": 2_345, "outputTokens": 6, "totalTokens": 2_351}
    frames = converse_text_frames(["Mild."], usage=usage)
    cut = frames[0][:7]  # the connection drops inside the next frame
    _, line = await bedrock_cut([*frames, cut], "chat", "anthropic.claude-3-5-sonnet-20241022-v2:0", caplog)
    assert (line.input_tokens, line.output_tokens) == (2_345, 6)  # Bedrock's figures, not a guess
    assert line.usage_source in ("provider", "partial")


async def test_an_invoke_model_claude_stream_cut_after_message_start_charges_its_prompt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "content": [],
            "usage": {"input_tokens": FRESH, "cache_read_input_tokens": READ, "output_tokens": 1},
        },
    }
    text = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Mild."}}
    frames = [chunk_frame(start), chunk_frame(text)]  # no message_stop
    trailers, line = await bedrock_cut(
        frames, "complete", "anthropic.claude-3-5-sonnet-20241022-v2:0", caplog
    )
    assert trailers["usage-source"] == "partial"
    assert trailers["usage-estimated"] == "false"
    assert int(trailers["usage-input-tokens"]) == FRESH + READ  # Claude's own count, cache included
    assert (line.usage_source, line.input_tokens) == ("partial", FRESH + READ)
