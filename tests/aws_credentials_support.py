"""Helpers for the AWS credential tests: an isolated environment, a pool, and a resolver built from a table."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from provider_gateway.config import Section
from provider_gateway.errors import GatewayError
from provider_gateway.fakes.aws_metadata import FakeAwsMetadata
from provider_gateway.http.pool import UpstreamPool
from provider_gateway.providers.bedrock.credentials import (
    AwsCredentials,
    CredentialResolver,
    resolver_from_config,
)


def isolated_env(home: Path, **values: str) -> dict[str, str]:
    """No real ~/.aws, no instance metadata: only what a test adds."""
    return {
        "HOME": str(home),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
        "AWS_CONFIG_FILE": str(home / "config"),
        "AWS_EC2_METADATA_DISABLED": "true",
        **values,
    }


def table(**options: Any) -> Section:
    return Section({"kind": "bedrock", **options}, "test.toml", "providers.bedrock")


@pytest.fixture
async def pool() -> AsyncIterator[UpstreamPool]:
    shared = UpstreamPool()
    yield shared
    await shared.aclose()


@pytest.fixture
async def fake() -> AsyncIterator[FakeAwsMetadata]:
    async with FakeAwsMetadata() as running:
        yield running


async def resolve(env: dict[str, str], pool: UpstreamPool, **options: Any) -> tuple[AwsCredentials, str]:
    """Credentials and the name of the source they came from."""
    resolver = resolver_from_config(table(**options), env, pool)
    try:
        return await resolver.get(), resolver.source
    finally:
        await resolver.aclose()


async def failure(resolver: CredentialResolver) -> GatewayError:
    try:
        await resolver.get()
    except GatewayError as error:
        return error
    finally:
        await resolver.aclose()
    raise AssertionError("credentials were found")
