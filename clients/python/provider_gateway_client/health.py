"""The standard gRPC health check (`grpc.health.v1.Health/Check`) without grpcio-health-checking.

The two messages are built in a private descriptor pool: a process that also loads
grpcio-health-checking (the server does) registers `grpc/health/v1/health.proto` in the default
pool, and a second, different registration of the same names there would fail.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2

from provider_gateway_client.private_pool import message_classes

CHECK_METHOD = "/grpc.health.v1.Health/Check"
SERVING_STATUSES = ("UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN")


def _health_file() -> descriptor_pb2.FileDescriptorProto:
    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="grpc/health/v1/health.proto", package="grpc.health.v1", syntax="proto3"
    )
    request = proto.message_type.add(name="HealthCheckRequest")
    request.field.add(name="service", number=1, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    response = proto.message_type.add(name="HealthCheckResponse")
    statuses = response.enum_type.add(name="ServingStatus")
    for number, name in enumerate(SERVING_STATUSES):
        statuses.value.add(name=name, number=number)
    response.field.add(
        name="status",
        number=1,
        type=field.TYPE_ENUM,
        label=field.LABEL_OPTIONAL,
        type_name=".grpc.health.v1.HealthCheckResponse.ServingStatus",
    )
    return proto


HealthCheckRequest, HealthCheckResponse = message_classes(
    _health_file(), "HealthCheckRequest", "HealthCheckResponse"
)


def status_name(response: Any) -> str:
    """`SERVING`, `NOT_SERVING`... for a HealthCheckResponse."""
    number = int(response.status)
    return SERVING_STATUSES[number] if number < len(SERVING_STATUSES) else str(number)
