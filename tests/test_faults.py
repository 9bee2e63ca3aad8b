"""Upstreams that misbehave on purpose: each ends in the right status within the deadline, and the
gateway stays healthy for the next request.

Runs against every HTTP adapter that is present (the OpenAI-compatible one and Anthropic); an
adapter that is not on this branch yet is skipped.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
from conftest import RunningGateway, run_gateway
from grpc_health.v1 import health_pb2, health_pb2_grpc

from provider_gateway.fakes.faults import FaultyUpstream
from provider_gateway.v1 import provider_service_pb2 as pb

KEY_ENV = "PG_TEST_FAULTS_KEY"
DEADLINE_S = 3.0
# An upstream that never ends runs into the deadline by design: a shorter one, so that the test does
# not idle; it still leaves ample time for the request to reach the fake (milliseconds).
ENDLESS_DEADLINE_S = 1.5
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
DEADLINE = grpc.StatusCode.DEADLINE_EXCEEDED
# fault -> statuses the gateway may answer with. A broken upstream is UNAVAILABLE (retryable, and
# failover may take another route); one that never finishes runs into the caller's deadline.
EXPECTED: dict[str, frozenset[grpc.StatusCode]] = {
    "reset": frozenset({UNAVAILABLE}),
    "garbage": frozenset({UNAVAILABLE}),
    "truncated_json": frozenset({UNAVAILABLE}),
    # A malformed chunked body fails at once, on every transport (aiohttp's C parser used to hang).
    "bad_chunked": frozenset({UNAVAILABLE}),
    "empty": frozenset({UNAVAILABLE}),
    "wrong_type": frozenset({UNAVAILABLE}),
    "wrong_shape": frozenset({UNAVAILABLE}),
    "status_500_html": frozenset({UNAVAILABLE}),
    # 10 MB in one SSE line: refused once the line passes the decoder's 8 MiB bound.
    "huge": frozenset({UNAVAILABLE}),
    "never_ending": frozenset({DEADLINE}),
    "drip": frozenset({DEADLINE}),
}
# fault -> what the status message must tell the operator, where the fault has its own words.
MESSAGES = {
    "wrong_shape": "JSON of an unexpected shape",
    "huge": "line longer than 8388608 bytes",
}
# kind -> (module that must exist, provider table lines)
ADAPTERS = {
    "openai": (
        "provider_gateway.providers.openai",
        'kind = "openai"\nbase_url = "{url}/v1"\napi_key_env = "{env}"',
    ),
    "anthropic": (
        "provider_gateway.providers.anthropic",
        'kind = "anthropic"\nbase_url = "{url}"\napi_key_env = "{env}"',
    ),
}


def adapter_params() -> list[Any]:
    return [
        pytest.param(
            kind,
            marks=pytest.mark.skipif(
                importlib.util.find_spec(module) is None, reason=f"the {kind} adapter is not on this branch"
            ),
        )
        for kind, (module, _) in ADAPTERS.items()
    ]


@pytest.fixture(scope="module", params=adapter_params())
async def faulty(request: pytest.FixtureRequest) -> AsyncIterator[tuple[FaultyUpstream, RunningGateway]]:
    kind = request.param
    with pytest.MonkeyPatch.context() as env:
        env.setenv(KEY_ENV, "test-key-not-secret")
        async with FaultyUpstream() as upstream:
            table = ADAPTERS[kind][1].format(url=upstream.base_url, env=KEY_ENV)
            config = f"[providers.up]\n{table}\n\n[providers.mock]\n"
            async with run_gateway(config) as gateway:
                yield upstream, gateway


def chat(model: str) -> pb.ChatRequest:
    return pb.ChatRequest(
        model=model,
        max_tokens=16,
        messages=[pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text="hi")])],
    )


def deadline_for(fault: str) -> float:
    return ENDLESS_DEADLINE_S if EXPECTED[fault] == {DEADLINE} else DEADLINE_S


async def stream_status(gateway: RunningGateway, model: str, deadline_s: float) -> grpc.StatusCode:
    call = gateway.stub.ChatStream(chat(model), timeout=deadline_s)
    async for _ in call:
        pass
    return await call.code()


@pytest.mark.parametrize("fault", sorted(EXPECTED))
async def test_fault_ends_in_status_within_deadline(
    faulty: tuple[FaultyUpstream, RunningGateway], fault: str
) -> None:
    upstream, gateway = faulty
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stream_status(gateway, f"up/{fault}", deadline_for(fault))
    elapsed = time.monotonic() - started
    assert info.value.code() in EXPECTED[fault], info.value.details()
    assert MESSAGES.get(fault, "") in (info.value.details() or "")
    assert elapsed < deadline_for(fault) + 2, f"{fault} took {elapsed:.1f} s"
    assert upstream.seen.get(fault), "the request reached the faulty upstream"

    # The gateway is still healthy: health says SERVING and the next request succeeds.
    health = await health_pb2_grpc.HealthStub(gateway.channel).Check(
        health_pb2.HealthCheckRequest(), timeout=5
    )
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert (await gateway.stub.Chat(chat("mock/echo"), timeout=5)).text
    # And the upstream request was closed: the fake's handler is not left running.
    for _ in range(500):  # up to 5 s; the fake has no event for it
        if not upstream.open_streams:
            break
        await asyncio.sleep(0.01)
    assert upstream.open_streams == 0


async def test_the_fake_misbehaves_as_documented() -> None:
    """The fake itself, seen by a plain HTTP client (runs whether or not an adapter is present)."""
    async with (
        FaultyUpstream(drip_interval_s=0.01) as upstream,
        httpx.AsyncClient(base_url=upstream.base_url) as client,
    ):
        with pytest.raises(httpx.TransportError):
            await client.post("/v1/x", json={"model": "reset"})
        garbage = await client.post("/v1/x", json={"model": "garbage"})
        assert garbage.status_code == 200
        assert len(garbage.content) == 4096
        truncated = await client.post("/v1/x", json={"model": "truncated_body"})
        with pytest.raises(ValueError, match=r"(?i)unterminated|expecting|end"):
            truncated.json()
        html = await client.post("/v1/x", json={"model": "wrong_type"})
        assert html.headers["content-type"].startswith("text/html")
        assert (await client.post("/v1/x", json={"model": "status_500_html"})).status_code == 500
        assert (await client.post("/v1/x", json={"model": "empty"})).content == b""
        async with client.stream("POST", "/v1/x", json={"model": "drip"}) as drip:
            chunks = []
            async for chunk in drip.aiter_raw():
                chunks.append(chunk)
                if len(chunks) == 3:
                    break
        assert all(len(c) == 1 for c in chunks)
        huge = await client.post("/v1/x", json={"model": "huge"}, timeout=30)
        assert len(huge.content) >= 10 * 1024 * 1024
        assert upstream.seen["reset"] == 1
