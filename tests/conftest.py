"""Shared fixtures: a real gateway server on a free loopback port, and channels to it."""

from __future__ import annotations

import tomllib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest

from provider_gateway import config as config_module
from provider_gateway.server.app import GatewayServer
from provider_gateway.v1 import provider_service_pb2_grpc as pb_grpc


class RunningGateway:
    """A started server plus a channel and stub to it."""

    def __init__(self, server: GatewayServer, channel: grpc.aio.Channel) -> None:
        self.server = server
        self.channel = channel
        self.stub = pb_grpc.ProviderServiceStub(channel)
        self.target = f"127.0.0.1:{server.port}"

    def provider(self, name: str) -> Any:
        return self.server.registry.get(name)


@asynccontextmanager
async def run_gateway(config_text: str = "") -> AsyncIterator[RunningGateway]:
    """Start a gateway from TOML text (empty = mock only) on port 0; stop it afterwards."""
    config = (
        config_module.parse(tomllib.loads(config_text), "test.toml")
        if config_text
        else config_module.mock_only()
    )
    server = GatewayServer(config)
    await server.start("127.0.0.1", 0)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield RunningGateway(server, channel)
    finally:
        await channel.close()
        await server.stop(0)


@pytest.fixture
async def gateway() -> AsyncIterator[RunningGateway]:
    async with run_gateway() as running:
        yield running


@pytest.fixture
def gateway_factory() -> Callable[[str], Any]:
    return run_gateway
