"""Baseline: the leanest streaming relay on this stack. grpc.aio relaying benchmarks/fake_openai.py's
SSE through a bare asyncio Protocol on kept-alive HTTP/1.1 connections: one write per request, each
read's whole `data:` lines decoded with orjson and relayed as one text delta, the usage in the finish,
the last read's text and the finish batched for a client asking for `batch_events` (as the gateway
and benchmarks/minimal_relay.py send them). No HTTP
client library, no validation, routing, timeouts, limits, telemetry or error handling: a crash on
anything unexpected. Below the aiohttp relay, it is how little an upstream leg can cost in Python,
so the gateway's own work is what lies between it and the gateway.

    python benchmarks/lean_relay.py --upstream-port PORT
prints `listening on 127.0.0.1:PORT` once ready. 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
from minimal_relay import delta_texts, finish_events, serve, text_event

from provider_gateway.server.event_loop import eager_asyncio_loop
from provider_gateway.v1 import provider_service_pb2 as pb
from provider_gateway.v1 import provider_service_pb2_grpc as pb_grpc

END = b"0\r\n\r\n"  # the chunked body's last chunk: fake_openai.py answers chunked


class Connection(asyncio.Protocol):
    """One kept-alive connection: each read's bytes go to the stream that owns it."""

    def __init__(self) -> None:
        self.reads: asyncio.Queue[bytes] = asyncio.Queue()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reads.put_nowait(data)


class LeanRelay(pb_grpc.ProviderServiceServicer):
    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[Connection] = []

    async def _connection(self) -> Connection:
        if self.idle:
            return self.idle.pop()
        _, connection = await asyncio.get_running_loop().create_connection(Connection, "127.0.0.1", self.port)
        return connection

    async def ChatStream(self, request: pb.ChatRequest, context: Any) -> AsyncIterator[pb.StreamEvent]:
        connection = await self._connection()
        messages = [{"role": "user", "content": m.content[0].text} for m in request.messages]
        body = orjson.dumps({"model": request.model, "messages": messages, "stream": True})
        connection.transport.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer sk-bench\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        usage = pb.Usage()
        tail = b""  # a line cut by the read's end, completed by the next read
        while True:
            data = tail + await connection.reads.get()
            lines = data.split(b"\n")
            tail = lines.pop()
            texts = delta_texts(lines, usage)
            if data.endswith(END):
                break
            if texts:
                yield text_event(texts)
        self.idle.append(connection)
        for message in finish_events(request, texts, usage):
            yield message


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--upstream-port", type=int, required=True)
    await serve(LeanRelay(parser.parse_args().upstream_port))


if __name__ == "__main__":
    asyncio.run(main(), loop_factory=eager_asyncio_loop)
