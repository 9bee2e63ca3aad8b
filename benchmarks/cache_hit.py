"""What a cache hit costs against a miss ([cache], docs/caching.md), seen by a gRPC client.

One gateway in this process (mock provider, which answers at once: a miss here is the gateway's own
path, without the seconds a real provider adds), one client on loopback, calls one after another.
Rounds alternate the modes so that the shared machine's drift falls on all of them alike:

- off: the cache disabled (the gateway as it is without [cache]);
- miss: the cache on, every request new (looked up, sent upstream, its answer stored);
- hit: the cache on, the same request again (answered from memory).

Printed per RPC (Chat, ChatStream): median and p99 latency over all rounds, and the process's CPU
time per call (client and server together, gRPC's threads included), µs.

    .venv/bin/python benchmarks/cache_hit.py [--calls 500 --rounds 6]  (under the shared benchmark lock)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import tomllib
from collections.abc import Awaitable, Callable

import grpc

from provider_gateway import config as config_module
from provider_gateway.server.app import GatewayServer
from provider_gateway.server.event_loop import eager_asyncio_loop
from provider_gateway.v1 import provider_service_pb2 as pb
from provider_gateway.v1 import provider_service_pb2_grpc as pb_grpc

CACHE_ON = "[cache]\nenabled = true\nmax_entries = 100000\nmax_bytes = 268435456\n"
PROMPT = "Summarise the plot of a short story about a lighthouse keeper in three sentences."


def request(text: str) -> pb.ChatRequest:
    return pb.ChatRequest(
        model="mock/echo",
        max_tokens=64,
        temperature=0.2,
        messages=[pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text=text)])],
    )


async def started(config_text: str) -> tuple[GatewayServer, grpc.aio.Channel]:
    server = GatewayServer(config_module.parse(tomllib.loads(config_text), "bench.toml"))
    await server.start("127.0.0.1", 0)
    return server, grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")


async def timed(
    call: Callable[[pb.ChatRequest], Awaitable[object]], requests: list[pb.ChatRequest]
) -> tuple[list[float], float]:
    """Each call's latency and the process CPU time of them all, µs."""
    latencies = []
    cpu = time.process_time_ns()
    for each in requests:
        began = time.perf_counter_ns()
        await call(each)
        latencies.append((time.perf_counter_ns() - began) / 1000)
    return latencies, (time.process_time_ns() - cpu) / 1000


def calls(stub: pb_grpc.ProviderServiceStub) -> dict[str, Callable[[pb.ChatRequest], Awaitable[object]]]:
    async def stream(each: pb.ChatRequest) -> object:
        return [event async for event in stub.ChatStream(each)]

    return {"Chat": stub.Chat, "ChatStream": stream}


async def measure(calls_per_round: int, rounds: int) -> dict[tuple[str, str], tuple[list[float], float]]:
    off_server, off_channel = await started("")
    on_server, on_channel = await started(CACHE_ON)
    results: dict[tuple[str, str], tuple[list[float], float]] = {}
    try:
        off, on = (
            calls(pb_grpc.ProviderServiceStub(off_channel)),
            calls(pb_grpc.ProviderServiceStub(on_channel)),
        )
        for rpc in on:
            await on[rpc](request(PROMPT))  # the entry the hits read
        for round_ in range(rounds):
            fresh = [request(f"{PROMPT} ({rpc}, round {round_}, call {i})") for i in range(calls_per_round)]
            same = [request(PROMPT)] * calls_per_round
            for rpc in on:
                await timed(off[rpc], same[:50])  # warm both servers' paths for this RPC
                for mode, call, requests in (
                    ("off", off[rpc], same),
                    ("miss", on[rpc], fresh),
                    ("hit", on[rpc], same),
                ):
                    latencies, cpu = await timed(call, requests)
                    before = results.get((rpc, mode), ([], 0.0))
                    results[rpc, mode] = (before[0] + latencies, before[1] + cpu)
        if (cache := on_server.cache) is not None:
            print(f"entries stored: {len(cache.store)}, {cache.store.bytes} bytes")
    finally:
        for server, channel in ((off_server, off_channel), (on_server, on_channel)):
            await channel.close()
            await server.stop(0)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500, help="calls per mode and RPC in each round")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=eager_asyncio_loop) as runner:
        results = runner.run(measure(args.calls, args.rounds))
    print("| rpc | mode | calls | median µs | p99 µs | CPU µs a call |")
    print("| --- | --- | --- | --- | --- | --- |")
    for (rpc, mode), (latencies, cpu) in results.items():
        p99 = statistics.quantiles(latencies, n=100)[98]
        median = statistics.median(latencies)
        print(
            f"| {rpc} | {mode} | {len(latencies)} | {median:.0f} | {p99:.0f} | {cpu / len(latencies):.0f} |"
        )


if __name__ == "__main__":
    main()
