"""What error messages may carry: bounded echoes of client values, no upstream URLs, no class names."""

from __future__ import annotations

import logging
import socket

import grpc
import pytest
from conftest import ADAPTER_ROUTING, run_gateway
from rpc_util import chat, rpc_error, user

from provider_gateway.v1 import provider_service_pb2 as pb

HUGE = "m" * 20_000  # above the ~16 KB of metadata a gRPC client accepts for a status message


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    ("method", "request_"),
    [
        ("Chat", chat(HUGE)),
        ("Chat", chat("mock/echo", fallbacks=[HUGE])),
        ("Complete", pb.CompleteRequest(model=HUGE, prompt="hi")),
        ("CountTokens", pb.CountTokensRequest(model=HUGE, text="hi")),
        ("Embed", pb.EmbedRequest(model=HUGE, inputs=["hi"])),
        ("ListModels", pb.ListModelsRequest(provider=HUGE)),
        ("Chat", chat("mock/echo", provider=HUGE)),
    ],
)
async def test_a_huge_name_is_refused_without_being_repeated(gateway, method, request_) -> None:  # type: ignore[no-untyped-def]
    """Before: NOT_FOUND repeating the whole name, and above ~16 KB RESOURCE_EXHAUSTED (metadata
    too large), which reads as a retryable rate limit."""
    error = await rpc_error(getattr(gateway.stub, method)(request_, timeout=10))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert "at most 256 characters, got 20000" in (error.details() or "")
    assert len(error.details() or "") < 200


async def test_echoed_tool_names_and_ids_are_cut(gateway) -> None:  # type: ignore[no-untyped-def]
    long_name = "x" * 5000
    request = pb.ChatRequest(
        model="mock/tools",
        messages=[user("hi")],
        tools=[pb.Tool(name="lookup")],
        tool_choice=pb.ToolChoice(mode=pb.ToolChoice.MODE_TOOL, name=long_name),
    )
    error = await rpc_error(gateway.stub.Chat(request, timeout=10))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "(5000 characters)" in (error.details() or "")
    assert len(error.details() or "") < 300


async def test_transport_errors_name_no_url_nor_exception_class(caplog: pytest.LogCaptureFixture) -> None:
    port = closed_port()
    config = f'[providers.down]\nkind = "vllm"\nbase_url = "http://127.0.0.1:{port}/v1"\n'
    async with run_gateway(config + ADAPTER_ROUTING) as gw:
        with caplog.at_level(logging.WARNING, logger="provider_gateway.rpc"):
            error = await rpc_error(gw.stub.Chat(chat("down/gpt-4o"), timeout=10))
            stream_error = await rpc_error(gw.stub.ChatStream(chat("down/gpt-4o"), timeout=10))
    for failed in (error, stream_error):
        details = failed.details() or ""
        assert failed.code() == grpc.StatusCode.UNAVAILABLE, details
        assert "down" in details  # still says which provider failed
        assert f"127.0.0.1:{port}" not in details
        assert "http://" not in details
        assert "Error" not in details, details
    # ...while the log keeps the whole story for the operator.
    assert any(f"127.0.0.1:{port}" in r.getMessage() for r in caplog.records)
