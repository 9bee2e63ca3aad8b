"""What `[redis]` costs a call end to end, with the shared holds read per call or kept in-process
(issues 15 and 16; docs/configuration.md, `[redis] holds_refresh_ms`).

Three gateways of this checkout (`provider-gateway serve`, as benchmarks/run.py starts them) in front
of the OpenAI fake upstream of benchmarks/fake_openai.py, with the keys of budget_check.py:

  in-process    no `[redis]`: every count in the gateway's memory
  refresh 0     `[redis]` with `holds_refresh_ms = 0`: the breaker ejections and provider rate-limit
                holds read from Redis before every call's first attempt (what every call did before
                the view)
  refresh 100   `[redis]` as configured by default: the holds answered from the in-process view,
                read again in the background at most every 100 ms

all on one redis-server of the benchmark's own on 127.0.0.1. Unary Chat calls one at a time, every
round one call per gateway in a new random order, `PAUSE_S` before each (so that a budget's
settlement, off the answer's path, is not paid by the next call); the first `WARM_UP` rounds are
not counted. Printed per key: each gateway's p50 and what `[redis]` adds over the in-process one.
Usage: .venv/bin/python benchmarks/redis_holds.py [--rounds 1500] [none] [quotas] [budgets]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from pathlib import Path

import grpc

from provider_gateway.v1 import provider_service_pb2_grpc as pb_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
import budget_check

from harness import procs

PAUSE_S = 0.002
WARM_UP = 200
GATEWAYS = {"in-process": None, "refresh 0": "holds_refresh_ms = 0\n", "refresh 100": ""}


def config(redis_url: str, upstream_port: int, redis_extra: str | None) -> str:
    if redis_extra is None:
        return budget_check.config_text("", upstream_port)
    text = budget_check.config_text(redis_url, upstream_port)
    return text.replace("timeout_ms = 10000\n", "timeout_ms = 10000\n" + redis_extra, 1)


async def measure(rounds: int, keys: list[str]) -> None:
    redis, url = budget_check.start_redis()
    upstream = procs.upstream(tokens=20)
    started: list[tuple[procs.Proc, grpc.aio.Channel]] = []
    try:
        stubs = {}
        for label, extra in GATEWAYS.items():
            gateway = procs.gateway(config(url, upstream.port, extra), {"BENCH_OPENAI_KEY": "sk-bench"})
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}")
            started.append((gateway, channel))
            stubs[label] = pb_grpc.ProviderServiceStub(channel)
        request = budget_check.chat_request("openai/bench-model")
        print(
            "| key | " + " | ".join(f"{g} p50 µs" for g in GATEWAYS) + " | added: refresh 0 | refresh 100 |"
        )
        print("| --- " * (len(GATEWAYS) + 3) + "|")
        for key in keys:
            metadata = (("authorization", f"Bearer {key * 30}"),)
            took: dict[str, list[float]] = {label: [] for label in GATEWAYS}
            order = list(GATEWAYS)
            for i in range(rounds + WARM_UP):
                random.shuffle(order)
                for label in order:
                    await asyncio.sleep(PAUSE_S)
                    began = time.perf_counter_ns()
                    await stubs[label].Chat(request, metadata=metadata, timeout=10)
                    if i >= WARM_UP:
                        took[label].append((time.perf_counter_ns() - began) / 1e3)
            p50 = {label: round(statistics.median(values)) for label, values in took.items()}
            base = p50["in-process"]
            cells = [str(p50[label]) for label in GATEWAYS]
            cells += [str(p50["refresh 0"] - base), str(p50["refresh 100"] - base)]
            print(f"| {key} | " + " | ".join(cells) + " |", flush=True)
    finally:
        for gateway, channel in started:
            await channel.close()
            gateway.stop()
        upstream.stop()
        redis.terminate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1300)
    parser.add_argument("keys", nargs="*", default=["none", "quotas", "budgets"])
    args = parser.parse_args()
    asyncio.run(measure(args.rounds, args.keys))


if __name__ == "__main__":
    main()
