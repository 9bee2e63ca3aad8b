"""The `[upstream]` transports (h1, aiohttp, httpx), through the gateway's own HTTP layer.

A loopback aiohttp server runs in a child process (so it does not share the client's event loop);
the client sends small JSON POSTs through `provider_gateway.http.Upstream` at concurrency 1 and
100 and reports p50/p99 latency, throughput and the connection reuse ratio the pool counted.

    .venv/bin/python benchmarks/http_transport.py [--requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import platform
import statistics
import time
from importlib import metadata

from aiohttp import web

from provider_gateway.http import Upstream, UpstreamPool

BODY = b'{"id":"chatcmpl-1","choices":[{"index":0,"message":{"role":"assistant","content":"hi"}}]}'


def _serve(port_queue: multiprocessing.Queue[int]) -> None:
    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=BODY, content_type="application/json")

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        port_queue.put(runner.addresses[0][1])
        await asyncio.Event().wait()

    asyncio.run(main())


async def run(url: str, transport: str, concurrency: int, total: int) -> dict[str, float]:
    pool = UpstreamPool(transport=transport)
    upstream = Upstream(pool.host(url), url, "bench", headers={"authorization": "Bearer x"})
    payload = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
    for _ in range(min(concurrency, 20)):  # warm up
        await upstream.request_json("POST", "/v1/chat/completions", json=payload)
    latencies: list[float] = []
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            start = time.perf_counter()
            await upstream.request_json("POST", "/v1/chat/completions", json=payload)
            latencies.append(time.perf_counter() - start)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    stats = pool.stats()[url]
    await pool.aclose()
    latencies.sort()
    return {
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "rps": len(latencies) / elapsed,
        "reuse": stats.reuse_ratio,
        "connections": stats.connections,
        "requests": stats.requests,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    ports: multiprocessing.Queue[int] = multiprocessing.Queue()
    server = multiprocessing.Process(target=_serve, args=(ports,), daemon=True)
    server.start()
    url = f"http://127.0.0.1:{ports.get(timeout=30)}"
    versions = ", ".join(f"{p} {metadata.version(p)}" for p in ("httpx", "httpcore", "aiohttp"))
    print(
        f"# {platform.python_version()} on {platform.machine()}, {multiprocessing.cpu_count()} CPUs; {versions}"
    )
    print("| transport | concurrency | p50 ms | p99 ms | req/s | connections / requests | reuse |")
    print("|---|---|---|---|---|---|---|")
    try:
        for concurrency in (1, 100):
            for transport in ("httpx", "aiohttp", "h1"):
                r = asyncio.run(run(url, transport, concurrency, args.requests))
                print(
                    f"| {transport} | {concurrency} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['rps']:.0f} | "
                    f"{r['connections']:.0f} / {r['requests']:.0f} | {r['reuse']:.3f} |",
                    flush=True,
                )
    finally:
        server.terminate()


if __name__ == "__main__":
    main()
