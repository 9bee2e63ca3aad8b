"""A fake ProviderService for the client tests: it answers ChatStream, CompleteStream and Chat with what a test
scripts (streams a real gateway never sends, such as one without its `finish`) and counts the
streams it was asked for, so that both clients can be fed the same bytes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import grpc
from google.protobuf import struct_pb2

from provider_gateway.v1 import provider_service_pb2 as pb
from provider_gateway.v1 import provider_service_pb2_grpc as pb_grpc


class ScriptedService(pb_grpc.ProviderServiceServicer):
    def __init__(self, events: Sequence[pb.StreamEvent], response: pb.ChatResponse | None) -> None:
        self.events = events
        self.response = response or pb.ChatResponse()
        self.streams = 0
        self.asked = asyncio.Event()  # set at each stream asked for
        self.requests: list[pb.ChatRequest | pb.CompleteRequest] = []  # what the clients sent, in order

    async def ChatStream(self, request: pb.ChatRequest, context: Any) -> AsyncIterator[pb.StreamEvent]:
        self.streams += 1
        self.requests.append(request)
        self.asked.set()
        for event in self.events:
            yield event

    async def CompleteStream(
        self, request: pb.CompleteRequest, context: Any
    ) -> AsyncIterator[pb.StreamEvent]:
        self.streams += 1
        self.requests.append(request)
        self.asked.set()
        for event in self.events:
            yield event

    async def Chat(self, request: pb.ChatRequest, context: Any) -> pb.ChatResponse:
        self.requests.append(request)
        return self.response


@asynccontextmanager
async def scripted_gateway(
    events: Sequence[pb.StreamEvent], response: pb.ChatResponse | None = None
) -> AsyncIterator[tuple[str, ScriptedService]]:
    """A server on a free loopback port: its target and its service."""
    service = ScriptedService(events, response)
    server = grpc.aio.server()
    pb_grpc.add_ProviderServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", service
    finally:
        await server.stop(0)


def text(piece: str) -> pb.StreamEvent:
    return pb.StreamEvent(text_delta=pb.TextDelta(text=piece))


def finish(reason: int = pb.FINISH_REASON_STOP, **fields: Any) -> pb.StreamEvent:
    return pb.StreamEvent(finish=pb.Finish(reason=reason, provider="p", model="m", **fields))


def raw_content(kind: str, content: dict[str, Any]) -> pb.StreamEvent:
    raw = struct_pb2.Struct()
    raw.update(content)
    return pb.StreamEvent(raw_content=pb.RawContent(type=kind, raw=raw))
