"""Assembling and running the gRPC server: ProviderService, health, reflection, graceful drain."""

from __future__ import annotations

import asyncio
import logging
import signal

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from provider_gateway.config import GatewayConfig
from provider_gateway.providers.registry import ProviderRegistry
from provider_gateway.routing.resolve import RouteResolver
from provider_gateway.routing.router import Router
from provider_gateway.server.health import SERVICE_NAME, ProviderHealthBook
from provider_gateway.server.servicer import ProviderService
from provider_gateway.v1 import provider_service_pb2 as pb
from provider_gateway.v1 import provider_service_pb2_grpc as pb_grpc

log = logging.getLogger("provider_gateway.server")


def connection_age_options(config: GatewayConfig) -> list[tuple[str, int]]:
    """gRPC options that recycle client connections, so DNS-balancing clients see new replicas."""
    server = config.server
    if not server.max_connection_age_s:
        return []
    return [
        ("grpc.max_connection_age_ms", int(server.max_connection_age_s * 1000)),
        ("grpc.max_connection_age_grace_ms", int(server.max_connection_age_grace_s * 1000)),
    ]


class GatewayServer:
    """One gateway process: owns the providers, the router and the grpc.aio server."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.registry = ProviderRegistry.from_config(config)
        self.resolver = RouteResolver(self.registry.names(), self.registry.default, config.aliases)
        self.router = Router(self.registry, self.resolver)
        self.health_servicer = HealthServicer()
        self.health = ProviderHealthBook(self.health_servicer, self.registry.names())
        self.service = ProviderService(self.router, self.health)
        limit = config.server.max_message_bytes
        self.grpc = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                ("grpc.so_reuseport", 0),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
                *connection_age_options(config),
            ]
        )
        pb_grpc.add_ProviderServiceServicer_to_server(self.service, self.grpc)  # type: ignore[no-untyped-call]
        health_pb2_grpc.add_HealthServicer_to_server(self.health_servicer, self.grpc)
        reflection.enable_server_reflection(
            (
                pb.DESCRIPTOR.services_by_name["ProviderService"].full_name,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            self.grpc,
        )
        self.port = 0

    async def start(self, host: str | None = None, port: int | None = None) -> int:
        """Bind, probe every provider once, and start serving. Returns the bound port."""
        address = f"{host or self.config.server.host}:{self.config.server.port if port is None else port}"
        self.port = self.grpc.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"cannot listen on {address}: address in use or not available")
        await self.health.check_all(list(self.registry))
        await self.grpc.start()
        log.info(
            "serving %s on port %d with providers: %s",
            SERVICE_NAME,
            self.port,
            ", ".join(self.registry.names()),
        )
        return self.port

    async def stop(self, grace_s: float | None = None) -> None:
        """Drain: report NOT_SERVING, refuse new calls, let in-flight calls finish within the grace."""
        grace = self.config.server.grace_period_s if grace_s is None else grace_s
        await self.health.enter_shutdown()
        await self.grpc.stop(grace)
        await self.registry.aclose()

    async def serve_until_signalled(self) -> None:
        """Serve until SIGTERM or SIGINT, then drain gracefully."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("signal received: draining for up to %.1f s", self.config.server.grace_period_s)
        await self.stop()
        log.info("stopped")
