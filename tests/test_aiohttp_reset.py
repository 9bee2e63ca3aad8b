"""The aiohttp transport (an origin behind a forward proxy) cuts, never ends, a body framed by the
connection's close when the connection is reset inside it, as the h1 transport does: only a clean
close (FIN) ends such a body (HTTP/1.0-style: no content-length, not chunked)."""

from __future__ import annotations

import json

import grpc
import pytest
from conftest import run_gateway
from test_http_h1 import RawUpstream, answering

from provider_gateway.errors import GatewayError
from provider_gateway.http import Upstream, UpstreamPool
from provider_gateway.http.proxy import ProxySettings
from provider_gateway.v1 import provider_service_pb2 as pb

HEAD = b"HTTP/1.0 200 OK\r\ncontent-type: text/event-stream\r\n\r\n"
ORIGIN = "http://api.upstream.invalid/v1"  # never resolved: only the proxy is reached


def chunk(**delta: object) -> bytes:
    choice = {"index": 0, "delta": delta.get("delta", {}), "finish_reason": delta.get("finish")}
    return b"data: " + json.dumps({"id": "c", "model": "m", "choices": [choice]}).encode() + b"\n\n"


# The answer's whole text and its finish_reason, but neither its usage chunk nor [DONE]: a stream
# that a clean close ends whole, and that a reset cuts.
BODY = chunk(delta={"content": "Hello"}) + chunk(delta={"content": " there"}, finish="stop")


async def read_through_proxy(then: str) -> bytes:
    async with RawUpstream(answering(HEAD, BODY, then=then)) as proxy:
        pool = UpstreamPool(transport="aiohttp", proxies=ProxySettings(proxy=proxy.url))
        try:
            upstream = Upstream(pool.host(ORIGIN), ORIGIN, "acme")
            async with upstream.stream("POST", "/chat/completions", json={}) as chunks:
                return b"".join([piece async for piece in chunks])
        finally:
            await pool.aclose()


async def test_a_reset_inside_a_body_framed_by_the_close_is_a_cut() -> None:
    with pytest.raises(GatewayError) as caught:
        await read_through_proxy("reset")
    assert "was cut" in caught.value.message
    assert caught.value.retryable


async def test_a_clean_close_still_ends_such_a_body_whole() -> None:
    assert await read_through_proxy("close") == BODY


@pytest.mark.parametrize("then", ["reset", "close"])
async def test_a_proxied_chat_stream_cut_by_a_reset_ends_unavailable(then: str) -> None:
    async with RawUpstream(answering(HEAD, BODY, then=then)) as proxy:
        config = (
            f'[upstream]\ntransport = "h1"\nproxy = "{proxy.url}"\nproxy_from_environment = false\n'
            f'[providers.openai]\nkind = "openai"\nbase_url = "{ORIGIN}"\napi_key_env = "PATH"\n'
        )
        async with run_gateway(config) as gateway:
            request = pb.ChatRequest(
                model="openai/m",
                messages=[pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text="hi")])],
            )
            call = gateway.stub.ChatStream(request, timeout=30)
            text, error = "", None
            try:
                async for event in call:
                    text += event.text_delta.text
            except grpc.aio.AioRpcError as failed:
                error = failed.code()
    if then == "reset":
        assert error is grpc.StatusCode.UNAVAILABLE
    else:  # the control: the same bytes closed cleanly are a whole answer
        assert (error, text) == (None, "Hello there")
