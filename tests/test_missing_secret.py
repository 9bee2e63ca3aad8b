"""A provider whose key is not set yet (a Kubernetes Secret created later, or missing a key) does not
stop the server: it is listed NOT_SERVING with the reason, its calls are FAILED_PRECONDITION, the
other providers serve, and readiness is SERVING only while one of them can (issue 19.1)."""

from __future__ import annotations

import grpc
import pytest
from conftest import run_gateway
from grpc_health.v1 import health_pb2, health_pb2_grpc
from vendor_cases import chat_request

from provider_gateway.v1 import provider_service_pb2 as pb

ONLY_OPENAI = '[providers.openai]\nkind = "openai"\napi_key_env = "PG_TEST_NOT_SET"\n'


async def overall(channel: grpc.aio.Channel) -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    return int(reply.status)


async def test_a_missing_key_leaves_the_provider_unready_not_the_server_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PG_TEST_NOT_SET", raising=False)
    async with run_gateway(ONLY_OPENAI) as gateway:
        assert await overall(gateway.channel) == health_pb2.HealthCheckResponse.NOT_SERVING
        listed = await gateway.stub.ListProviders(pb.ListProvidersRequest(), timeout=10)
        (openai,) = listed.providers
        assert openai.health == pb.PROVIDER_HEALTH_NOT_SERVING
        assert "PG_TEST_NOT_SET is not set" in openai.health_message
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await gateway.stub.Chat(chat_request("openai/gpt-4o"), timeout=10)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "openai: not configured" in (refused.value.details() or "")
        assert "PG_TEST_NOT_SET" in (refused.value.details() or "")


async def test_the_others_serve_and_keep_readiness(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PG_TEST_NOT_SET", raising=False)
    async with run_gateway(ONLY_OPENAI + '[providers.mock]\nkind = "mock"\n') as gateway:
        assert await overall(gateway.channel) == health_pb2.HealthCheckResponse.SERVING
        answer = await gateway.stub.Chat(chat_request("mock/echo"), timeout=10)
        assert answer.text
