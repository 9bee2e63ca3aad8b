"""CPU per request of the upstream leg: the OpenAI adapter against benchmarks/fake_openai.py (issue 15, point 3).

    .venv/bin/python benchmarks/upstream_leg.py [--requests 500] [--rounds 3] [--profile [CASE]]

The fake upstream runs in its own process, so this process's CPU time (time.process_time) is the
adapter's and the HTTP layer's alone: streams (SSE read, decoded, 20 tokens) and unary calls, one at
a time, medians of the rounds; `http_*` are the same requests through `provider_gateway.http.Upstream`
alone (`request_json`, and `stream` read to its end undecoded), without the adapter. CPU time moves less with the machine's load than latency does; to
compare two versions of the code, run this script on each in turn (for instance with PYTHONPATH
pointing at an exported older tree) and compare within one sitting. `--profile` prints cProfile's
top functions for the stream case. 127.0.0.1 only, bounded counts.
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
from provider_gateway.http import Upstream
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
    args = parser.parse_args()
    upstream = procs.upstream(tokens=20)
    try:
        context = ProviderContext()
        registry = openai_registry(upstream.port, context)
        provider = registry.get("openai")
        request = ChatRequest("bench-model", [Message(Role.USER, (TextPart("hello"),))])

        async def stream() -> None:
            async for _ in provider.chat_stream(request):
                pass

        async def unary() -> None:
            await provider.chat(request)

        leg = Upstream(
            context.http.host(f"http://127.0.0.1:{upstream.port}"),
            f"http://127.0.0.1:{upstream.port}/v1",
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

        calls = {"stream": stream, "unary": unary, "http_stream": http_stream, "http_unary": http_unary}
        rounds: dict[str, list[float]] = {case: [] for case in CASES}
        for _ in range(args.rounds):
            for case in CASES:
                rounds[case].append(await cpu_per_call(calls[case], args.requests))
        print(
            json.dumps({f"{k}_cpu_us_per_request": round(statistics.median(v), 1) for k, v in rounds.items()})
        )
        if args.profile:
            profile = cProfile.Profile()
            profile.enable()
            for _ in range(args.requests):
                await calls[args.profile]()
            profile.disable()
            stats = pstats.Stats(profile)
            total = stats.total_calls  # type: ignore[attr-defined]
            print(f"Python function calls per {args.profile} request: {total / args.requests:.0f}")
            stats.sort_stats("tottime").print_stats(20)
        await registry.aclose()
        await context.http.aclose()
    finally:
        upstream.stop()


if __name__ == "__main__":
    asyncio.run(main())
