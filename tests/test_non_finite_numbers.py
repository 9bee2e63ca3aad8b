"""A protobuf Struct can hold NaN and Infinity; JSON, and so every provider, cannot. A request that
puts one in a tool's parameters, a JSON schema or the provider options is refused with
INVALID_ARGUMENT naming the field, on every RPC that takes it (it was INTERNAL: the conversion
to JSON raised)."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from vendor_cases import WAIT_S, chat_request, weather_tool

from provider_gateway.v1 import provider_service_pb2 as pb


def with_tool_infinity(request: pb.ChatRequest) -> str:
    request.tools.add().CopyFrom(weather_tool())
    request.tools[0].parameters["properties"]["city"]["maxLength"] = float("inf")
    return "tools[0].parameters"


def with_schema_infinity(request: pb.ChatRequest) -> str:
    request.response_format.type = pb.ResponseFormat.TYPE_JSON_SCHEMA
    request.response_format.schema_name = "answer"
    request.response_format.json_schema.update({"type": "object", "maximum": float("-inf")})
    return "response_format.json_schema"


def with_options_nan(request: Any) -> str:
    request.provider_options.update({"seed": float("nan")})
    return "provider_options"


@pytest.mark.parametrize("spoil", [with_tool_infinity, with_schema_infinity, with_options_nan])
async def test_chat_and_chat_stream_refuse_nan_and_infinity_by_name(gateway: Any, spoil: Any) -> None:
    request = chat_request("mock/echo")
    field = spoil(request)

    async def unary() -> None:
        await gateway.stub.Chat(request, timeout=WAIT_S)

    async def stream() -> None:
        [event async for event in gateway.stub.ChatStream(request, timeout=WAIT_S)]

    for call in (unary, stream):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call()
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert refused.value.details().startswith(f"{field}: holds NaN or Infinity")


async def test_complete_refuses_nan_in_provider_options(gateway: Any) -> None:
    request = pb.CompleteRequest(model="mock/echo", prompt="Once")
    with_options_nan(request)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await gateway.stub.Complete(request, timeout=WAIT_S)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "provider_options: holds NaN or Infinity" in refused.value.details()
    # The same request with a finite number is answered.
    request.provider_options.update({"seed": 7})
    assert (await gateway.stub.Complete(request, timeout=WAIT_S)).text
