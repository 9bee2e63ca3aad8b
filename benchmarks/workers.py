"""50 concurrent streams through `serve --workers 1` and `--workers 2`, each on asyncio's event loop
and on uvloop (`--loop`), beside the direct client, with the CPU split between the gateway, the
load client and the upstream (they share the cores).

    .venv/bin/python benchmarks/workers.py [--quick]

The load client spreads its streams over 10 channels (10 connections): one connection would land
on one worker. 127.0.0.1 only, bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import itertools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import OPENAI_KEY_ENV, openai_config

from harness import procs
from harness.load import GatewayPath, HttpPath, run

STREAMS = 50
CHANNELS = 10
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of `pid` and of its children still alive (workers)."""
    total = 0.0
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        pids += [int(c) for c in (task / "children").read_text().split()]
    for one in pids:
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


class SpreadPath:
    """Streams over several channels in turn, so that connections reach every worker."""

    def __init__(self, target: str, model: str) -> None:
        self.paths = [GatewayPath(target, model) for _ in range(CHANNELS)]
        self.turn = itertools.cycle(self.paths)

    async def __aenter__(self) -> SpreadPath:
        for path in self.paths:
            await path.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for path in self.paths:
            await path.__aexit__(*exc)

    async def stream(self) -> tuple[float, float]:
        return await next(self.turn).stream()


async def measure(
    upstream: procs.Proc, workers: int, quick: bool, loop: str = "asyncio", extra: str = ""
) -> dict[str, Any]:
    """One gateway (`extra` appended to its configuration) under 50 concurrent streams."""
    config = procs.ROOT / "benchmarks" / ".run" / f"workers-{time.monotonic_ns()}.toml"
    config.parent.mkdir(exist_ok=True)
    config.write_text(openai_config(upstream.port, extra))
    gateway = procs.start(
        [
            str(procs.ROOT / ".venv" / "bin" / "provider-gateway"),
            "serve",
            "--port",
            "0",
            "--log-level",
            "warning",
            "--config",
            str(config),
            "--workers",
            str(workers),
            "--loop",
            loop,
        ],
        env=OPENAI_KEY_ENV,
    )
    try:
        async with SpreadPath(f"127.0.0.1:{gateway.port}", "openai/bench-model") as path:
            before = (cpu_s(gateway.pid), cpu_s(upstream.pid), time.process_time())
            stats = await run(path.stream, STREAMS * (4 if quick else 40), STREAMS, warmup=20, max_seconds=20)
            after = (cpu_s(gateway.pid), cpu_s(upstream.pid), time.process_time())
    finally:
        gateway.stop()
    spent = [round(b - a, 2) for a, b in zip(before, after, strict=True)]
    return {
        "streams_per_s": round(stats.throughput, 1),
        "ttft_p50_ms": round(stats.ttft_p50_ms, 2),
        "cpu_s": {"gateway": spent[0], "upstream": spent[1], "load client": spent[2]},
        "gateway_cpu_ms_per_stream": round(1000 * spent[0] / stats.count, 3),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    upstream = procs.upstream(tokens=20)
    try:
        async with HttpPath(f"http://127.0.0.1:{upstream.port}/v1", "bench-model") as direct_path:
            direct = await run(direct_path.stream, STREAMS * 20, STREAMS, warmup=20, max_seconds=20)
        results: dict[str, Any] = {
            "direct_streams_per_s": round(direct.throughput, 1),
            "cores": os.cpu_count(),
        }
        loops = ["asyncio"] + (["uvloop"] if importlib.util.find_spec("uvloop") else [])  # an optional extra
        for workers, loop in itertools.product((1, 2), loops):
            row = await measure(upstream, workers, args.quick, loop)
            row["share_of_direct"] = round(row["streams_per_s"] / direct.throughput, 3)
            results[f"workers={workers} loop={loop}"] = row
    finally:
        upstream.stop()
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
