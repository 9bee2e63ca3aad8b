"""What one request's provider_options cost the worker that serves it (a red-team finding, 2026-12-07).

Nothing bounded provider_options below [server] max_message_bytes: the servicer converted all of it
(json_format's walk, then whole numbers to ints) on the event loop, and each wire walks it again to
check, merge and encode it. `[limits] max_provider_options_bytes` now refuses options over its
encoded size first. Printed:

- served: a gateway (mock provider) gets one Chat whose options are a list of `--values` empty
  objects (the costliest shape per byte found) while small Chats go one after another beside it;
  the heavy call's time and outcome, and the slowest small Chat meanwhile (what others waited).
- checks: the bound's own check (the encoded size) on those options, and the conversion of the
  largest options of that shape the default limit admits (best of 5, ms).

    .venv/bin/python benchmarks/provider_options_size.py  (under the shared benchmark lock)
"""

from __future__ import annotations

import argparse
import asyncio
import time

import grpc
from google.protobuf import struct_pb2
from request_counts import CHAT, best_ms, conversation

from provider_gateway import config
from provider_gateway.server import convert, validate
from provider_gateway.server.app import GatewayServer
from provider_gateway.v1 import provider_service_pb2 as pb
from provider_gateway.v1 import provider_service_pb2_grpc as pb_grpc


def empty_objects(values: int) -> struct_pb2.Struct:
    options = struct_pb2.Struct()
    options.update({"a": [{}] * values})
    return options


async def served(values: int) -> None:
    server = GatewayServer(config.mock_only())
    await server.start("127.0.0.1", 0)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = pb_grpc.ProviderServiceStub(channel)
            small = pb.ChatRequest(model="mock/echo", messages=conversation(1, 1))
            await stub.Chat(small, timeout=10)
            heavy = pb.ChatRequest(
                model="mock/echo",
                max_tokens=1,
                messages=conversation(1, 1),
                provider_options=empty_objects(values),
            )
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
                outcome = f"{exc.code().name}: {(exc.details() or '')[:60]}"
            print(
                f"served: options of {values} empty objects ({len(data) / 1e6:.2f} MB) answered in "
                f"{time.perf_counter() - started:.2f} s ({outcome}); slowest small Chat meanwhile "
                f"{slowest * 1000:.0f} ms"
            )
    finally:
        await server.stop(0)


def checks(values: int) -> None:
    heavy = empty_objects(values)
    print(
        f"checks: the encoded size of {heavy.ByteSize()} bytes of options: {best_ms(heavy.ByteSize):.2f} ms"
    )
    limit = validate.DEFAULT_LIMITS.max_provider_options_bytes
    largest = empty_objects((limit - 8) // 4)  # 4 bytes an empty object, 8 for the key and list
    while largest.ByteSize() > limit:
        largest = empty_objects(len(largest["a"]) - 1)
    print(
        f"checks: converting {len(largest['a'])} empty objects in {largest.ByteSize()} bytes (the most "
        f"the default limit admits): {best_ms(lambda: convert.struct_to_dict(largest)):.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=2_000_000, help="empty objects in the options")
    args = parser.parse_args()
    asyncio.run(served(args.values))
    checks(args.values)


if __name__ == "__main__":
    main()
