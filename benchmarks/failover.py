"""Failover and fast-fail times of the router, measured in-process and through a real gRPC channel.

    .venv/bin/python benchmarks/failover.py [--runs 200] [--write]

Failover time = from the moment the primary's failure is known to the router (the mock raises, or
the TTFT timeout fires) to the moment the next deployment's stream is opened. Fast-fail = a
request whose every deployment has an open breaker, from call to error. Skip = a request whose
primary is open, from call to the backup's stream being opened. `--write` puts the figures into
benchmarks/RESULTS.md under its own heading, replacing only that section.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import platform
import sys
import time
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from routing_support import chat, two_deployments  # noqa: E402

from provider_gateway import config as config_module  # noqa: E402
from provider_gateway.domain import ChatRequest, StreamEvent  # noqa: E402
from provider_gateway.errors import GatewayError  # noqa: E402
from provider_gateway.providers.mock import MockProvider  # noqa: E402
from provider_gateway.routing.timing import RequestClock  # noqa: E402
from provider_gateway.server.app import GatewayServer  # noqa: E402
from provider_gateway.v1 import provider_service_pb2 as pb  # noqa: E402
from provider_gateway.v1 import provider_service_pb2_grpc as pb_grpc  # noqa: E402

SECTION = "## Router failover and fast-fail (issue 5)"


class Stamps:
    failed_ns = 0
    opened_ns = 0


def instrument(provider: MockProvider, stamps: Stamps, *, primary: bool) -> None:
    """Time the moment the primary's failure leaves it, and the moment the backup is opened."""
    original = provider.chat_stream

    def chat_stream(request: ChatRequest) -> AsyncIterator[StreamEvent]:
        if not primary:
            stamps.opened_ns = time.perf_counter_ns()
        events = original(request)

        async def timed() -> AsyncIterator[StreamEvent]:
            try:
                async for event in events:
                    yield event
            except GatewayError:
                stamps.failed_ns = time.perf_counter_ns()
                raise
            except asyncio.CancelledError:  # the TTFT timeout cancels the hanging primary
                stamps.failed_ns = time.perf_counter_ns()
                raise
            finally:
                await events.aclose()  # type: ignore[attr-defined]

        return timed()

    provider.chat_stream = chat_stream  # type: ignore[method-assign]


def config(primary: str, routing: str = "") -> str:
    """The tests' group `g` (primary `a`, backup `b`) with breakers that never open on their own."""
    never_open = "\n[routing.breaker]\nconsecutive_failures = 1000000\nmin_calls = 1000000"
    return two_deployments(primary, routing=routing + never_open)


SCENARIOS = {
    "primary fails fast (UNAVAILABLE)": config('fault = "error_before_first_token"'),
    "primary hangs, ttft_timeout_s = 0.1": config('fault = "hang"', "ttft_timeout_s = 0.1"),
    "primary rate limited (429, Retry-After 1 ms)": config('fault = "rate_limit"\nretry_after_ms = 1'),
}


def summary(samples_us: list[float]) -> str:
    samples = sorted(samples_us)
    p = lambda q: samples[min(int(q * len(samples)), len(samples) - 1)]  # noqa: E731
    return f"p50 {p(0.5):,.0f} µs, p99 {p(0.99):,.0f} µs, max {samples[-1]:,.0f} µs"


async def measure_failover(toml_text: str, runs: int) -> tuple[list[float], list[float]]:
    server = GatewayServer(config_module.parse(tomllib.loads(toml_text), "bench.toml"))
    router = server.router
    stamps = Stamps()
    a, b = router.registry.get("a"), router.registry.get("b")
    assert isinstance(a, MockProvider)
    assert isinstance(b, MockProvider)
    instrument(a, stamps, primary=True)
    instrument(b, stamps, primary=False)
    for d in router.planner.deployments.values():
        d.provider = router.registry.get(d.spec.provider)  # type: ignore[assignment]
    failover: list[float] = []
    for _ in range(runs):
        events = [e async for e in router.chat_stream(chat("g"), RequestClock())]
        assert getattr(events[-1], "provider", "") == "b", events[-1]
        failover.append((stamps.opened_ns - stamps.failed_ns) / 1000)
        await router.store.eject("g/a/m", 0)  # forget the 429 ejection so every run fails over
        router.store._ejected.clear()  # type: ignore[attr-defined]
    # Client-observed time to first token through a real gRPC channel.
    port = await server.start("127.0.0.1", 0)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = pb_grpc.ProviderServiceStub(channel)
    request = pb.ChatRequest(
        model="g", messages=[pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text="hi")])]
    )
    ttft: list[float] = []
    for _ in range(max(runs // 4, 10)):
        router.store._ejected.clear()  # type: ignore[attr-defined]
        started = time.perf_counter_ns()
        async for event in stub.ChatStream(request):
            if event.WhichOneof("event") == "text_delta":
                ttft.append((time.perf_counter_ns() - started) / 1000)
                break
    await channel.close()
    await server.stop(0)
    return failover, ttft


async def measure_open_breakers(runs: int) -> tuple[list[float], list[float]]:
    toml_text = config('fault = "error_before_first_token"').replace("1000000", "1") + (
        '\n[providers.c]\nkind = "mock"\n[providers.c.models.m]\nfault = "error_before_first_token"\n'
        '[groups.dead]\ndeployments = [{ provider = "c", model = "m" }]\n'
    )
    toml_text = toml_text.replace("[routing]\n", "[routing]\nretries = 0\n", 1)
    server = GatewayServer(config_module.parse(tomllib.loads(toml_text), "bench.toml"))
    router = server.router
    for model in ("g", "dead"):  # open the breakers of a and c
        with contextlib.suppress(GatewayError):
            [e async for e in router.chat_stream(chat(model), RequestClock())]
    assert router.breaker_state("a") == "open"
    assert router.breaker_state("c") == "open"
    fast_fail: list[float] = []
    skip: list[float] = []
    for _ in range(runs):
        started = time.perf_counter_ns()
        try:
            [e async for e in router.chat_stream(chat("dead"), RequestClock())]
        except GatewayError:
            fast_fail.append((time.perf_counter_ns() - started) / 1000)
        stamps = Stamps()
        b = router.registry.get("b")
        assert isinstance(b, MockProvider)
        started = time.perf_counter_ns()
        stream = router.chat_stream(chat("g"), RequestClock())
        original = b.chat_stream
        instrument(b, stamps, primary=False)
        router.planner.deployments["g/b/m"].provider = b
        await anext(stream)
        skip.append((stamps.opened_ns - started) / 1000)
        await stream.aclose()  # type: ignore[attr-defined]
        b.chat_stream = original  # type: ignore[method-assign]
    await router.aclose()
    return fast_fail, skip


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    lines = [
        SECTION,
        "",
        f"`.venv/bin/python benchmarks/failover.py --runs {args.runs} --write` on {platform.machine()}, "
        f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}. In-process router with mock "
        "providers (primary `a`, backup `b`); gRPC TTFT is what a client on loopback sees.",
        "",
        "| scenario | failover (failure known -> backup opened) | client TTFT via gRPC |",
        "|---|---|---|",
    ]
    for name, toml_text in SCENARIOS.items():
        runs = args.runs if "hangs" not in name else max(args.runs // 10, 10)
        failover, ttft = await measure_failover(toml_text, runs)
        lines.append(f"| {name} | {summary(failover)} | {summary(ttft)} |")
        print(lines[-1], flush=True)
    fast_fail, skip = await measure_open_breakers(args.runs)
    lines += [
        "",
        f"- every deployment open -> UNAVAILABLE with retry delay: {summary(fast_fail)}",
        f"- primary open, skipped -> backup opened: {summary(skip)}",
        "",
    ]
    print("\n".join(lines[-3:]))
    if args.write:
        results = ROOT / "benchmarks" / "RESULTS.md"
        text = results.read_text() if results.exists() else "# Benchmark results\n"
        head, found, tail = text.partition(SECTION)
        rest = tail.partition("\n## ")
        after = ("\n## " + rest[2]) if found and rest[1] else ""
        results.write_text(head.rstrip("\n") + "\n\n" + "\n".join(lines) + after)


if __name__ == "__main__":
    asyncio.run(main())
