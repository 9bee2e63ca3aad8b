"""To a key restricted to some providers, a provider it may not use is no provider: every RPC that
names one answers exactly as for a provider that is not configured, so that a key cannot enumerate
the gateway's providers by the difference (before: PERMISSION_DENIED for one, NOT_FOUND for the other)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from conftest import run_gateway

from provider_gateway.server.auth import hash_key
from provider_gateway.v1 import provider_service_pb2 as pb

ALICE = "alice-key-0123456789abcdefghijklmnop"  # every provider
BOB = "bob-key-0123456789abcdefghijklmnopqrst"  # the mock provider only
OTTO = "otto-key-0123456789abcdefghijklmnopqr"  # models of "mock" only, by pattern
CONFIG = f"""
[providers.mock]
kind = "mock"

[providers.secret]
kind = "mock"

[auth]
[[auth.keys]]
name = "alice"
sha256 = "{hash_key(ALICE)}"

[[auth.keys]]
name = "bob"
sha256 = "{hash_key(BOB)}"
providers = ["mock"]

[[auth.keys]]
name = "otto"
sha256 = "{hash_key(OTTO)}"
models = ["mock/*"]
"""
HELLO = [pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text="hello")])]


async def chat_stream(stub: Any, request: pb.ChatRequest, key: str) -> object:
    return [event async for event in stub.ChatStream(request, metadata=bearer(key), timeout=10)]


def bearer(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


# Each RPC that names a provider, with the provider's name in its place.
CALLS: dict[str, Callable[[Any, str, str], Awaitable[object]]] = {
    "ListModels": lambda stub, p, key: stub.ListModels(
        pb.ListModelsRequest(provider=p), metadata=bearer(key), timeout=10
    ),
    "Chat provider": lambda stub, p, key: stub.Chat(
        pb.ChatRequest(model="echo", provider=p, messages=HELLO), metadata=bearer(key), timeout=10
    ),
    "Chat provider/model": lambda stub, p, key: stub.Chat(
        pb.ChatRequest(model=f"{p}/echo", messages=HELLO), metadata=bearer(key), timeout=10
    ),
    "ChatStream fallback": lambda stub, p, key: chat_stream(
        stub, pb.ChatRequest(model="mock/fail", fallbacks=[f"{p}/echo"], messages=HELLO), key
    ),
    "Complete provider": lambda stub, p, key: stub.Complete(
        pb.CompleteRequest(model="echo", provider=p, prompt="hello"), metadata=bearer(key), timeout=10
    ),
    "CountTokens": lambda stub, p, key: stub.CountTokens(
        pb.CountTokensRequest(model="echo", provider=p, text="hello"), metadata=bearer(key), timeout=10
    ),
    "Embed": lambda stub, p, key: stub.Embed(
        pb.EmbedRequest(model="embed", provider=p, inputs=["hello"]), metadata=bearer(key), timeout=10
    ),
}


async def answer(call: Awaitable[object], provider: str) -> tuple[str, str]:
    """The status and its message, the provider's name replaced: what the key can tell apart."""
    try:
        reply = await call
    except grpc.aio.AioRpcError as error:
        return error.code().name, (error.details() or "").replace(provider, "<p>")
    return "OK", str(reply).replace(provider, "<p>")


@pytest.mark.parametrize("key", [BOB, OTTO], ids=["providers", "models"])
@pytest.mark.parametrize("rpc", list(CALLS))
async def test_a_provider_the_key_may_not_use_reads_as_one_not_configured(rpc: str, key: str) -> None:
    async with run_gateway(CONFIG) as gw:
        forbidden = await answer(CALLS[rpc](gw.stub, "secret", key), "secret")
        unknown = await answer(CALLS[rpc](gw.stub, "ghost", key), "ghost")
        # The same once a key that may use it has had its route planned (plans are kept by name).
        await answer(CALLS[rpc](gw.stub, "secret", ALICE), "secret")
        after_a_kept_plan = await answer(CALLS[rpc](gw.stub, "secret", key), "secret")
    assert forbidden == unknown == after_a_kept_plan
    assert "PERMISSION_DENIED" not in forbidden


async def test_a_named_provider_the_key_may_not_use_is_not_found_in_the_words_of_an_unknown_one() -> None:
    async with run_gateway(CONFIG) as gw:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await gw.stub.ListModels(
                pb.ListModelsRequest(provider="secret"), metadata=bearer(BOB), timeout=10
            )
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert caught.value.details() == "no provider 'secret' for this key (available: mock)"
