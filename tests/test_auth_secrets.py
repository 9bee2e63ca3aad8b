"""Client API keys never show up in logs, error messages or trailing metadata."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from provider_gateway.server.auth import hash_key
from provider_gateway.v1 import provider_service_pb2 as pb

KEY = "s3cret-key-that-must-never-be-logged-0001"
WRONG = "s3cret-wrong-key-that-must-never-be-logged"
CONFIG = f"""
[[auth.keys]]
name = "limited"
sha256 = "{hash_key(KEY)}"
models = ["mock/echo"]
requests_per_minute = 2  # a denied request counts too
"""


def chat(model: str) -> pb.ChatRequest:
    return pb.ChatRequest(
        model=model, messages=[pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text="x")])]
    )


async def test_keys_do_not_leak(
    gateway_factory: Callable[[str], Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    async with gateway_factory(CONFIG) as gw:
        attempts = [
            (chat("mock/echo"), WRONG, grpc.StatusCode.UNAUTHENTICATED),
            (chat("mock/tools"), KEY, grpc.StatusCode.PERMISSION_DENIED),
            (chat("mock/echo"), KEY, grpc.StatusCode.OK),
            (chat("mock/echo"), KEY, grpc.StatusCode.RESOURCE_EXHAUSTED),
        ]
        codes = []
        for request, key, _ in attempts:
            call = gw.stub.Chat(request, metadata=(("authorization", f"Bearer {key}"),), timeout=10)
            codes.append(await call.code())
            seen.append(await call.details() or "")
            seen.extend(repr(v) for _, v in await call.trailing_metadata() or ())
        assert codes == [expected for _, _, expected in attempts]
    seen.append(caplog.text)
    everything = "\n".join(seen)
    assert "limited" in everything  # errors name the key by its configured name...
    for secret in (KEY, WRONG, hash_key(KEY), hash_key(WRONG)):
        assert secret not in everything  # ...never by its value or digest
