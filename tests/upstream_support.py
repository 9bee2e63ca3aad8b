"""Helpers for adapter tests that go through the real gRPC API to a fake upstream."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import grpc

from provider_gateway.fakes import FakeUpstream
from provider_gateway.v1 import provider_service_pb2 as pb


def user(*parts: str | pb.Image) -> pb.Message:
    content = [pb.ContentPart(text=p) if isinstance(p, str) else pb.ContentPart(image=p) for p in parts]
    return pb.Message(role=pb.ROLE_USER, content=content)


def system(text: str) -> pb.Message:
    return pb.Message(role=pb.ROLE_SYSTEM, content=[pb.ContentPart(text=text)])


@dataclass
class Collected:
    """Everything a ChatStream returned: events, then either a finish or an error."""

    events: list[pb.StreamEvent] = field(default_factory=list)
    error: grpc.aio.AioRpcError | None = None

    def kinds(self) -> list[str]:
        return [str(e.WhichOneof("event")) for e in self.events]

    @property
    def text(self) -> str:
        return "".join(e.text_delta.text for e in self.events if e.HasField("text_delta"))

    @property
    def reasoning(self) -> str:
        return "".join(e.reasoning_delta.text for e in self.events if e.HasField("reasoning_delta"))

    def of(self, kind: str) -> list[Any]:
        return [getattr(e, kind) for e in self.events if e.WhichOneof("event") == kind]

    @property
    def usage(self) -> pb.Usage:
        return self.of("usage")[-1]

    @property
    def finish(self) -> pb.Finish:
        return self.of("finish")[-1]


async def chat_stream(stub: Any, request: pb.ChatRequest, deadline_s: float = 20.0) -> Collected:
    collected = Collected()
    try:
        async for event in stub.ChatStream(request, timeout=deadline_s):
            collected.events.append(event)
    except grpc.aio.AioRpcError as error:
        collected.error = error
    return collected


async def assert_cancel_closes_upstream(
    stub: Any, request: pb.ChatRequest, fake: FakeUpstream, first_text: str
) -> None:
    """Cancel a ChatStream after its first event; the fake upstream must see its client leave."""
    fake.disconnected.clear()
    call = stub.ChatStream(request, timeout=30)
    first = await asyncio.wait_for(anext(aiter(call)), 10)
    assert first.text_delta.text == first_text
    call.cancel()
    await asyncio.wait_for(fake.disconnected.wait(), 10)
