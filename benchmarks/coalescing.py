"""Messages per stream and stream throughput against load, with coalescing on and off, and with
events in hand together batched (`StreamOptions.batch_events`, as both clients ask) or not.

    .venv/bin/python benchmarks/coalescing.py [--quick]

One fake OpenAI upstream (20 tokens a stream, benchmarks/fake_openai.py), the gateway in front of it
with `[server] coalesce_deltas` on (read by a client asking for batches, then by one that does not)
and then off, and the direct client; at each concurrency, the streams' throughput and the gRPC
messages a stream took. The accumulated text is compared with the direct client's on every stream.
127.0.0.1 only, bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import OPENAI_KEY_ENV, openai_config

from harness import procs
from harness.load import GatewayPath, HttpPath, run

CONCURRENCY = (1, 10, 50)


class CountingPath(GatewayPath):
    """GatewayPath that also counts the messages of each stream and keeps the text it got."""

    def __init__(self, target: str, model: str, batch_events: bool) -> None:
        super().__init__(target, model, batch_events=batch_events)
        self.messages: list[int] = []
        self.texts: set[str] = set()

    async def stream(self) -> tuple[float, float]:
        start, ttft, count, text = time.perf_counter(), 0.0, 0, []
        async for message in self.stub.ChatStream(self.stream_request, timeout=30):
            count += 1
            for event in message.batch.events if message.HasField("batch") else (message,):
                if event.HasField("text_delta"):
                    ttft = ttft or time.perf_counter() - start
                    text.append(event.text_delta.text)
        self.messages.append(count)
        self.texts.add("".join(text))
        return ttft, time.perf_counter() - start


async def measure(
    upstream_port: int, coalesce: bool, batch: bool, quick: bool
) -> dict[int, dict[str, float]]:
    setting = f"[server]\ncoalesce_deltas = {str(coalesce).lower()}\n"
    config = openai_config(upstream_port).replace("[server]\n", setting, 1)
    gateway = procs.gateway(config, env=OPENAI_KEY_ENV)
    out = {}
    try:
        for concurrency in CONCURRENCY:
            async with CountingPath(f"127.0.0.1:{gateway.port}", "openai/bench-model", batch) as path:
                total = max(100, concurrency * (8 if quick else 20))
                stats = await run(path.stream, total, concurrency, warmup=5, max_seconds=8 if quick else 15)
                assert len(path.texts) == 1, "coalescing changed the text"
                out[concurrency] = {
                    "streams_per_s": round(stats.throughput, 1),
                    "ttft_p50_ms": round(stats.ttft_p50_ms, 3),
                    "messages_per_stream": round(statistics.mean(path.messages), 1),
                    "text": path.texts.pop(),
                }
    finally:
        gateway.stop()
    return out


async def direct(upstream_port: int, quick: bool) -> dict[int, float]:
    out = {}
    async with HttpPath(f"http://127.0.0.1:{upstream_port}/v1", "bench-model") as path:
        for concurrency in CONCURRENCY:
            total = max(100, concurrency * (8 if quick else 20))
            out[concurrency] = round((await run(path.stream, total, concurrency, warmup=5)).throughput, 1)
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    upstream = procs.upstream(tokens=20)
    try:
        results: dict[str, Any] = {"direct_streams_per_s": await direct(upstream.port, args.quick)}
        for mode, coalesce, batch in (
            ("on, batched", True, True),
            ("on", True, False),
            ("off", False, False),
        ):
            results[mode] = await measure(upstream.port, coalesce, batch, args.quick)
    finally:
        upstream.stop()
    texts = {row.pop("text") for mode in ("on, batched", "on", "off") for row in results[mode].values()}
    results["same_text_on_and_off"] = len(texts) == 1
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
