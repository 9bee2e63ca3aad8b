"""Calls lost while a gateway drains: what callers see when a replica gets SIGTERM under load.

    .venv/bin/python benchmarks/drain_race.py [--runs 3] [--callers 20] [--delay 2]

Two set-ups, each `--runs` times, every process on 127.0.0.1 (mock provider, unary Chat in a loop):
- `one replica, plain channel`: callers on one gateway, no health checking, `drain_delay_s = 0`.
  Calls that reach it as it stops taking calls are ended CANCELLED by grpc core
  (grpc/grpc#41785); after the stop every call is UNAVAILABLE (nobody is left to answer).
- `three replicas, health checking, drain_delay_s = 0 / --delay`: callers on a round-robin channel
  with `healthCheckConfig` over three gateways; one of them drains. Any failure counts.
Prints the statuses per run (benchmarks/RESULTS.md, "Drain under load").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections import Counter
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import procs
from provider_gateway.v1 import provider_service_pb2 as pb
from provider_gateway.v1 import provider_service_pb2_grpc as pb_grpc

SERVICE = "provider_gateway.v1.ProviderService"
CONFIG = """
[server]
grace_period_s = 5
drain_delay_s = {delay}

[providers.mock]
kind = "mock"
"""
HEALTH_CHECKED = json.dumps(
    {"loadBalancingConfig": [{"round_robin": {}}], "healthCheckConfig": {"serviceName": SERVICE}}
)
REQUEST = pb.ChatRequest(
    model="mock/echo", messages=[pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text="hi")])]
)
LOAD_S = 0.5  # of calls on every replica before the SIGTERM


async def drain_under_load(
    replicas: list[procs.Proc], callers: int, options: list[tuple[str, str]]
) -> Counter[str]:
    """SIGTERM the last replica while `callers` call in a loop; the statuses until it has exited."""
    target = "ipv4:" + ",".join(f"127.0.0.1:{r.port}" for r in replicas)
    leaving = replicas[-1].popen
    statuses: Counter[str] = Counter()
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        stub = pb_grpc.ProviderServiceStub(channel)

        async def caller() -> None:
            while leaving.poll() is None:
                try:
                    await stub.Chat(REQUEST, timeout=10)
                    statuses["OK"] += 1
                except grpc.aio.AioRpcError as error:
                    statuses[error.code().name] += 1
                    await asyncio.sleep(0.01)  # a replica that is gone refuses at once

        tasks = [asyncio.create_task(caller()) for _ in range(callers)]
        await asyncio.sleep(LOAD_S)
        leaving.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            await asyncio.gather(*tasks)
    return statuses


async def run(count: int, delay: float, callers: int, options: list[tuple[str, str]]) -> Counter[str]:
    replicas = [procs.gateway(CONFIG.format(delay=delay)) for _ in range(count)]
    try:
        return await drain_under_load(replicas, callers, options)
    finally:
        for replica in replicas:
            replica.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--callers", type=int, default=20)
    parser.add_argument("--delay", type=float, default=2.0, help="drain_delay_s of the third set-up")
    args = parser.parse_args()
    checked = [("grpc.service_config", HEALTH_CHECKED)]
    setups = (
        ("one replica, plain channel, drain_delay_s = 0", 1, 0.0, []),
        ("three replicas, health checking, drain_delay_s = 0", 3, 0.0, checked),
        (f"three replicas, health checking, drain_delay_s = {args.delay:g}", 3, args.delay, checked),
    )
    for name, count, delay, options in setups:
        for n in range(args.runs):
            statuses = await run(count, delay, args.callers, options)
            print(f"{name}, run {n + 1}: {dict(sorted(statuses.items()))}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
