"""Shared fixtures: a real gateway server on a free loopback port, and channels to it."""

from __future__ import annotations

import asyncio
import os
import sys
import tomllib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest

from provider_gateway import config as config_module
from provider_gateway.server.app import GatewayServer
from provider_gateway.server.event_loop import eager_asyncio_loop
from provider_gateway.v1 import provider_service_pb2_grpc as pb_grpc

# Bytecode is written, even where PYTHONDONTWRITEBYTECODE is set (as container images often do):
# without it every process compiled everything it imports from source again, each test worker its
# rewritten tests and each gateway the tests start (hundreds) the package and its dependencies: a
# gateway's start took 2.2 s instead of 0.65 s. Set here, before the tests are collected and before
# xdist starts its workers, which inherit the environment.
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


def pytest_asyncio_loop_factories(
    config: Any, item: Any
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The tests run on the loop `serve` runs on: asyncio's, its tasks started eagerly."""
    return {"eager": eager_asyncio_loop}


class RunningGateway:
    """A started server plus a channel and stub to it."""

    def __init__(self, server: GatewayServer, channel: grpc.aio.Channel) -> None:
        self.server = server
        self.channel = channel
        self.stub = pb_grpc.ProviderServiceStub(channel)
        self.target = f"127.0.0.1:{server.port}"

    def provider(self, name: str) -> Any:
        return self.server.registry.get(name)


# Adapter tests check how one upstream answer maps to the client: the router must neither retry
# it nor let earlier tests' failures open the breaker of a shared gateway.
ADAPTER_ROUTING = """
[routing]
retries = 0
[routing.breaker]
consecutive_failures = 1000000
min_calls = 1000000
"""


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


def use_fake_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """FakeBedrock's credentials from the environment, and nothing that could reach a real AWS service."""
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_BEARER_TOKEN_BEDROCK",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ):
        monkeypatch.delenv(name, raising=False)
    from provider_gateway.fakes.bedrock import ACCESS_KEY, SECRET_KEY  # the fake loads aiohttp: only here

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
