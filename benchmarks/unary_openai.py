"""Unary Chat on the OpenAI family: one non-streaming upstream call (issue 15, point 2) against the
former way, streaming upstream and accumulating the events (`BaseProvider.chat`).

Both read the same 20-token answer with usage from a loopback fake (in process, same event loop,
no delays), through the same adapter object, interleaved in rounds; medians of the rounds' p50s.
Also the same two through the real gRPC server (`Chat`, whose router calls the adapter's `chat`,
against `ChatStream` collected by the client), for scale.

    .venv/bin/python benchmarks/unary_openai.py [--calls 300] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
import tomllib
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from provider_gateway import config as config_module
from provider_gateway.domain import ChatRequest, Message, Role, TextPart
from provider_gateway.fakes import FakeUpstream, RecordedRequest, Reply
from provider_gateway.fakes import chat_completions as cc
from provider_gateway.providers.base import BaseProvider
from provider_gateway.server.app import GatewayServer
from provider_gateway.v1 import provider_service_pb2 as pb
from provider_gateway.v1 import provider_service_pb2_grpc as pb_grpc

TOKENS = [f" word{n}" for n in range(20)]
USAGE = cc.usage(12, len(TOKENS), cached=0)


def answer(request: RecordedRequest) -> Reply:
    body = request.json()
    if not body.get("stream"):
        return Reply.json(cc.completion("gpt-4o", cc.message("".join(TOKENS)), "stop", USAGE))
    chunks = [cc.chunk("gpt-4o", {"content": t}) for t in TOKENS]
    return Reply.sse([*chunks, cc.chunk("gpt-4o", {}, "stop"), cc.usage_chunk("gpt-4o", USAGE)])


async def timed(call: Callable[[], Awaitable[Any]], calls: int) -> float:
    """p50 of `calls` sequential calls, in ms."""
    latencies = []
    for _ in range(calls):
        began = time.perf_counter()
        await call()
        latencies.append(time.perf_counter() - began)
    return statistics.median(latencies) * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(
        f"python {sys.version.split()[0]} on {platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    async with FakeUpstream() as fake:
        fake.on("POST", "*", answer)
        os.environ["PG_BENCH_OPENAI"] = "sk-bench"
        config = (
            f'[providers.oa]\nkind = "openai"\nbase_url = "{fake.url}/v1"\napi_key_env = "PG_BENCH_OPENAI"\n'
        )
        server = GatewayServer(config_module.parse(tomllib.loads(config), "bench.toml"))
        await server.start("127.0.0.1", 0)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
        stub = pb_grpc.ProviderServiceStub(channel)
        provider = server.registry.get("oa")
        request = ChatRequest(model="gpt-4o", messages=[Message(Role.USER, (TextPart("hi"),))])
        rpc_request = pb.ChatRequest(
            model="oa/gpt-4o", messages=[pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text="hi")])]
        )

        async def unary_adapter() -> None:
            assert (await provider.chat(request)).text

        async def streamed_adapter() -> None:
            assert (await BaseProvider.chat(provider, request)).text

        async def unary_rpc() -> None:
            assert (await stub.Chat(rpc_request)).text

        async def streamed_rpc() -> None:
            assert [e async for e in stub.ChatStream(rpc_request)][-1].HasField("finish")

        runs = {
            "adapter chat(): one unary upstream call": unary_adapter,
            "adapter chat(): stream upstream + accumulate (before)": streamed_adapter,
            "gRPC Chat (unary upstream)": unary_rpc,
            "gRPC ChatStream, collected (streamed upstream)": streamed_rpc,
        }
        try:
            for call in runs.values():
                await timed(call, 30)  # warm up connections and caches
            results: dict[str, list[float]] = {name: [] for name in runs}
            for _ in range(args.rounds):
                for name, call in runs.items():
                    results[name].append(await timed(call, args.calls))
        finally:
            await channel.close()
            await server.stop(0)
    print(
        f"\n| {len(TOKENS)}-token answer, {args.calls} calls x {args.rounds} rounds | p50 ms (median of rounds) |"
    )
    print("|---|---|")
    for name, values in results.items():
        print(f"| {name} | {statistics.median(values):.3f} |")


if __name__ == "__main__":
    asyncio.run(main())
