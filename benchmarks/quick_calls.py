"""The router's own CPU per Embed and CountTokens call (routing/quick_calls.py).

    .venv/bin/python benchmarks/quick_calls.py [--rounds 5] [--calls 5000]

`Router.embed` and `Router.count_tokens` over the mock provider (one input, an 8-wide vector: no
I/O), on a plain route and on a group of two deployments; `time.process_time` per call, median of
the rounds. The provider's own work is in the figure too: compare runs, not the absolute value.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import tomllib
from collections.abc import Awaitable, Callable

from provider_gateway import config as config_module
from provider_gateway.domain import CountTokensRequest, EmbedRequest
from provider_gateway.providers.registry import ProviderRegistry
from provider_gateway.routing.resolve import RouteResolver
from provider_gateway.routing.router import Router
from provider_gateway.routing.settings import parse_routing

CONFIG = """
[providers.a]
kind = "mock"
[providers.b]
kind = "mock"
[groups.g]
deployments = [{ provider = "a", model = "embed" }, { provider = "b", model = "embed" }]
"""
WARM_UP = 200


def router() -> Router:
    config = config_module.parse(tomllib.loads(CONFIG), "bench.toml")
    registry = ProviderRegistry.from_config(config)
    return Router(
        registry, RouteResolver(registry.names(), registry.default, config.aliases), parse_routing(config)
    )


async def per_call_us(call: Callable[[], Awaitable[object]], calls: int, rounds: int) -> float:
    for _ in range(WARM_UP):
        await call()
    samples = []
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(calls):
            await call()
        samples.append((time.process_time() - started) / calls * 1e6)
    return statistics.median(samples)


async def main(rounds: int, calls: int) -> None:
    r = router()
    cases: dict[str, Callable[[], Awaitable[object]]] = {
        "Embed a/embed": lambda: r.embed(EmbedRequest("a/embed", ["hello"])),
        "Embed group g": lambda: r.embed(EmbedRequest("g", ["hello"])),
        "CountTokens a/echo": lambda: r.count_tokens(CountTokensRequest("a/echo", text="hello there")),
    }
    for name, call in cases.items():
        print(f"{name:20} {await per_call_us(call, calls, rounds):6.1f} µs per call")
    await r.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.calls))
