"""CPU per request of the upstream leg: the OpenAI adapter against benchmarks/fake_openai.py (issue 15, point 3).

    .venv/bin/python benchmarks/upstream_leg.py [--requests 500] [--rounds 3] [--transports h1,aiohttp]
        [--profile [CASE]]

The fake upstream runs in its own process, so this process's CPU time (time.process_time) is the
adapter's and the HTTP layer's alone: streams (SSE read, decoded, 20 tokens) and unary calls, one at
a time, medians of the rounds; `http_*` are the same requests through `provider_gateway.http.Upstream`
alone (`request_json`, and `stream` read to its end undecoded), without the adapter. CPU time moves less with the machine's load than latency does; to
compare two versions of the code, run this script on each in turn (for instance with PYTHONPATH
pointing at an exported older tree) and compare within one sitting. `--profile` prints cProfile's
top functions for the stream case (on the first transport). Each round runs every case on every
transport named (`[upstream] transport`), interleaved, so that they share the machine's minutes.
127.0.0.1 only, bounded counts.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import statistics
import sys
import time
import tomllib
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import procs
from provider_gateway import config as config_module
from provider_gateway.domain import ChatRequest, Message, Role, TextPart
from provider_gateway.http import Upstream, UpstreamPool
from provider_gateway.providers.context import ProviderContext
from provider_gateway.providers.registry import ProviderRegistry


def openai_registry(port: int, context: ProviderContext) -> ProviderRegistry:
    os.environ.setdefault("BENCH_OPENAI_KEY", "sk-bench")
    text = f"""
[providers.openai]
kind = "openai"
base_url = "http://127.0.0.1:{port}/v1"
api_key_env = "BENCH_OPENAI_KEY"
"""
    return ProviderRegistry.from_config(config_module.parse(tomllib.loads(text), "bench.toml"), context)


async def cpu_per_call(call: Callable[[], Awaitable[object]], requests: int) -> float:
    """CPU µs per call of this process, after a warm-up."""
    for _ in range(20):
        await call()
    started = time.process_time()
    for _ in range(requests):
        await call()
    return (time.process_time() - started) / requests * 1e6


CASES = ("stream", "unary", "http_stream", "http_unary")


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", nargs="?", const="stream", choices=CASES, help="cProfile one case")
    parser.add_argument("--transports", default="h1,aiohttp", help="comma-separated [upstream] transports")
    args = parser.parse_args()
    transports = args.transports.split(",")
    upstream = procs.upstream(tokens=20)
    try:
        legs = {transport: Leg(upstream.port, transport) for transport in transports}
        rounds: dict[str, list[float]] = {f"{t}_{case}": [] for t in transports for case in CASES}
        for _ in range(args.rounds):
            for case in CASES:
                for transport, leg in legs.items():
                    rounds[f"{transport}_{case}"].append(await cpu_per_call(leg.calls[case], args.requests))
        print(
            json.dumps({f"{k}_cpu_us_per_request": round(statistics.median(v), 1) for k, v in rounds.items()})
        )
        if args.profile:
            call = legs[transports[0]].calls[args.profile]
            profile = cProfile.Profile()
            profile.enable()
            for _ in range(args.requests):
                await call()
            profile.disable()
            stats = pstats.Stats(profile)
            total = stats.total_calls  # type: ignore[attr-defined]
            print(f"Python function calls per {args.profile} request: {total / args.requests:.0f}")
            stats.sort_stats("tottime").print_stats(20)
        for leg in legs.values():
            await leg.aclose()
    finally:
        upstream.stop()


class Leg:
    """The four cases through one transport: the adapter (stream, unary) and the HTTP layer alone."""

    def __init__(self, port: int, transport: str) -> None:
        self.context = ProviderContext(UpstreamPool(transport=transport))
        self.registry = openai_registry(port, self.context)
        provider = self.registry.get("openai")
        request = ChatRequest("bench-model", [Message(Role.USER, (TextPart("hello"),))])

        async def stream() -> None:
            async for _ in provider.chat_stream(request):
                pass

        async def unary() -> None:
            await provider.chat(request)

        leg = Upstream(
            self.context.http.host(f"http://127.0.0.1:{port}"),
            f"http://127.0.0.1:{port}/v1",
            "bench",
            headers={"authorization": "Bearer sk-bench"},
        )
        body = {"model": "bench-model", "messages": [{"role": "user", "content": "hello"}]}

        async def http_stream() -> None:
            async with leg.stream("POST", "/chat/completions", json={**body, "stream": True}) as chunks:
                async for _ in chunks:
                    pass

        async def http_unary() -> None:
            await leg.request_json("POST", "/chat/completions", json=body)

        self.calls = {"stream": stream, "unary": unary, "http_stream": http_stream, "http_unary": http_unary}

    async def aclose(self) -> None:
        await self.registry.aclose()
        await self.context.http.aclose()


if __name__ == "__main__":
    asyncio.run(main())
