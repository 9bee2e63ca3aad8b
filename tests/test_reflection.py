"""Server reflection under grpc.reflection.v1 as well as v1alpha (issue 19.5): newer tools ask for v1
first. The v1 messages are identical on the wire, so v1alpha's generated classes build them."""

from __future__ import annotations

import grpc
import pytest
from conftest import RunningGateway
from grpc_reflection.v1alpha import reflection_pb2

from provider_gateway.server.reflection import V1_SERVICE


@pytest.mark.parametrize("service", [V1_SERVICE, "grpc.reflection.v1alpha.ServerReflection"])
async def test_reflection_lists_services_and_serves_files_under_both_names(
    gateway: RunningGateway, service: str
) -> None:
    call = gateway.channel.stream_stream(
        f"/{service}/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="provider_gateway.v1.ProviderService"),
    ]
    listed, described = [r async for r in call(iter(requests), timeout=10)]
    names = {s.name for s in listed.list_services_response.service}
    assert {"provider_gateway.v1.ProviderService", "grpc.health.v1.Health", V1_SERVICE} <= names
    assert described.file_descriptor_response.file_descriptor_proto  # the proto file, to describe methods
    assert not described.HasField("error_response")


async def test_an_unknown_symbol_is_not_found_on_v1_too(gateway: RunningGateway) -> None:
    call = gateway.channel.stream_stream(
        f"/{V1_SERVICE}/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    request = reflection_pb2.ServerReflectionRequest(file_containing_symbol="no.such.Service")
    (answer,) = [r async for r in call(iter([request]), timeout=10)]
    assert answer.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
