"""The benchmark harness: the gateway against the direct path and LiteLLM, in one run.

    .venv/bin/python benchmarks/run.py            # full run (~8-10 minutes on 2 cores)
    .venv/bin/python benchmarks/run.py --quick    # 1-2 minutes (LiteLLM start-up included): a smoke check
    .venv/bin/python benchmarks/run.py --no-litellm

Every process listens on 127.0.0.1 only, every loop is bounded in count and time. Absolute
times depend on the machine, so each headline figure is also given as a ratio against a baseline
measured in the same run: sequential latency is measured in 3 interleaved rounds (direct, gateway,
LiteLLM, bare grpc.aio, minimal relay in turn) and each figure is the median of the rounds' figures.
The minimal relay (benchmarks/minimal_relay.py) is grpc.aio relaying the same upstream through one
aiohttp session with no gateway work at all: the floor of this stack, reported beside each target.
At 50 streams two more bounds are measured beside it: benchmarks/lean_relay.py (the same relay on a
bare asyncio Protocol instead of aiohttp: about the least an upstream leg can cost in Python) and
minimal_relay.py `--no-upstream` (grpc.aio alone, answering from memory: the bound that the gRPC
side alone puts on any gateway of this stack).
The full run writes benchmarks/results.json, benchmarks/throughput.png and the "Headline" section of
benchmarks/RESULTS.md; `--quick` writes only benchmarks/results-quick.json (and prints the section),
so a smoke check never replaces the headline.
Timing on a shared machine moves +-15% between identical runs: benchmarks/instructions.py counts
the instructions per call of the gateway, the minimal relay and the bare grpc.aio server instead
(valgrind's callgrind), where a change of a few percent shows.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import statistics
import subprocess
import sys
import time
from contextlib import AsyncExitStack
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import litellm_proxy, procs
from harness.load import GatewayPath, HttpPath, Stats, run
from harness.report import write_results

OPENAI_KEY_ENV = {"BENCH_OPENAI_KEY": "sk-bench"}
CONCURRENCY = (1, 10, 50, 200)
QUICK_CONCURRENCY = (1, 50)
ROUNDS = 3
# Seconds each path streams in a round of the 50-stream target: a fixed time for every path, where a
# fixed count gave the direct client a 0.3-0.5 s window (2416 / 4584 / 3704 streams/s in one run).
ROUND_S = 3.0
RELAY_TOKENS = 200
MINIMAL = "minimal relay"  # benchmarks/minimal_relay.py: the stack's floor, no gateway work
LEAN = "lean relay"  # benchmarks/lean_relay.py: grpc.aio and a bare asyncio Protocol upstream leg
GRPC_ALONE = "grpc.aio alone"  # minimal_relay.py --no-upstream: the relay without its upstream leg
# The gateway read by a client without `usage_in_finish` (usage events): one message more a stream.
USAGE_EVENTS = "gateway, usage events"
# The gateway read by a client without `batch_events`: every event in its own message.
UNBATCHED = "gateway, unbatched"


def openai_config(upstream_port: int, extra: str = "") -> str:
    return f"""
[server]
default_provider = "openai"

[providers.openai]
kind = "openai"
base_url = "http://127.0.0.1:{upstream_port}/v1"
api_key_env = "BENCH_OPENAI_KEY"

[providers.mock]
kind = "mock"

[providers.mock.models.bench]
tokens = 200
{extra}
"""


def all_providers_config(port: int) -> str:
    """Every adapter kind configured (pointing at a closed loopback port): the memory they hold."""
    base = f"http://127.0.0.1:{port}"
    return f"""
[providers.mock]
kind = "mock"

[providers.openai]
kind = "openai"
base_url = "{base}/v1"
api_key_env = "BENCH_OPENAI_KEY"

[providers.azure]
kind = "azure"
base_url = "{base}"
deployment = "gpt-4o"
api_key_env = "BENCH_OPENAI_KEY"

[providers.anthropic]
kind = "anthropic"
base_url = "{base}"
api_key_env = "BENCH_OPENAI_KEY"

[providers.gemini]
kind = "gemini"
base_url = "{base}"
api_key_env = "BENCH_OPENAI_KEY"

[providers.vertex]
kind = "vertex"
base_url = "{base}"
project = "bench"
location = "us-central1"
access_token_env = "BENCH_OPENAI_KEY"

[providers.mistral]
kind = "mistral"
base_url = "{base}/v1"
api_key_env = "BENCH_OPENAI_KEY"

[providers.cohere]
kind = "cohere"
base_url = "{base}"
api_key_env = "BENCH_OPENAI_KEY"

[providers.ollama]
kind = "ollama"
base_url = "{base}"

[providers.bedrock]
kind = "bedrock"
region = "us-east-1"
endpoint_url = "{base}"
"""


async def latency(path: Any, n: int) -> dict[str, Stats]:
    return {"unary": await run(path.unary, n, 1), "stream": await run(path.stream, n, 1)}


async def latency_rounds(paths: dict[str, Any], n: int) -> dict[str, dict[str, dict[str, float]]]:
    """Sequential latency of every path in `ROUNDS` interleaved rounds; each figure is the median
    of the rounds' figures, so a minute in which the shared machine is slow weighs on every path
    alike instead of on whichever path it happened to fall."""
    rounds: dict[str, dict[str, list[dict[str, float]]]] = {
        name: {"unary": [], "stream": []} for name in paths
    }
    for _ in range(ROUNDS):
        for name, path in paths.items():
            for kind, stats in (await latency(path, n)).items():
                rounds[name][kind].append(stats.row())
    return {
        name: {
            kind: {field: statistics.median(row[field] for row in rows) for field in rows[0]}
            for kind, rows in kinds.items()
        }
        for name, kinds in rounds.items()
    }


def added_ratios(seq: dict[str, Any]) -> dict[str, float]:
    """Issue 15's done-when: the gateway against the two hops it is made of (the direct upstream
    call plus a bare grpc.aio hop), all measured in the same run."""
    direct, gateway, bare = seq["direct"], seq["gateway"], seq["bare grpc.aio"]
    unary_sum = direct["unary"]["p50_ms"] + bare["unary"]["p50_ms"]
    ttft_sum = direct["stream"]["ttft_p50_ms"] + bare["stream"]["ttft_p50_ms"]
    out = {"unary_sum_ms": unary_sum, "ttft_sum_ms": ttft_sum}
    # The same ratios for the minimal relay: how far below the targets the stack itself lands.
    for prefix, path in (("", gateway), ("minimal_", seq.get(MINIMAL))):
        if path is not None:
            out[f"{prefix}unary_p50_ratio"] = path["unary"]["p50_ms"] / unary_sum
            out[f"{prefix}unary_p99_ratio"] = path["unary"]["p99_ms"] / unary_sum
            out[f"{prefix}ttft_p50_ratio"] = path["stream"]["ttft_p50_ms"] / ttft_sum
            out[f"{prefix}ttft_p99_ratio"] = path["stream"]["ttft_p99_ms"] / ttft_sum
    return out


def dispatch_overhead(path: GatewayPath) -> dict[str, float]:
    """p50/p99 (ms) of the overhead the gateway reports in each call's Finish."""
    out = {}
    for kind, values in path.overheads_us.items():
        ordered = sorted(values)
        if ordered:
            out[f"{kind}_p50_ms"] = ordered[len(ordered) // 2] / 1000
            out[f"{kind}_p99_ms"] = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] / 1000
    return out


async def concurrency_sweep(path: Any, quick: bool) -> dict[int, Stats]:
    out = {}
    for c in QUICK_CONCURRENCY if quick else CONCURRENCY:
        total = max(200, c * (10 if quick else 25))
        out[c] = await run(path.stream, total, c, warmup=5, max_seconds=3 if quick else 12)
    return out


async def streams_at_50(paths: dict[str, Any], quick: bool) -> dict[str, Any]:
    """Issue 15's throughput target, as its done-when asks: `ROUNDS` interleaved rounds of 50
    concurrent streams on every path, each path's share of the direct client's rate taken within
    its round (the same minute of this shared VM), and the median of those shares. The sweep's
    single pass measures each path in a different minute."""
    rounds: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(ROUNDS):
        for name, path in paths.items():
            await run(path.stream, 100, 50, warmup=0)  # every path's connections open and warm
            stats = await run(path.stream, 10**9, 50, warmup=0, max_seconds=ROUND_S / (3 if quick else 1))
            rounds[name].append(stats.throughput)
    out: dict[str, Any] = {"rounds": rounds}
    for name, rates in rounds.items():
        out[name] = statistics.median(rates)
        if name != "direct":
            shares = [rate / direct for rate, direct in zip(rates, rounds["direct"], strict=True)]
            out[f"{name} shares"] = shares
            out[f"{name} share"] = statistics.median(shares)
    return out


async def worker_split(upstream: procs.Proc, quick: bool) -> dict[str, Any]:
    """50 streams through `serve --workers 1` and `--workers 2` (benchmarks/workers.py), with the
    CPU split between gateway, upstream and load client, each against the direct client's rate at
    50 measured just before it (the same minute of the shared machine)."""
    from workers import measure

    out: dict[str, Any] = {}
    async with HttpPath(f"http://127.0.0.1:{upstream.port}/v1", "bench-model") as direct:
        for count in (1, 2):
            await run(direct.stream, 100, 50, warmup=0)  # its connections open and warm
            before = await run(direct.stream, 10**9, 50, warmup=0, max_seconds=ROUND_S / (3 if quick else 1))
            row = await measure(upstream, count, quick)
            row["direct_streams_per_s"] = before.throughput
            row["share_of_direct"] = row["streams_per_s"] / before.throughput
            out[str(count)] = row
    return out


def allocations_per_token() -> dict[str, Any]:
    """Heap blocks allocated per relayed token on the whole hot path (benchmarks/allocations.py)."""
    from allocations import measure

    try:
        return measure(tokens=1000, streams=10, stages=("serialize",))  # seconds, not minutes
    except RuntimeError as error:
        print(error, file=sys.stderr)
        return {}


async def upstream_stats(port: int, reset: bool = False) -> dict[str, int]:
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/stats", params={"reset": "1"} if reset else {}) as response,
    ):
        return await response.json()  # type: ignore[no-any-return]


async def relay_cost(gateway: procs.Proc, quick: bool) -> dict[str, float]:
    """Per-token cost of relaying a stream: the gateway (mock, 200 tokens) vs a bare grpc.aio stream
    (200 messages): wall time per token at one client, and the server process's CPU time per relayed
    token (the gateway) or per message (bare), which the machine's load moves far less."""
    from workers import cpu_s

    bare = procs.start(
        [
            procs.PYTHON,
            str(procs.ROOT / "benchmarks" / "bare_stream_server.py"),
            "--tokens",
            str(RELAY_TOKENS),
        ]
    )
    servers = {"bare_grpc_aio": bare, "gateway": gateway}
    cpu: dict[str, float] = {"bare_grpc_aio": 0.0, "gateway": 0.0}
    streams: dict[str, int] = {"bare_grpc_aio": 0, "gateway": 0}
    # Interleaved rounds, median of each: on a shared 2-core VM the per-message cost of the same
    # server jumps between ~55 and ~110 µs from one minute to the next (scheduling of client and
    # server on one or two cores), so one long measurement of each side compares different machines.
    samples: dict[str, list[float]] = {"bare_grpc_aio": [], "gateway": [], "ratio": []}
    try:
        async with (
            GatewayPath(f"127.0.0.1:{bare.port}", "x") as bare_path,
            GatewayPath(f"127.0.0.1:{gateway.port}", "mock/bench") as gateway_path,
        ):
            for _ in range(3 if quick else 7):
                round_us = {}
                for name, path in (("bare_grpc_aio", bare_path), ("gateway", gateway_path)):
                    before = cpu_s(servers[name].pid)
                    stats = await run(path.stream, 10 if quick else 20, 1, warmup=2)
                    cpu[name] += cpu_s(servers[name].pid) - before
                    streams[name] += stats.count + 2
                    # µs per token
                    round_us[name] = (stats.p50_ms - stats.ttft_p50_ms) / (RELAY_TOKENS - 1) * 1000
                    samples[name].append(round_us[name])
                samples["ratio"].append(round_us["gateway"] / round_us["bare_grpc_aio"])
        out = {name: statistics.median(values) for name, values in samples.items()}
        for name in cpu:  # clock ticks are 10 ms: summed over every round, not per round
            out[f"{name}_cpu_us"] = cpu[name] / (streams[name] * RELAY_TOKENS) * 1e6
        out["cpu_ratio"] = out["gateway_cpu_us"] / out["bare_grpc_aio_cpu_us"]
        return out
    finally:
        bare.stop()


async def memory(quick: bool) -> dict[str, float]:
    out: dict[str, float] = {}
    mock_only = procs.gateway(None)
    await asyncio.sleep(1.0)
    out["idle_mock_only_mb"] = mock_only.rss_mb()
    # Growth: a warm-up, then many unary calls; RSS before and after.
    total = 1_000 if quick else 100_000
    out["before_warmup_mb"] = mock_only.rss_mb()
    async with GatewayPath(f"127.0.0.1:{mock_only.port}", "mock/echo") as path:
        # Warm up until the allocator and grpc core's buffers reach their working size. At 50
        # concurrent calls RSS rises ~4.5 MB over the first ~100,000 calls and then stays level:
        # 58.4 idle, 61.4, 62.9, 63.1, 63.2, 63.4, 63.4, 63.3, 63.4 MB every 50k up to 400k
        # (2026-11-30). Both figures are reported: the warm-up rise and the growth after it.
        warm = await run(path.unary, 1_000 if quick else 100_000, 50, warmup=0, max_seconds=180)
        out["warmup_requests"] = warm.count
        out["after_warmup_mb"] = mock_only.rss_mb()
        started = time.perf_counter()
        stats = await run(path.unary, total, 50, warmup=0, max_seconds=240)
        out["requests_for_growth"] = stats.count
        out["growth_seconds"] = time.perf_counter() - started
    out["after_requests_mb"] = mock_only.rss_mb()
    out["growth_pct"] = (out["after_requests_mb"] - out["after_warmup_mb"]) / out["after_warmup_mb"] * 100
    mock_only.stop()

    everything = procs.gateway(all_providers_config(1), env=OPENAI_KEY_ENV)
    await asyncio.sleep(1.0)
    out["idle_all_providers_mb"] = everything.rss_mb()
    everything.stop()
    out["providers_share_mb"] = out["idle_all_providers_mb"] - out["idle_mock_only_mb"]
    out["providers_tracemalloc_mb"] = tracemalloc_share()

    streams = 100 if quick else 1000
    slow = procs.gateway(
        '[providers.mock]\nkind = "mock"\n[providers.mock.models.long]\ntokens = 40\ntoken_delay_ms = 100\n'
        # One deployment taking every stream at once: lift its concurrency limit above the count.
        f"[routing.limiter]\ninitial = {streams}\nmaximum = {streams}\n"
    )
    async with GatewayPath(f"127.0.0.1:{slow.port}", "mock/long") as path:
        task = asyncio.gather(*(path.stream() for _ in range(streams)))
        await asyncio.sleep(2.0)
        out["concurrent_streams"] = streams
        out["rss_under_streams_mb"] = slow.rss_mb()
        await task
    slow.stop()
    return out


def tracemalloc_share() -> float:
    """Python heap the provider layer allocates (imports included) for every provider, in MB."""
    code = (
        "import tracemalloc, tomllib, sys; sys.path.insert(0, 'benchmarks');"
        "from run import all_providers_config;"
        "from provider_gateway import config;"
        "from provider_gateway.providers.registry import ProviderRegistry;"
        "cfg = config.parse(tomllib.loads(all_providers_config(1)), 'bench');"
        "tracemalloc.start();"
        "registry = ProviderRegistry.from_config(cfg);"
        "print(tracemalloc.get_traced_memory()[0] / 1048576)"
    )
    result = subprocess.run(
        [procs.PYTHON, "-c", code],
        capture_output=True,
        text=True,
        cwd=procs.ROOT,
        env={**OPENAI_KEY_ENV, "PATH": "/usr/bin"},
    )
    if result.returncode:
        print(result.stderr[-2000:], file=sys.stderr)
        return -1.0
    return float(result.stdout.strip().splitlines()[-1])


def progress(step: str, started: float) -> None:
    print(f"[{time.perf_counter() - started:5.1f} s] {step}", flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-litellm", action="store_true")
    args = parser.parse_args()
    n = 30 if args.quick else 500
    started = time.perf_counter()
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "versions": {p: metadata.version(p) for p in ("grpcio", "protobuf", "httpx", "aiohttp")},
        "command": " ".join(["python", "benchmarks/run.py", *sys.argv[1:]]),
    }
    upstream = procs.upstream(tokens=20)
    gateway = procs.gateway(openai_config(upstream.port), env=OPENAI_KEY_ENV)
    # The floor of this stack: grpc.aio relaying the same upstream through one aiohttp session.
    relay = procs.start(
        [
            procs.PYTHON,
            str(procs.ROOT / "benchmarks" / "minimal_relay.py"),
            "--upstream",
            f"http://127.0.0.1:{upstream.port}/v1",
        ]
    )
    lean = procs.start(
        [
            procs.PYTHON,
            str(procs.ROOT / "benchmarks" / "lean_relay.py"),
            "--upstream-port",
            str(upstream.port),
        ]
    )
    grpc_alone = procs.start(
        [procs.PYTHON, str(procs.ROOT / "benchmarks" / "minimal_relay.py"), "--no-upstream"]
    )
    litellm = None
    async with AsyncExitStack() as stack:
        paths: dict[str, Any] = {
            "direct": await stack.enter_async_context(
                HttpPath(f"http://127.0.0.1:{upstream.port}/v1", "bench-model")
            ),
            "gateway": await stack.enter_async_context(
                GatewayPath(f"127.0.0.1:{gateway.port}", "openai/bench-model")
            ),
            MINIMAL: await stack.enter_async_context(GatewayPath(f"127.0.0.1:{relay.port}", "bench-model")),
        }
        if not args.no_litellm:
            try:
                litellm = litellm_proxy.start(upstream.port)
                results["versions"]["litellm"] = litellm_proxy.VERSION
                paths["litellm"] = await stack.enter_async_context(
                    HttpPath(
                        f"http://127.0.0.1:{litellm.port}", "bench-model", api_key=litellm_proxy.MASTER_KEY
                    )
                )
            except (RuntimeError, subprocess.CalledProcessError) as exc:
                results["litellm_error"] = str(exc)
        progress("sequential latency...", started)
        # The floor of one gRPC hop on this machine: a bare grpc.aio server answering at once.
        bare = procs.start(
            [procs.PYTHON, str(procs.ROOT / "benchmarks" / "bare_stream_server.py"), "--tokens", "20"]
        )
        floor = await stack.enter_async_context(GatewayPath(f"127.0.0.1:{bare.port}", "x"))
        paths["gateway"].overheads_us = {"unary": [], "stream": []}
        results["sequential"] = await latency_rounds({**paths, "bare grpc.aio": floor}, n)
        results["added_ratios"] = added_ratios(results["sequential"])
        results["dispatch_overhead"] = dispatch_overhead(paths["gateway"])
        bare.stop()
        progress("concurrency sweep...", started)
        results["concurrency"] = {
            name: {c: s.row() for c, s in (await concurrency_sweep(p, args.quick)).items()}
            for name, p in paths.items()
        }
        progress("50 streams, interleaved rounds...", started)
        usage_events = await stack.enter_async_context(
            GatewayPath(f"127.0.0.1:{gateway.port}", "openai/bench-model", usage_in_finish=False)
        )
        unbatched = await stack.enter_async_context(
            GatewayPath(f"127.0.0.1:{gateway.port}", "openai/bench-model", batch_events=False)
        )
        alone = await stack.enter_async_context(GatewayPath(f"127.0.0.1:{grpc_alone.port}", "bench-model"))
        results["streams_at_50"] = await streams_at_50(
            {
                **{name: paths[name] for name in ("direct", "gateway", MINIMAL)},
                USAGE_EVENTS: usage_events,
                UNBATCHED: unbatched,
                LEAN: await stack.enter_async_context(GatewayPath(f"127.0.0.1:{lean.port}", "bench-model")),
                GRPC_ALONE: alone,
            },
            args.quick,
        )
        progress("connection reuse...", started)
        await upstream_stats(upstream.port, reset=True)
        await run(paths["gateway"].stream, 500 if args.quick else 3000, 50, warmup=0)
        stats = await upstream_stats(upstream.port)
        results["connection_reuse"] = {
            **stats,
            "reuse_pct": (1 - stats["connections"] / max(stats["requests"], 1)) * 100,
        }
        if litellm is not None:
            results["litellm_rss_mb"] = litellm.rss_mb()
        results["gateway_rss_after_load_mb"] = gateway.rss_mb()
    progress("relay cost...", started)
    results["relay_us_per_token"] = await relay_cost(gateway, args.quick)
    for proc in (gateway, relay, lean, grpc_alone, litellm):
        if proc is not None:
            proc.stop()
    progress("workers...", started)
    results["workers"] = await worker_split(upstream, args.quick)
    upstream.stop()
    progress("memory, and allocations per token beside it...", started)
    # Allocation counts do not depend on load, and memory reads RSS, not time: they can share the cores.
    counting = asyncio.get_running_loop().run_in_executor(None, allocations_per_token)
    results["memory"] = await memory(args.quick)
    results["allocations"] = await counting
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    write_results(results, headline=not args.quick)


if __name__ == "__main__":
    asyncio.run(main())
