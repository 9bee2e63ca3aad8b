"""The router's own CPU per call and per relayed event (issue 15, points 1 and 5).

    .venv/bin/python benchmarks/router_overhead.py [--rounds 5]
    .venv/bin/python benchmarks/router_overhead.py --profile 100   # cProfile of 200 streams of 100 events

`Router.chat_stream` with its attempt wrapped by `InstrumentedProvider` (tracing and metrics off),
over a provider whose events are all in hand at once: no I/O, no codec, nothing but the routing
path (plan, retry loop, attempt, stall limits, breaker and limiter bookkeeping, timing, cost) and
the wrapper. Per call is the CPU of a stream with no content (usage and finish only), per event the
extra CPU of 100 text deltas over it, divided by 100; `time.process_time`, median of the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import time
import tomllib
from collections.abc import AsyncIterator
from typing import Any

from provider_gateway import config as config_module
from provider_gateway.domain import (
    ChatRequest,
    FinishReason,
    Message,
    ProviderFinish,
    Role,
    StreamEvent,
    TextDelta,
    TextPart,
    Usage,
    UsageEvent,
)
from provider_gateway.observability.instrumented import InstrumentedProvider
from provider_gateway.providers.registry import ProviderRegistry
from provider_gateway.routing.resolve import RouteResolver
from provider_gateway.routing.router import Router
from provider_gateway.routing.settings import parse_routing
from provider_gateway.routing.timing import RequestClock

CONFIG = '[providers.a]\nkind = "mock"\n[groups.g]\ndeployments = [{ provider = "a", model = "m" }]\n'
WARM_UP = 50


class InstantProvider:
    """The mock's identity and capabilities, with a stream of `events` text deltas all in hand."""

    def __init__(self, inner: Any, events: int) -> None:
        self.inner, self.events = inner, events
        self.name, self.kind = inner.name, inner.kind

    async def chat_stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        delta = TextDelta("tok ")
        for _ in range(self.events):
            yield delta
        yield UsageEvent(Usage(input_tokens=5, output_tokens=self.events))
        yield ProviderFinish(FinishReason.STOP, "stop")

    def capabilities(self) -> Any:
        return self.inner.capabilities()

    async def aclose(self) -> None:
        return None


async def cpu_per_stream(events: int, streams: int, profile: cProfile.Profile | None = None) -> float:
    """µs of CPU per stream of `events` deltas, after a warm-up."""
    config = config_module.parse(tomllib.loads(CONFIG), "bench.toml")
    registry = ProviderRegistry.from_config(config)
    router = Router(
        registry, RouteResolver(registry.names(), registry.default, config.aliases), parse_routing(config)
    )
    deployment = router.planner.deployments["g/a/m"]
    instant: Any = InstantProvider(deployment.provider, events)  # the Provider protocol's streaming half
    deployment.provider = InstrumentedProvider(instant, None, None)
    request = ChatRequest("g", [Message(Role.USER, (TextPart("hello"),))])

    async def one() -> None:
        async for _ in router.chat_stream(request, RequestClock()):
            pass

    for _ in range(WARM_UP):
        await one()
    if profile is not None:
        profile.enable()
    started = time.process_time_ns()
    for _ in range(streams):
        await one()
    spent = time.process_time_ns() - started
    if profile is not None:
        profile.disable()
    return spent / streams / 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", type=int, metavar="EVENTS", help="print a cProfile of streams of EVENTS")
    args = parser.parse_args()
    if args.profile is not None:
        profile = cProfile.Profile()
        asyncio.run(cpu_per_stream(args.profile, 200, profile))
        pstats.Stats(profile).sort_stats("tottime").print_stats(30)
        return
    per_call = statistics.median(asyncio.run(cpu_per_stream(0, 2000)) for _ in range(args.rounds))
    per_100 = statistics.median(asyncio.run(cpu_per_stream(100, 300)) for _ in range(args.rounds))
    print(f"router CPU per call: {per_call:.1f} µs; per relayed event: {(per_100 - per_call) / 100:.2f} µs")


if __name__ == "__main__":
    main()
