"""What one request of many small pieces costs the worker that checks it (a review finding, 2026-12-07).

Under the byte limits alone, a Chat of 8 MB held 1.6 million one-character text parts, and the
checks walked them all on the event loop. Printed:

- served: a gateway (mock provider) gets one such request (`--messages` x `--parts` parts) while
  small Chats go one after another beside it; the heavy call's time and outcome, and the slowest
  small Chat meanwhile (what a health check or another client waited).
- checks: `validate.chat` alone on the largest requests the `[limits]` defaults admit: 4096 parts,
  and schemas of `max_schema_bytes` made of the smallest properties (best of 5, ms).

    .venv/bin/python benchmarks/request_counts.py  (under the shared benchmark lock)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Callable

import grpc
from google.protobuf import struct_pb2

from provider_gateway import config
from provider_gateway.errors import GatewayError
from provider_gateway.server import validate
from provider_gateway.server.app import GatewayServer
from provider_gateway.v1 import provider_service_pb2 as pb
from provider_gateway.v1 import provider_service_pb2_grpc as pb_grpc

CHAT = "/provider_gateway.v1.ProviderService/Chat"


def conversation(messages: int, parts: int) -> list[pb.Message]:
    return [
        pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text="a")] * parts) for _ in range(messages)
    ]


async def served_beside(heavy: pb.ChatRequest, what: str) -> None:
    """A gateway (mock provider) gets `heavy` while small Chats go one after another beside it;
    prints the heavy call's time and outcome, and the slowest small Chat meanwhile."""
    server = GatewayServer(config.mock_only())
    await server.start("127.0.0.1", 0)
    options = [("grpc.max_send_message_length", 64 << 20)]
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}", options=options) as channel:
            stub = pb_grpc.ProviderServiceStub(channel)
            small = pb.ChatRequest(model="mock/echo", messages=conversation(1, 1))
            await stub.Chat(small, timeout=10)
            data = heavy.SerializeToString()  # sent as bytes: the client's own encoding is not timed
            started = time.perf_counter()
            call = asyncio.ensure_future(channel.unary_unary(CHAT)(data, timeout=120))
            slowest = 0.0
            while not call.done():
                begun = time.perf_counter()
                await stub.Chat(small, timeout=120)
                slowest = max(slowest, time.perf_counter() - begun)
                await asyncio.sleep(0.02)
            try:
                await call
                outcome = "OK"
            except grpc.aio.AioRpcError as exc:
                outcome = f"{exc.code().name}: {(exc.details() or '')[:70]}"
            print(
                f"served: {what} ({len(data) / 1e6:.2f} MB) answered in "
                f"{time.perf_counter() - started:.2f} s ({outcome}); slowest small Chat meanwhile "
                f"{slowest * 1000:.0f} ms"
            )
    finally:
        await server.stop(0)


def best_ms(check: Callable[[], object], rounds: int = 5) -> float:
    times = []
    for _ in range(rounds):
        begun = time.perf_counter()
        with contextlib.suppress(GatewayError):  # a refusal is timed like an answer
            check()
        times.append(time.perf_counter() - begun)
    return min(times) * 1000


def checks() -> None:
    limits = validate.DEFAULT_LIMITS
    parts = pb.ChatRequest(model="mock/echo", messages=conversation(1, limits.max_content_parts))
    print(f"checks: {limits.max_content_parts} parts: {best_ms(lambda: validate.chat(parts)):.1f} ms")
    spread = pb.ChatRequest(model="mock/echo", messages=conversation(1000, limits.max_content_parts // 1000))
    print(
        f"checks: 1000 messages of {limits.max_content_parts // 1000} parts: {best_ms(lambda: validate.chat(spread)):.1f} ms"
    )
    properties = struct_pb2.Struct()
    properties.update({"type": "object", "properties": {f"{i:x}": {} for i in range(60_000)}})
    while properties.ByteSize() > limits.max_schema_bytes:  # the most properties under the limit
        names = list(properties["properties"].keys())
        for name in names[: max(1, len(names) // 50)]:
            del properties["properties"][name]
    tools = pb.ChatRequest(
        model="mock/echo", messages=conversation(1, 1), tools=[pb.Tool(name="t", parameters=properties)]
    )
    print(
        f"checks: a schema of {len(properties['properties'])} properties, {properties.ByteSize()} bytes: "
        f"{best_ms(lambda: validate.chat(tools)):.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2)
    parser.add_argument("--parts", type=int, default=800_000, help="one-character text parts a message")
    args = parser.parse_args()
    heavy = pb.ChatRequest(model="mock/echo", max_tokens=1, messages=conversation(args.messages, args.parts))
    asyncio.run(served_beside(heavy, f"{args.messages} x {args.parts} parts"))
    checks()


if __name__ == "__main__":
    main()
