"""Server reflection under both names: grpc.reflection.v1 and v1alpha.

grpcio-reflection serves only v1alpha, while newer tools (grpcurl 1.8.8+, grpcui, Postman) ask for
v1 first. v1 is the same service under a new package, with messages identical on the wire, so the
one v1alpha servicer answers both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

from provider_gateway.server.registration import GenericOnly

V1_SERVICE = "grpc.reflection.v1.ServerReflection"


def enable(server: GenericOnly, service_names: Sequence[str]) -> None:
    names = (*service_names, reflection.SERVICE_NAME, V1_SERVICE)
    servicer: Any = reflection.aio.ReflectionServicer(names)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    v1 = grpc.method_handlers_generic_handler(
        V1_SERVICE,
        {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((v1,))
