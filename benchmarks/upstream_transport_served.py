"""50 concurrent streams through one gateway worker on each `[upstream] transport`, beside the direct
client, interleaved round by round (issue 15: the h1 transport against aiohttp).

    .venv/bin/python benchmarks/upstream_transport_served.py [--rounds 3] [--transports h1,aiohttp]

Each round measures the direct client, then a fresh `serve --workers 1` per transport, in turn, so
that every transport meets the same minutes of a shared machine. CPU per stream of the gateway
process is the steadier figure; throughput is shown as a share of the direct client's of the same
round. 127.0.0.1 only, bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workers import STREAMS, measure

from harness import procs
from harness.load import HttpPath, run


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--transports", default="h1,aiohttp")
    args = parser.parse_args()
    transports = args.transports.split(",")
    upstream = procs.upstream(tokens=20)
    rows: dict[str, list[dict[str, Any]]] = {t: [] for t in transports}
    try:
        for _ in range(args.rounds):
            async with HttpPath(f"http://127.0.0.1:{upstream.port}/v1", "bench-model") as direct_path:
                direct = await run(direct_path.stream, STREAMS * 20, STREAMS, warmup=20, max_seconds=20)
            for transport in transports:
                row = await measure(
                    upstream, 1, quick=False, extra=f'[upstream]\ntransport = "{transport}"\n'
                )
                row["share_of_direct"] = round(row["streams_per_s"] / direct.throughput, 3)
                rows[transport].append(row)
                print(transport, json.dumps(row), flush=True)
    finally:
        upstream.stop()
    summary = {
        transport: {
            "gateway_cpu_ms_per_stream": [r["gateway_cpu_ms_per_stream"] for r in runs],
            "share_of_direct": [r["share_of_direct"] for r in runs],
            "median_share_of_direct": statistics.median(r["share_of_direct"] for r in runs),
            "median_gateway_cpu_ms_per_stream": statistics.median(
                r["gateway_cpu_ms_per_stream"] for r in runs
            ),
        }
        for transport, runs in rows.items()
    }
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
