"""A group, alias or fallback with a member on a provider a restricted key may not use is refused
by the name the key asked for: the error never names that provider, which the key may not know
exists (server/auth.py, AuthorizingRouter.plan)."""

from __future__ import annotations

import grpc
import pytest
from conftest import run_gateway

from provider_gateway.server.auth import hash_key
from provider_gateway.v1 import provider_service_pb2 as pb

BOB = "bob-key-0123456789abcdefghijklmnopqrst"
CONFIG = f"""
[providers.mock]
kind = "mock"

[providers.secret]
kind = "mock"

[groups.mixed]
deployments = [{{ provider = "mock", model = "echo" }}, {{ provider = "secret", model = "echo" }}]

[aliases]
hidden = "secret/echo"

[auth]
[[auth.keys]]
name = "bob"
sha256 = "{hash_key(BOB)}"
providers = ["mock"]
"""


def chat(model: str, fallbacks: tuple[str, ...] = ()) -> pb.ChatRequest:
    return pb.ChatRequest(
        model=model,
        fallbacks=list(fallbacks),
        messages=[pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text="hi")])],
    )


@pytest.mark.parametrize(
    ("request_", "named"),
    [
        (chat("mixed"), "mixed"),
        (chat("hidden"), "hidden"),
        (chat("mock/echo", fallbacks=("mixed",)), "mixed"),
    ],
    ids=["group", "alias", "group-as-fallback"],
)
async def test_a_name_with_a_forbidden_member_is_refused_by_that_name(
    request_: pb.ChatRequest, named: str
) -> None:
    async with run_gateway(CONFIG) as gw:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await gw.stub.Chat(request_, metadata=(("authorization", f"Bearer {BOB}"),), timeout=10)
    details = caught.value.details() or ""
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert f"no model {named!r} for this key" in details, details
    assert "secret" not in details, details
