"""The rate limits providers announce on every response reach the router (issue 16.5): read once in
the shared HTTP layer, so that every HTTP adapter reports them, on success as on a 429."""

from __future__ import annotations

import datetime

import grpc
import orjson
import pytest
from conftest import run_gateway
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import given, settings
from hypothesis import strategies as st
from vendor_cases import chat_request

from provider_gateway.fakes import FakeUpstream, Reply
from provider_gateway.http import rate_limits
from provider_gateway.http.rate_limits import RateLimitInfo, announced, read_announced
from provider_gateway.v1 import provider_service_pb2 as pb

NOW = 1_800_000_000.0


def test_openai_headers() -> None:
    headers = {
        "x-ratelimit-limit-requests": "500",
        "x-ratelimit-remaining-requests": "499",
        "x-ratelimit-reset-requests": "120ms",
        "x-ratelimit-limit-tokens": "30000",
        "x-ratelimit-remaining-tokens": "300",
        "x-ratelimit-reset-tokens": "6m0s",
    }
    info = announced(headers, NOW)
    assert info == RateLimitInfo(499, 500, 300, 30000, reset_s=360.0)  # tokens are the tight budget
    assert info is not None
    assert info.headroom() == pytest.approx(0.01)


def test_anthropic_headers_take_the_tightest_token_family() -> None:
    reset = datetime.datetime.fromtimestamp(NOW + 42, datetime.UTC).isoformat().replace("+00:00", "Z")
    headers = {
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "49",
        "anthropic-ratelimit-requests-reset": reset,
        "anthropic-ratelimit-input-tokens-limit": "40000",
        "anthropic-ratelimit-input-tokens-remaining": "39000",
        "anthropic-ratelimit-output-tokens-limit": "8000",
        "anthropic-ratelimit-output-tokens-remaining": "0",
        "anthropic-ratelimit-output-tokens-reset": reset,
    }
    info = announced(headers, NOW)
    assert info == RateLimitInfo(49, 50, 0, 8000, reset_s=pytest.approx(42.0))
    assert info is not None
    assert info.headroom() == 0.0


@pytest.mark.parametrize(
    ("remaining_requests", "remaining_tokens", "reset_s"),
    [(1, 29000, 0.12), (499, 300, 360.0), (250, 15000, 0.12)],  # a tie: the request budget's
)
def test_the_reset_is_the_tightest_budgets(
    remaining_requests: int, remaining_tokens: int, reset_s: float
) -> None:
    # Only the tightest budget's reset is read: the other's may be anything, even unreadable.
    for other_reset in ("bogus", "nan", "2027-01-15T00:00:00Z"):
        headers = {
            "x-ratelimit-limit-requests": "500",
            "x-ratelimit-remaining-requests": str(remaining_requests),
            "x-ratelimit-reset-requests": "120ms" if reset_s < 1 else other_reset,
            "x-ratelimit-limit-tokens": "30000",
            "x-ratelimit-remaining-tokens": str(remaining_tokens),
            "x-ratelimit-reset-tokens": "6m0s" if reset_s > 1 else other_reset,
        }
        info = announced(headers, NOW)
        assert info == RateLimitInfo(remaining_requests, 500, remaining_tokens, 30000, reset_s=reset_s)


def test_no_rate_limit_headers_say_nothing() -> None:
    assert announced({"content-type": "application/json", "x-request-id": "r"}, NOW) is None
    assert announced({"x-ratelimit-remaining-requests": "soon"}, NOW) == RateLimitInfo()


# Every header name the module reads, plus near misses around its "ratelimit-" quick rejection.
_KNOWN_NAMES = sorted(
    {
        name
        for attr in vars(rate_limits).values()
        if isinstance(attr, tuple)
        for item in attr
        for name in (item if isinstance(item, tuple) else (item,))
        if isinstance(name, str) and "ratelimit" in name and not name.endswith("-")  # not the prefixes
    }
)
_NEAR_MISSES = [
    "x-ratelimit",
    "ratelimit-policy",
    "x-rate-limit-remaining",
    "x-my-ratelimit-x",
    "retry-after",
]


def _any_case(name: str) -> st.SearchStrategy[str]:
    return st.lists(st.booleans(), min_size=len(name), max_size=len(name)).map(
        lambda upper: "".join(c.upper() if u else c for c, u in zip(name, upper, strict=True))
    )


_NAMES = st.one_of(
    st.sampled_from(_KNOWN_NAMES).flatmap(_any_case),
    st.sampled_from(_NEAR_MISSES).flatmap(_any_case),
    st.text(min_size=1, max_size=30),
)
_VALUES = st.one_of(
    st.sampled_from(["0", "1", "500", "-1", "6m0s", "20ms", "1800000042000", "2027-01-15T00:00:00Z", "nan"]),
    st.text(max_size=12),
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(_NAMES, _VALUES, max_size=8), st.sampled_from([60.0, 86400.0]))
def test_the_quick_rejection_agrees_with_the_general_reading(headers: dict[str, str], window: float) -> None:
    # announced() rejects a response whose names all lack "ratelimit-" before reading them one by
    # one: whatever the names, their case and values, it must say what the general reading says.
    assert announced(headers, NOW, window) == read_announced(headers, NOW, window)


def test_the_quick_rejection_lets_every_known_name_through() -> None:
    # (a reset alone says nothing, without a limit or a remaining figure to go with it)
    for name in (n for n in _KNOWN_NAMES if "reset" not in n):
        for spelled in (name, name.upper(), name.title()):
            assert announced({"content-type": "text/plain", spelled: "7"}, NOW) is not None, spelled


def sse_answer() -> bytes:
    chunks = [
        {"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"content": "hi"}}]},
        {"id": "c", "model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    return b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


async def test_a_spent_budget_announced_on_success_holds_the_deployment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The answer succeeded but said no requests remain for 30 s: the next request is not sent, and
    the client is told to wait (RESOURCE_EXHAUSTED with RetryInfo), before any 429."""
    monkeypatch.setenv("PG_X_KEY", "k")
    spent = {
        "x-ratelimit-limit-requests": "100",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "30s",
    }
    async with FakeUpstream() as fake:
        fake.script(
            "/v1/chat/completions",
            Reply(chunks=[sse_answer()], content_type="text/event-stream", headers=spent),
        )
        config = f'[providers.o]\nkind = "openai"\nbase_url = "{fake.url}/v1"\napi_key_env = "PG_X_KEY"\n'
        async with run_gateway(config) as gateway:
            first = [e async for e in gateway.stub.ChatStream(chat_request("o/m"), timeout=20)]
            assert "".join(e.text_delta.text for e in first) == "hi"
            call = gateway.stub.Chat(chat_request("o/m"), timeout=20)
            with pytest.raises(grpc.aio.AioRpcError) as held:
                await call
            assert held.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            status = await rpc_status.aio.from_call(call)
            assert status is not None
            retry = error_details_pb2.RetryInfo()
            assert status.details[0].Unpack(retry)
            assert 25 < retry.retry_delay.ToTimedelta().total_seconds() <= 30
            # ListProviders shows what the provider announced (nothing was configured).
            listed = await gateway.stub.ListProviders(pb.ListProvidersRequest(), timeout=20)
            limits = next(p for p in listed.providers if p.name == "o").capabilities.rate_limits
            assert limits.requests_per_minute == 100
            assert limits.max_concurrent >= 1  # the adaptive limiter's current allowance
        chats = [r for r in fake.requests if r.path == "/v1/chat/completions"]
        assert len(chats) == 1  # the held request never reached the provider
