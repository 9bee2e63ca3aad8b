"""A stream left after its protocol's last event keeps its connection (http/exchange.py, REST_S).

Vendors send `data: [DONE]` (or Anthropic's message_stop) and the chunked body's last chunk in two
writes, which often arrive apart. Closing the response at the last event used to close its
connection too, so the next request opened a new one (a TLS handshake, against a real vendor).
Now the rest is read in the background: the caller goes on at once, the connection goes back to
the pool when the last chunk comes, and is closed if it does not come soon or is more than framing.
Every transport; raw sockets, so the bytes and their timing are the test's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import ADAPTER_ROUTING, run_gateway
from upstream_support import chat_stream, user

from provider_gateway.http import Upstream, UpstreamPool
from provider_gateway.http.exchange import REST_BYTES
from provider_gateway.http.pool import TRANSPORTS
from provider_gateway.v1 import provider_service_pb2 as pb

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
EVENTS = b"data: {}\n\n"
DONE = b"data: [DONE]\n\n"
LAST_CHUNK = b"0\r\n\r\n"
MODELS = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 27\r\n\r\n{"object":"list","data":[]}'


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class SplitEnd:
    """An upstream answering every request with an SSE body whose last chunk waits for `release`
    (or, with `tail`, is preceded by those bytes); it counts connections and notes closed ones."""

    def __init__(self, tail: bytes = b"", events: bytes = EVENTS) -> None:
        self.tail = tail
        self.events = events
        self.release = asyncio.Event()
        self.connections = 0
        self.closed = 0
        self.closed_one = asyncio.Event()
        self.url = ""

    async def __aenter__(self) -> SplitEnd:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = next(
                    (
                        int(line[15:])
                        for line in head.lower().split(b"\r\n")
                        if line.startswith(b"content-length:")
                    ),
                    0,
                )
                await reader.readexactly(length)
                if head.startswith(b"GET"):  # the gateway's health probe lists the models
                    writer.write(MODELS)
                    continue
                writer.write(HEAD + chunk(self.events) + chunk(DONE))
                await writer.drain()
                if self.tail:
                    writer.write(chunk(self.tail))
                    await writer.drain()
                # Nothing comes from the client before the last chunk (its connection is not back
                # in the pool): a read now ends only when the client closes.
                closed = asyncio.ensure_future(reader.read(1))
                released = asyncio.ensure_future(self.release.wait())
                await asyncio.wait((closed, released), return_when=asyncio.FIRST_COMPLETED)
                released.cancel()
                if closed.done():
                    break
                closed.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await closed
                writer.write(LAST_CHUNK)
                await writer.drain()
        writer.close()
        self.closed += 1
        self.closed_one.set()


@pytest.fixture(params=TRANSPORTS)
async def pool(request: pytest.FixtureRequest) -> AsyncIterator[UpstreamPool]:
    upstreams = UpstreamPool(transport=request.param)
    yield upstreams
    await upstreams.aclose()


async def read_to_done(up: Upstream) -> bytes:
    """What an adapter does: read until the protocol's last event, then leave the block."""
    seen = b""
    async with asyncio.timeout(10):  # a regression (waiting for the last chunk) fails, never hangs
        async with up.stream("POST", "/s", json={}) as chunks:
            async for piece in chunks:
                seen += piece
                if DONE in seen:
                    break
    return seen


async def test_a_stream_left_at_its_last_event_goes_on_at_once_and_keeps_its_connection(
    pool: UpstreamPool,
) -> None:
    async with SplitEnd() as upstream:
        up = Upstream(pool.host(upstream.url), upstream.url, "acme")  # type: ignore[arg-type]
        # The block is left while the last chunk is still held back: nothing waited for it.
        assert (await read_to_done(up)).endswith(DONE)
        upstream.release.set()
        for _ in range(9):  # a stream asked for while another's rest is on its way takes another
            await read_to_done(up)
        assert upstream.closed == 0  # none closed for want of its last chunk
    assert upstream.connections < 10
    assert pool.stats()[upstream.url].connections == upstream.connections


async def test_a_last_chunk_that_does_not_come_soon_closes_the_connection(pool: UpstreamPool) -> None:
    async with SplitEnd() as upstream:
        up = Upstream(pool.host(upstream.url), upstream.url, "acme")  # type: ignore[arg-type]
        assert (await read_to_done(up)).endswith(DONE)
        async with asyncio.timeout(10):
            await upstream.closed_one.wait()  # closed by the gateway, the last chunk never sent
        upstream.release.set()
        await read_to_done(up)
    assert upstream.connections == 2


async def test_more_than_framing_after_the_last_event_closes_the_connection(pool: UpstreamPool) -> None:
    async with SplitEnd(tail=b"x" * (REST_BYTES + 1)) as upstream:
        up = Upstream(pool.host(upstream.url), upstream.url, "acme")  # type: ignore[arg-type]
        await read_to_done(up)
        async with asyncio.timeout(10):
            await upstream.closed_one.wait()
        upstream.release.set()
        await read_to_done(up)
    assert upstream.connections == 2


class AdapterFailed(Exception):
    pass


async def fail_mid_stream(up: Upstream) -> None:
    async with up.stream("POST", "/s", json={}) as chunks:
        async for _ in chunks:
            raise AdapterFailed  # as an adapter meeting an error event


async def test_a_stream_left_by_an_error_closes_its_connection_at_once(pool: UpstreamPool) -> None:
    async with SplitEnd() as upstream:
        up = Upstream(pool.host(upstream.url), upstream.url, "acme")  # type: ignore[arg-type]
        with pytest.raises(AdapterFailed):
            await fail_mid_stream(up)
        upstream.release.set()  # the last chunk comes at once, yet the connection was not kept for it
        await read_to_done(up)
    assert upstream.connections == 2


# One chunk of an OpenAI chat completion stream: the text, the finish and the usage.
OPENAI_EVENTS = (
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
    b'"delta":{"content":"Hi there"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,'
    b'"total_tokens":5}}\n\n'
)


async def test_through_the_gateway_the_client_has_its_answer_before_the_last_chunk_and_the_connection_stays(
    tmp_path: Path,
) -> None:
    key = tmp_path / "key"
    key.write_text("sk-test-0123456789abcdef")
    async with SplitEnd(events=OPENAI_EVENTS) as upstream:
        config = f'[providers.oa]\nkind = "openai"\nbase_url = "{upstream.url}/v1"\napi_key_file = "{key}"\n'
        async with run_gateway(config + ADAPTER_ROUTING) as gateway:
            request = pb.ChatRequest(model="oa/m", messages=[user("Hi")])
            first = await chat_stream(gateway.stub, request)  # the last chunk still held back
            assert first.error is None
            assert "".join(e.text_delta.text for e in first.events) == "Hi there"
            assert first.events[-1].finish.usage.output_tokens == 2
            upstream.release.set()
            for _ in range(9):
                assert (await chat_stream(gateway.stub, request)).error is None
            assert upstream.closed == 0
    assert upstream.connections < 10
