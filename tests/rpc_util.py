"""Small helpers shared by the RPC tests: request builders and stream collectors."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc

from provider_gateway.v1 import provider_service_pb2 as pb

# Generous: the suite shares a slow machine; a passing test never waits this long.
WAIT_S = 10.0
# Deadline for calls to a hanging model: long enough that on a loaded machine the request still
# reaches the provider before it passes, so the test sees the provider being cancelled.
HANG_DEADLINE_S = 1.0


def user(text: str) -> pb.Message:
    return pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text=text)])


def chat(model: str, text: str = "Hi", **fields: Any) -> pb.ChatRequest:
    return pb.ChatRequest(model=model, messages=[user(text)], **fields)


def kinds(events: list[pb.StreamEvent]) -> list[str]:
    return [str(e.WhichOneof("event")) for e in events]


def runs(names: list[str]) -> list[str]:
    """`names` with consecutive repeats collapsed: the shape of a stream whatever the server merged
    (it joins deltas already in hand into one message, server/coalesce.py)."""
    return [name for i, name in enumerate(names) if i == 0 or names[i - 1] != name]


def text_of(events: list[pb.StreamEvent]) -> str:
    return "".join(e.text_delta.text for e in events if e.WhichOneof("event") == "text_delta")


async def collect_until_error(
    call: Any,
) -> tuple[list[pb.StreamEvent], grpc.aio.AioRpcError | None]:
    """Every event of a stream and the error that ended it (None for a clean end)."""
    events: list[pb.StreamEvent] = []
    try:
        async for event in call:
            events.append(event)
    except grpc.aio.AioRpcError as exc:
        return events, exc
    return events, None


async def wait_for(event: asyncio.Event) -> None:
    await asyncio.wait_for(event.wait(), WAIT_S)


async def rpc_error(call: Any) -> grpc.aio.AioRpcError:
    """The error a unary or streaming call ends with; fails the test if it ends cleanly."""
    try:
        if hasattr(call, "__aiter__"):
            async for _ in call:
                pass
        else:
            await call
    except grpc.aio.AioRpcError as exc:
        return exc
    raise AssertionError("the call succeeded; an error status was expected")


async def access_line(caplog: Any) -> logging.LogRecord:
    """The one request-log line (caplog at INFO on provider_gateway.access), waiting for it (bounded):
    the server logs a call once its handler unwinds, after the client has seen the end."""
    for _ in range(200):
        lines = [r for r in caplog.records if r.name == "provider_gateway.access"]
        if lines:
            (line,) = lines
            return line
        await asyncio.sleep(0.05)
    raise AssertionError("no request log line")
