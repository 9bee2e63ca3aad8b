"""A burst of new upstream connections under a slow resolver, per transport (a review finding, 2026-12-07).

Each transport opens `--streams` connections at once to one origin named by a host name (localhost),
while the resolver answers each lookup after `--dns-ms` (socket.getaddrinfo wrapped: the function
every transport's resolver thread calls). Printed: lookups made, and the time until every response
head has arrived (median of `--rounds`). Loopback only; mostly sleeping, little CPU.

    .venv/bin/python benchmarks/dns_burst.py  (under the shared benchmark lock)
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import threading
import time

from provider_gateway.http import Upstream, UpstreamPool
from provider_gateway.http.pool import TRANSPORTS

OK = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{"ok":true}'


class SlowResolver:
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.calls = 0
        self.lock = threading.Lock()
        self.real = socket.getaddrinfo

    def __call__(self, *args: object, **kwargs: object) -> object:
        with self.lock:
            self.calls += 1
        time.sleep(self.delay)
        return self.real(*args, **kwargs)  # type: ignore[arg-type]


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while await reader.readuntil(b"\r\n\r\n"):
            await asyncio.sleep(0.05)  # every request in the burst needs a connection of its own
            writer.write(OK)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def burst(transport: str, port: int, streams: int) -> float:
    pool = UpstreamPool(transport=transport)
    url = f"http://localhost:{port}"
    up = Upstream(pool.host(url), url, "acme")
    started = time.perf_counter()
    await asyncio.gather(*(up.request_json("GET", "/x") for _ in range(streams)))
    elapsed = time.perf_counter() - started
    await pool.aclose()
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=50)
    parser.add_argument("--dns-ms", type=float, default=50.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    resolver = SlowResolver(args.dns_ms / 1000)
    socket.getaddrinfo = resolver  # type: ignore[assignment]
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"{args.streams} concurrent first requests, resolver {args.dns_ms:g} ms a lookup")
    for transport in TRANSPORTS:
        times = []
        resolver.calls = 0
        for _ in range(args.rounds):
            times.append(await burst(transport, port, args.streams))
        lookups = resolver.calls / args.rounds
        print(
            f"  {transport:8} lookups {lookups:5.1f}   all heads in {statistics.median(times) * 1000:7.1f} ms"
        )
    await asyncio.sleep(0.2)  # the last connections' handlers see their close
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
