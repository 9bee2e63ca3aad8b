"""A unary Chat or Complete that fails after its provider produced tokens ends with the provider's
status and, in its trailers, what it consumed (the servicer's own watch over the call), through the
real gRPC server; one that succeeds carries no such trailers."""

from __future__ import annotations

import grpc
import pytest
from conftest import run_gateway

from provider_gateway.v1 import provider_service_pb2 as pb

FLAKY_MOCK = """
[providers.mock]
kind = "mock"
[providers.mock.models.flaky]
fault = "error_after_tokens"
fault_after_tokens = 4
fault_status = "UNAVAILABLE"
[prices.mock."flaky"]
input = 1_000.0
output = 1_000.0
"""


def chat(model: str) -> pb.ChatRequest:
    return pb.ChatRequest(
        model=model, messages=[pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text="tell me more")])]
    )


@pytest.mark.parametrize("rpc", ["Chat", "Complete"])
async def test_a_failed_unary_call_reports_what_it_consumed(rpc: str) -> None:
    async with run_gateway(FLAKY_MOCK) as gateway:
        if rpc == "Chat":
            call = gateway.stub.Chat(chat("mock/flaky"), timeout=20)
        else:
            call = gateway.stub.Complete(
                pb.CompleteRequest(model="mock/flaky", prompt="tell me more"), timeout=20
            )
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await call
        trailers = dict(failed.value.trailing_metadata() or ())
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    assert int(trailers["usage-input-tokens"]) > 0
    assert int(trailers["usage-output-tokens"]) >= 0  # a unary answer relays nothing before the end
    assert trailers["usage-source"] == "estimated"
    assert int(trailers["cost-usd-micros"]) > 0


async def test_a_successful_unary_call_has_no_consumption_trailers() -> None:
    async with run_gateway(FLAKY_MOCK) as gateway:
        call = gateway.stub.Chat(chat("mock/echo"), timeout=20)
        response = await call
        trailers = dict(await call.trailing_metadata())
    assert response.finish.reason == pb.FINISH_REASON_STOP
    assert not any(key.startswith("usage-") for key in trailers)
