"""Every service is served through generic handlers (server/registration.py): no method of
ProviderService, health or reflection may be lost on the way, whatever the generated code calls."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from conftest import RunningGateway
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2

from provider_gateway.server.reflection import V1_SERVICE
from provider_gateway.server.registration import GenericOnly
from provider_gateway.v1 import provider_service_pb2 as pb

SERVICES = [
    pb.DESCRIPTOR.services_by_name["ProviderService"],
    health_pb2.DESCRIPTOR.services_by_name["Health"],
]


def _methods() -> list[tuple[str, Any]]:
    return [(f"/{service.full_name}/{m.name}", m) for service in SERVICES for m in service.methods]


@pytest.mark.parametrize(("path", "method"), _methods(), ids=[p for p, _ in _methods()])
async def test_every_method_is_answered_by_a_running_gateway(
    gateway: RunningGateway, path: str, method: Any
) -> None:
    """An empty request gets the method's own answer or refusal, never UNIMPLEMENTED."""
    request_class = _message_class(method.input_type)
    response_class = _message_class(method.output_type)
    kwargs: dict[str, Any] = {
        "request_serializer": request_class.SerializeToString,
        "response_deserializer": response_class.FromString,
    }
    code = grpc.StatusCode.OK
    try:
        if method.server_streaming:
            call = gateway.channel.unary_stream(path, **kwargs)(request_class(), timeout=10)
            await call.read()  # the first message (Watch never ends) or the status
            call.cancel()
        else:
            await gateway.channel.unary_unary(path, **kwargs)(request_class(), timeout=10)
    except grpc.aio.AioRpcError as error:
        code = error.code()
    assert code not in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.UNKNOWN)


@pytest.mark.parametrize("service", [V1_SERVICE, "grpc.reflection.v1alpha.ServerReflection"])
async def test_reflection_is_answered_under_both_names(gateway: RunningGateway, service: str) -> None:
    call = gateway.channel.stream_stream(
        f"/{service}/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    (listed,) = [r async for r in call(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))]
    assert listed.list_services_response.service


async def test_health_list_reports_what_check_reports(gateway: RunningGateway) -> None:
    """Health's `List`, left unimplemented by grpcio-health-checking (UNKNOWN, and a traceback in
    the gateway's log), lists every entry with the status `Check` gives it."""
    health = health_pb2_grpc.HealthStub(gateway.channel)
    listed = await health.List(health_pb2.HealthListRequest(), timeout=10)
    assert {"", "provider_gateway.v1.ProviderService", "provider/mock"} <= set(listed.statuses)
    for name, entry in listed.statuses.items():
        checked = await health.Check(health_pb2.HealthCheckRequest(service=name), timeout=10)
        assert entry.status == checked.status == health_pb2.HealthCheckResponse.SERVING


class _Recorder:
    """What a grpc.aio server is handed by GenericOnly."""

    def __init__(self) -> None:
        self.generic: list[grpc.GenericRpcHandler] = []
        self.registered: list[str] = []

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self.generic.extend(handlers)

    def add_registered_method_handlers(self, service: str, handlers: Any) -> None:
        self.registered.append(service)

    def handler(self, method: str) -> Any:
        details: Any = type("Details", (), {"method": method, "invocation_metadata": ()})()
        return next((h for g in self.generic if (h := g.service(details)) is not None), None)


def _handlers() -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
    async def answer(request: Any, context: Any) -> Any:
        return request

    return {name: grpc.unary_unary_rpc_method_handler(answer) for name in ("Ask", "Tell")}


def test_methods_only_registered_are_served_generically() -> None:
    """Generated code that registers methods without a generic handler loses none of them."""
    server = _Recorder()
    GenericOnly(server).add_registered_method_handlers("x.v1.S", _handlers())  # type: ignore[arg-type]
    assert server.registered == []
    assert server.handler("/x.v1.S/Ask") is not None
    assert server.handler("/x.v1.S/Tell") is not None
    assert server.handler("/x.v1.S/Other") is None


def test_methods_registered_both_ways_get_one_generic_handler() -> None:
    """As the generated `add_*_to_server` functions do: generic first, then the same methods."""
    server = _Recorder()
    services = GenericOnly(server)  # type: ignore[arg-type]
    handlers = _handlers()
    services.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("x.v1.S", handlers),))
    services.add_registered_method_handlers("x.v1.S", handlers)
    assert len(server.generic) == 1
    assert server.registered == []
    assert server.handler("/x.v1.S/Tell") is handlers["Tell"]


def _message_class(descriptor: Any) -> Any:
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(descriptor)


def test_provider_service_methods_are_named_as_their_rpcs() -> None:
    """Tracebacks, logs and profiles name a handler by its function: each is named as its RPC,
    including the streams the servicer builds from one body (servicer._streaming)."""
    from provider_gateway.server.servicer import ProviderService

    for method in pb.DESCRIPTOR.services_by_name["ProviderService"].methods:
        handler = getattr(ProviderService, method.name)
        assert (handler.__name__, handler.__qualname__) == (method.name, f"ProviderService.{method.name}")
