"""Cost of the Anthropic, Gemini and Cohere adapters: codec decoding alone, and whole ChatStream calls.

1. Codec: decode a long recorded-shape stream (JSON parsing included) with each vendor's pure
   decoder; reports events per second and microseconds per upstream event.
2. End to end: the gateway (in process) streams the canonical "text + tool call" conversation from
   each fake vendor (in process, same event loop, loopback HTTP); reports p50/p99 per call and
   calls per second, sequentially.

    .venv/bin/python benchmarks/vendor_adapters.py [--events 20000] [--calls 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
import tomllib
from collections.abc import Callable
from typing import Any

import grpc

from provider_gateway import config as config_module
from provider_gateway.fakes.anthropic import FakeAnthropic, message_frames
from provider_gateway.fakes.cohere import FakeCohere, chat_frames
from provider_gateway.fakes.gemini import FakeGemini, frames_for
from provider_gateway.fakes.vendor_base import FakeVendor
from provider_gateway.providers.anthropic.codec import MessagesStreamDecoder
from provider_gateway.providers.cohere.codec import ChatStreamDecoder
from provider_gateway.providers.gemini.codec import GenerateStreamDecoder
from provider_gateway.server.app import GatewayServer
from provider_gateway.v1 import provider_service_pb2 as pb
from provider_gateway.v1 import provider_service_pb2_grpc as pb_grpc
from provider_gateway.wire.sse import SseDecoder


def _payloads(frames: list[str]) -> list[Any]:
    decoder = SseDecoder()
    events = decoder.feed("".join(frames).encode())
    return [json.loads(e.data) for e in events]


def codec_rate(
    name: str, payloads: list[Any], make: Callable[[], Any], count: int
) -> tuple[str, float, float]:
    """Repeat the middle (content) events of one stream until `count` events have been decoded."""
    raw = [json.dumps(p) for p in payloads]
    body = raw[1:-1] if name != "gemini" else raw[:-1]
    start = time.perf_counter()
    done = 0
    while done < count:
        decoder = make()
        decoder.feed(json.loads(raw[0]))
        for text in body:
            decoder.feed(json.loads(text))
        done += len(body) + 1
    elapsed = time.perf_counter() - start
    return name, done / elapsed, elapsed / done * 1e6


async def end_to_end(
    name: str, fake: FakeVendor, config: str, model: str, calls: int
) -> tuple[str, float, float, float]:
    server = GatewayServer(config_module.parse(tomllib.loads(config), "bench.toml"))
    await server.start("127.0.0.1", 0)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    stub = pb_grpc.ProviderServiceStub(channel)
    request = pb.ChatRequest(
        model=model, messages=[pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text="hi")])]
    )
    try:
        for _ in range(20):  # warm up connections and caches
            [e async for e in stub.ChatStream(request)]
        latencies = []
        start = time.perf_counter()
        for _ in range(calls):
            began = time.perf_counter()
            events = [e async for e in stub.ChatStream(request)]
            latencies.append(time.perf_counter() - began)
            assert events[-1].HasField("finish"), name
        elapsed = time.perf_counter() - start
    finally:
        await channel.close()
        await server.stop(0)
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    return name, statistics.median(latencies) * 1000, p99 * 1000, calls / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    print(
        f"python {sys.version.split()[0]} on {platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    print("\n| vendor codec | events/s | µs per event |\n|---|---|---|")
    for row in [
        codec_rate(
            "anthropic", _payloads(message_frames("tools", "m")[0]), MessagesStreamDecoder, args.events
        ),
        codec_rate("gemini", _payloads(frames_for("tools", "m")[0]), GenerateStreamDecoder, args.events),
        codec_rate("cohere", _payloads(chat_frames("tools")[0]), ChatStreamDecoder, args.events),
    ]:
        print(f"| {row[0]} | {row[1]:,.0f} | {row[2]:.1f} |")

    fakes: list[tuple[str, FakeVendor, str, str, str]] = [
        ("anthropic", FakeAnthropic(), "api_key_env", "PG_BENCH_ANTHROPIC", "p/tools"),
        ("gemini", FakeGemini(), "api_key_env", "PG_BENCH_GEMINI", "p/tools"),
        ("cohere", FakeCohere(), "api_key_env", "PG_BENCH_COHERE", "p/tools"),
    ]
    print("\n| vendor (ChatStream, text + tool call) | p50 ms | p99 ms | calls/s |\n|---|---|---|---|")
    for name, fake, secret_key, env, model in fakes:
        await fake.start()
        os.environ[env] = getattr(fake, "api_key", "")
        config = f'[providers.p]\nkind = "{name}"\nbase_url = "{fake.base_url}"\n{secret_key} = "{env}"\n'
        try:
            row = await end_to_end(name, fake, config, model, args.calls)
        finally:
            await fake.stop()
        print(f"| {row[0]} | {row[1]:.2f} | {row[2]:.2f} | {row[3]:.0f} |")


if __name__ == "__main__":
    asyncio.run(main())
