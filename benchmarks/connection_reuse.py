"""Connection reuse when the body's last chunk trails the vendor's last event.

A vendor's server writes `data: [DONE]` and then, in a second write, the chunked body's last chunk;
across a real network they often arrive apart. benchmarks/fake_openai.py's `--end-gap-ms` puts that
gap between them. For each gap, 500 sequential streams and 3000 streams 50 at a time go through the
gateway (OpenAI adapter, each transport of `[upstream] transport`); the upstream counts the TCP
connections they came on (its /stats). Reuse = 1 - connections / requests.

    .venv/bin/python benchmarks/connection_reuse.py [--quick]

127.0.0.1 only, bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import OPENAI_KEY_ENV, openai_config, upstream_stats

from harness import procs
from harness.load import GatewayPath, run

GAPS_MS = (0.0, 2.0, 10.0)
TRANSPORTS = ("h1", "aiohttp", "httpx")


async def reuse(upstream: procs.Proc, path: GatewayPath, total: int, concurrency: int) -> dict[str, Any]:
    await upstream_stats(upstream.port, reset=True)
    await run(path.stream, total, concurrency, warmup=0, max_seconds=30)
    stats = await upstream_stats(upstream.port)
    return {**stats, "reuse_pct": round((1 - stats["connections"] / max(stats["requests"], 1)) * 100, 1)}


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    sequential, concurrent = (100, 500) if args.quick else (500, 3000)
    results: dict[str, Any] = {}
    for gap in GAPS_MS:
        upstream = procs.upstream(tokens=20, end_gap_ms=gap)
        try:
            for transport in TRANSPORTS:
                config = openai_config(upstream.port, f'[upstream]\ntransport = "{transport}"\n')
                gateway = procs.gateway(config, env=OPENAI_KEY_ENV)
                try:
                    async with GatewayPath(f"127.0.0.1:{gateway.port}", "openai/bench-model") as path:
                        await run(path.stream, 20, 1, warmup=0)  # the connection pool warmed
                        results[f"gap {gap:g} ms, {transport}"] = {
                            "sequential": await reuse(upstream, path, sequential, 1),
                            "50 at a time": await reuse(upstream, path, concurrent, 50),
                        }
                finally:
                    gateway.stop()
        finally:
            upstream.stop()
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
