"""Every adapter's rate-limit signals reach the router (issue 16.5): the header families of the
OpenAI-compatible hosts that differ (OpenRouter, Together, Fireworks, Groq's daily requests, Azure's
remaining-only and -1 figures), Anthropic's token families, Gemini's 429 RetryInfo; a deployment
low on announced headroom goes after those with room, and ListProviders shows what was observed."""

from __future__ import annotations

import datetime

import grpc
import orjson
import pytest
from conftest import ADAPTER_ROUTING, run_gateway, use_fake_aws_credentials
from vendor_cases import chat_error, chat_request, retry_after_ms

from provider_gateway.fakes import FakeUpstream, Reply
from provider_gateway.fakes.bedrock import FakeBedrock
from provider_gateway.fakes.bedrock import Reply as BedrockReply
from provider_gateway.fakes.gemini import FakeGemini
from provider_gateway.http.rate_limits import RateLimitInfo, announced
from provider_gateway.v1 import provider_service_pb2 as pb

NOW = 1_800_000_000.0


def test_openrouter_429_headers_with_an_epoch_reset_in_milliseconds() -> None:
    headers = {
        "X-RateLimit-Limit": "20",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(int((NOW + 30) * 1000)),
    }
    lowered = {k.lower(): v for k, v in headers.items()}  # httpx's headers are case-insensitive
    assert announced(lowered, NOW) == RateLimitInfo(0, 20, reset_s=pytest.approx(30.0))


def test_togethers_unsuffixed_request_budget() -> None:
    info = announced(
        {"x-ratelimit-limit": "600", "x-ratelimit-remaining": "30", "x-ratelimit-reset": "1"}, NOW
    )
    assert info == RateLimitInfo(30, 600, reset_s=1.0)
    assert info is not None
    assert info.headroom() == pytest.approx(0.05)


def test_fireworks_prompt_and_generated_token_limits() -> None:
    headers = {"x-ratelimit-limit-tokens-prompt": "60000", "x-ratelimit-limit-tokens-generated": "12000"}
    info = announced(headers, NOW)
    assert info is not None
    assert info.limit_tokens in (60000, 12000)  # a limit without a remaining figure: both equally full
    assert info.headroom() is None  # nothing says how much is left


def test_azures_minus_one_means_no_figure_and_remaining_alone_still_counts() -> None:
    assert (
        announced({"x-ratelimit-limit-tokens": "-1", "x-ratelimit-remaining-tokens": "-1"}, NOW)
        == RateLimitInfo()
    )
    spent = announced({"x-ratelimit-remaining-requests": "0", "x-ratelimit-remaining-tokens": "5000"}, NOW)
    assert spent is not None
    assert spent.headroom() == 0.0


def openai_answer(text: str = "hi") -> bytes:
    chunks = [
        {"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"content": text}}]},
        {"id": "c", "model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    return b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


def answering(fake: FakeUpstream, path: str, headers: dict[str, str], text: str = "hi") -> None:
    fake.on(
        "POST",
        path,
        lambda _: Reply(chunks=[openai_answer(text)], content_type="text/event-stream", headers=headers),
    )


async def limits_of(gateway: object, name: str) -> pb.RateLimits:
    listed = await gateway.stub.ListProviders(pb.ListProvidersRequest(), timeout=20)  # type: ignore[attr-defined]
    return next(p for p in listed.providers if p.name == name).capabilities.rate_limits


async def test_groqs_daily_request_budget_is_not_shown_as_requests_per_minute(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PG_X_KEY", "k")
    headers = {
        "x-ratelimit-limit-requests": "14400",  # per day at Groq
        "x-ratelimit-remaining-requests": "14399",
        "x-ratelimit-reset-requests": "6s",
        "x-ratelimit-limit-tokens": "6000",  # per minute
        "x-ratelimit-remaining-tokens": "5990",
        "x-ratelimit-reset-tokens": "100ms",
    }
    async with FakeUpstream() as fake:
        answering(fake, "/openai/v1/chat/completions", headers)
        config = (
            f'[providers.g]\nkind = "groq"\nbase_url = "{fake.url}/openai/v1"\napi_key_env = "PG_X_KEY"\n'
        )
        async with run_gateway(config) as gateway:
            [e async for e in gateway.stub.ChatStream(chat_request("g/llama-3.3-70b-versatile"), timeout=20)]
            limits = await limits_of(gateway, "g")
    assert (limits.requests_per_minute, limits.tokens_per_minute) == (0, 6000)


async def test_azure_429_with_retry_after_ms_holds_the_deployment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PG_X_KEY", "k")
    refused = Reply.error(
        429,
        {
            "error": {
                "code": "429",
                "message": "Requests to the ChatCompletions_Create Operation have exceeded the rate limit. Please retry after 20 seconds.",
            }
        },
        headers={
            "retry-after-ms": "20000",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-remaining-tokens": "0",
        },
    )
    path = "/openai/deployments/prod/chat/completions"
    async with FakeUpstream() as fake:
        fake.script(path, refused)
        config = (
            f'[providers.az]\nkind = "azure"\nbase_url = "{fake.url}"\napi_key_env = "PG_X_KEY"\n'
            'deployment = "prod"\n'
        )
        async with run_gateway(config) as gateway:
            first, _ = await chat_error(gateway.stub, chat_request("az/gpt-4o"))
            second, _ = await chat_error(gateway.stub, chat_request("az/gpt-4o"))
            limits = await limits_of(gateway, "az")
        sent = [r for r in fake.requests if r.path == path]
    assert first.code() == second.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert 19_000 < (retry_after_ms(second) or 0) <= 20_000  # the wait Azure asked for, counting down
    assert len(sent) == 1  # the held request never reached Azure
    assert limits.max_concurrent == 128  # the adaptive limiter halved from 256 on the 429


async def test_anthropic_output_token_family_low_slows_the_limiter_before_any_429(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PG_X_KEY", "k")
    reset = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=50)).isoformat()
    headers = {
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "49",
        "anthropic-ratelimit-requests-reset": reset,
        "anthropic-ratelimit-input-tokens-limit": "30000",
        "anthropic-ratelimit-input-tokens-remaining": "29000",
        "anthropic-ratelimit-input-tokens-reset": reset,
        "anthropic-ratelimit-output-tokens-limit": "8000",
        "anthropic-ratelimit-output-tokens-remaining": "400",  # 5%: below the 10% low-headroom mark
        "anthropic-ratelimit-output-tokens-reset": reset,
    }
    async with FakeUpstream() as fake:
        fake.on(
            "POST",
            "/v1/messages",
            lambda _: Reply(chunks=[claude_answer()], content_type="text/event-stream", headers=headers),
        )
        config = f'[providers.a]\nkind = "anthropic"\nbase_url = "{fake.url}"\napi_key_env = "PG_X_KEY"\n'
        async with run_gateway(config) as gateway:
            events = [
                e async for e in gateway.stub.ChatStream(chat_request("a/claude-sonnet-4-5"), timeout=20)
            ]
            limits = await limits_of(gateway, "a")
    assert events[-1].finish.attempts[0].outcome == "ok"
    assert (limits.requests_per_minute, limits.tokens_per_minute) == (50, 8000)  # the tightest token family
    assert limits.max_concurrent == 128  # halved on the announcement, with no 429 yet


def claude_answer() -> bytes:
    def frame(kind: str, data: dict[str, object]) -> bytes:
        return f"event: {kind}\ndata: ".encode() + orjson.dumps({"type": kind, **data}) + b"\n\n"

    usage = {"input_tokens": 10, "output_tokens": 1}
    message = {"id": "m", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": []}
    return b"".join(
        [
            frame("message_start", {"message": {**message, "stop_reason": None, "usage": usage}}),
            frame("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
            frame("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "hi"}}),
            frame("content_block_stop", {"index": 0}),
            frame("message_delta", {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}}),
            frame("message_stop", {}),
        ]
    )


async def test_gemini_429_retry_info_slows_and_holds_the_deployment(monkeypatch: pytest.MonkeyPatch) -> None:
    async with FakeGemini() as fake:
        monkeypatch.setenv("PG_GEMINI_KEY", fake.api_key)
        config = f'[providers.gemini]\nkind = "gemini"\nbase_url = "{fake.base_url}"\napi_key_env = "PG_GEMINI_KEY"\n'
        async with run_gateway(config) as gateway:
            first, _ = await chat_error(gateway.stub, chat_request("gemini/error-429"))
            calls = len(fake.calls)
            second, _ = await chat_error(gateway.stub, chat_request("gemini/error-429"))
            limits = await limits_of(gateway, "gemini")
        assert len(fake.calls) == calls  # held for the RetryInfo's 7 s: not sent again
    assert first.code() == second.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert 0 < (retry_after_ms(second) or 0) <= 7000
    assert limits.max_concurrent == 128


GROUP = """
[providers.left]
kind = "openai"
base_url = "{url}/left/v1"
api_key_env = "PG_X_KEY"
[providers.right]
kind = "openai"
base_url = "{url}/right/v1"
api_key_env = "PG_X_KEY"
[groups.pair]
deployments = [{{ provider = "left", model = "m" }}, {{ provider = "right", model = "m" }}]
"""


async def test_the_deployment_low_on_headroom_goes_after_the_one_with_room(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both deployments answer; `left` announces 3% of its tokens left for the next minute. Once it
    has said so, every request goes to `right`, before either provider has refused anything."""
    monkeypatch.setenv("PG_X_KEY", "k")
    low = {
        "x-ratelimit-limit-tokens": "100000",
        "x-ratelimit-remaining-tokens": "3000",
        "x-ratelimit-reset-tokens": "1m0s",
    }
    roomy = {
        "x-ratelimit-limit-tokens": "100000",
        "x-ratelimit-remaining-tokens": "90000",
        "x-ratelimit-reset-tokens": "1m0s",
    }
    async with FakeUpstream() as fake:
        answering(fake, "/left/v1/chat/completions", low, "from left")
        answering(fake, "/right/v1/chat/completions", roomy, "from right")
        async with run_gateway(GROUP.format(url=fake.url)) as gateway:

            async def served_by() -> str:
                events = [e async for e in gateway.stub.ChatStream(chat_request("pair"), timeout=20)]
                return events[-1].finish.provider

            for _ in range(60):  # weighted random: `left` gets a first request soon (bounded)
                if await served_by() == "left":
                    break
            else:
                pytest.fail("the balancer never chose left")
            after = [await served_by() for _ in range(12)]
    assert after == ["right"] * 12


async def test_bedrock_throttling_is_heard_as_a_rate_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bedrock announces no budgets and names no wait: its ThrottlingException (HTTP 429) reaches the
    router as RESOURCE_EXHAUSTED, which slows the deployment's limiter (seen in ListProviders)."""
    use_fake_aws_credentials(monkeypatch)
    async with FakeBedrock() as fake:
        fake.push(BedrockReply(error=("ThrottlingException", "Too many requests, please wait")))
        config = f'[providers.bedrock]\nkind = "bedrock"\nregion = "us-west-2"\nendpoint_url = "{fake.url}"\n'
        async with run_gateway(config + ADAPTER_ROUTING) as gateway:
            error, _ = await chat_error(
                gateway.stub, chat_request("bedrock/anthropic.claude-3-5-sonnet-20241022-v2:0")
            )
            limits = await limits_of(gateway, "bedrock")
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert limits.max_concurrent == 128


def test_mistrals_per_minute_request_and_token_budgets() -> None:
    headers = {
        "x-ratelimit-limit-tokens-minute": "5000000",
        "x-ratelimit-remaining-tokens-minute": "4999911",
        "x-ratelimit-tokens-query-cost": "52",
        "x-ratelimit-limit-req-minute": "720",
        "x-ratelimit-remaining-req-minute": "36",
    }
    info = announced(headers, NOW)
    assert info == RateLimitInfo(36, 720, 4999911, 5000000)
    assert info is not None
    assert info.headroom() == pytest.approx(0.05)  # requests are the tight budget
