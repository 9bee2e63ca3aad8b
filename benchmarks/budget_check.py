"""What the budget check adds per request (issue 16.4; target <= 0.1 ms at p50 with Redis on loopback).

Builds the gateway's own auth interceptor from a config (no server started), then times, per
request, the check before dispatch (`Budgets.admit`: the worst case priced from the router's plan,
then one atomic Lua call over every meter of the key and its team) and the settlement after it
(`Budgets.settle`: one forced Lua call), each alone, sequentially, on one event loop:

  none       a key without limits (the floor: what the interceptor does for every key)
  quotas     requests_per_minute and tokens_per_minute (two GCRA meters)
  budgets    rpm/tpm plus money and token budgets of the key and its team (9 meters in one call)
  PING alone a bare Redis PING on the same connection: the floor of any check kept in Redis

Each row runs against the in-process meters and against a redis-server started on 127.0.0.1.
Usage: .venv/bin/python benchmarks/budget_check.py [--requests 2000]   (prints a Markdown table)
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import time
import tomllib
from typing import Any

from provider_gateway import config as config_module
from provider_gateway.server.app import GatewayServer
from provider_gateway.server.auth import AuthInterceptor, hash_key
from provider_gateway.server.budgets import Outcome
from provider_gateway.v1 import provider_service_pb2 as pb

KEYS = {
    "none": "",
    "quotas": "requests_per_minute = 100000000\ntokens_per_minute = 100000000000",
    "budgets": (
        'requests_per_minute = 100000000\ntokens_per_minute = 100000000000\nteam = "t"\n'
        "usd_micros_per_day = 100000000000000\nusd_micros_per_month = 100000000000000\n"
        "tokens_per_hour = 100000000000000\ntokens_per_day = 100000000000000"
    ),
}
TEAM = (
    '[[auth.teams]]\nname = "t"\nusd_micros_per_month = 100000000000000\ntokens_per_day = 100000000000000\n'
)


def config_text(redis_url: str) -> str:
    text = '[prices.mock."echo"]\ninput = 2.0\noutput = 5.0\n' + TEAM
    if redis_url:
        text += f'[redis]\nurl = "{redis_url}"\nprefix = "bench{time.monotonic_ns()}:"\n'
    for name, limits in KEYS.items():
        text += f'[[auth.keys]]\nname = "{name}"\nsha256 = "{hash_key(name * 30)}"\n{limits}\n'
    return text


def start_redis() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (scripts/setup.d/redis.sh installs it)")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.02)
    return process, f"redis://127.0.0.1:{port}/0"


async def measure(interceptor: AuthInterceptor, key: str, requests: int) -> tuple[list[float], list[float]]:
    principal = next(p for p in interceptor.config.keys if p.name == key)
    request = pb.ChatRequest(
        model="mock/echo",
        max_tokens=64,
        messages=[pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text="a short question " * 8)])],
    )
    answer = pb.ChatResponse(usage=pb.Usage(input_tokens=40, output_tokens=20))
    admits, settles = [], []
    for i in range(requests + requests // 10):  # the first tenth warms up and is dropped
        started = time.perf_counter_ns()
        ticket = await interceptor.quotas.admit(principal, request, "Chat")
        admitted = time.perf_counter_ns()
        outcome = Outcome()
        outcome.see(answer)
        await interceptor.quotas.settle(ticket, outcome)
        settled = time.perf_counter_ns()
        if i >= requests // 10:
            admits.append((admitted - started) / 1e3)
            settles.append((settled - admitted) / 1e3)
    return admits, settles


async def round_trips(store: Any, requests: int) -> list[float]:
    times = []
    for _ in range(requests):
        started = time.perf_counter_ns()
        await store._client.ping()
        times.append((time.perf_counter_ns() - started) / 1e3)
    return times


def row(store: str, key: str, admits: list[float], settles: list[float]) -> str:
    def p(values: list[float], q: int) -> str:
        return f"{statistics.quantiles(values, n=100)[q - 1]:.1f}"

    return (
        f"| {store} | {key} | {statistics.median(admits):.1f} | {p(admits, 99)} "
        f"| {statistics.median(settles):.1f} | {p(settles, 99)} |"
    )


async def main(requests: int) -> None:
    redis, url = start_redis()
    try:
        print("| meters | key | check p50 µs | check p99 µs | settle p50 µs | settle p99 µs |")
        print("| --- | --- | --- | --- | --- | --- |")
        for store, redis_url in (("memory", ""), ("redis", url)):
            config = config_module.parse(tomllib.loads(config_text(redis_url)), "bench.toml")
            server = GatewayServer(config)
            interceptor = server.auth[0]
            for key in KEYS:
                admits, settles = await measure(interceptor, key, requests)
                print(row(store, key, admits, settles), flush=True)
            if redis_url:  # the floor: one bare round trip on the same connection pool
                pings = await round_trips(server.counters, requests)
                print(row(store, "PING alone", pings, pings), flush=True)
            await server.router.aclose()
    finally:
        redis.terminate()
        redis.wait(10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    args: Any = parser.parse_args()
    asyncio.run(main(args.requests))
