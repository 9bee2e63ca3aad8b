"""What the budget check adds per request (issue 16.4; target <= 0.1 ms at p50 with Redis on loopback).

Builds the gateway's own auth interceptor from a config (no server started), then times, per
request, the check before dispatch (`Budgets.admit`: the worst case priced from the router's plan,
then one atomic Lua call over every meter of the key and its team: one round trip) and the
settlement (`Budgets.settle`: one forced Lua call, which the gateway runs after the answer is sent,
so it adds nothing to the answer's latency), each alone, sequentially, on one event loop:

  none       a key without limits (the floor: what the interceptor does for every key)
  quotas     requests_per_minute and tokens_per_minute (two GCRA meters)
  budgets    rpm/tpm plus money and token budgets of the key and its team (9 meters in one call)
  PING       a bare Redis PING on the same connection pool: the floor of any check kept in Redis

In one run: the in-process meters (the baseline), then a redis-server started on 127.0.0.1, read
with hiredis (the optional extra `redis`; skipped when not installed) and with redis-py's own
parser. The table has the medians over `--runs` runs of each figure, and the check's p50 minus the
PING's and minus the in-process one.
Usage: .venv/bin/python benchmarks/budget_check.py [--requests 2000] [--runs 5]   (a Markdown table)
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

from redis.asyncio.connection import _AsyncHiredisParser, _AsyncRESP2Parser
from redis.utils import HIREDIS_AVAILABLE

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
        # A shared machine may stall a round trip past the default 250 ms, which would measure
        # the per-process fallback instead.
        text += f'[redis]\nurl = "{redis_url}"\nprefix = "bench{time.monotonic_ns()}:"\ntimeout_ms = 10000\n'
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


async def measure(
    interceptor: AuthInterceptor, key: str, requests: int, store: Any
) -> tuple[list[float], list[float], float, float]:
    """Check times, settle times (µs), and Redis's own time per script call for the checks and for
    the settlements (INFO commandstats; 0 in-process). All checks first, then their settlements:
    the limits are far out of reach, so the order changes no answer, and each is measured alone."""
    principal = next(p for p in interceptor.config.keys if p.name == key)
    request = pb.ChatRequest(
        model="mock/echo",
        max_tokens=64,
        messages=[pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text="a short question " * 8)])],
    )
    answer = pb.ChatResponse(usage=pb.Usage(input_tokens=40, output_tokens=20))
    warm_up = requests // 10  # the first tenth warms up and is dropped
    admits, settles, tickets = [], [], []
    await server_time(store)
    for _ in range(requests + warm_up):
        started = time.perf_counter_ns()
        tickets.append(await interceptor.quotas.admit(principal, request, "Chat"))
        admits.append((time.perf_counter_ns() - started) / 1e3)
    check_lua = await server_time(store)
    for ticket in tickets:
        outcome = Outcome()
        outcome.see(answer)
        started = time.perf_counter_ns()
        await interceptor.quotas.settle(ticket, outcome)
        settles.append((time.perf_counter_ns() - started) / 1e3)
    return admits[warm_up:], settles[warm_up:], check_lua, await server_time(store)


async def server_time(store: Any) -> float:
    """Redis's µs per script call since the last reading (then reset); 0 without Redis."""
    if store is None:
        return 0.0
    stats = await store._client.info("commandstats")
    await store._client.config_resetstat()
    return float(stats.get("cmdstat_evalsha", {}).get("usec_per_call", 0.0))


async def round_trips(store: Any, requests: int) -> dict[str, list[float]]:
    """Bare PINGs: through redis-py's client, and on the connections the checks use."""
    times: dict[str, list[float]] = {"PING redis-py": [], "PING direct": []}
    for _ in range(requests):
        started = time.perf_counter_ns()
        await store._client.ping()
        times["PING redis-py"].append((time.perf_counter_ns() - started) / 1e3)
        started = time.perf_counter_ns()
        await store.direct.call(b"*1\r\n$4\r\nPING\r\n")
        times["PING direct"].append((time.perf_counter_ns() - started) / 1e3)
    return times


def p50_p99(values: list[float]) -> tuple[float, float]:
    return statistics.median(values), statistics.quantiles(values, n=100)[98]


# Each store: its Redis url ("" for the in-process meters) and the reply parser redis-py uses.
STORES: dict[str, tuple[str, Any]] = {
    "memory": ("", None),
    "redis+hiredis": ("url", _AsyncHiredisParser),
    "redis+python": ("url", _AsyncRESP2Parser),
}


async def one_run(url: str, requests: int) -> dict[tuple[str, str], tuple[float, ...]]:
    """(store, key) -> check p50, check p99, settle p50, settle p99 (µs), Redis's µs per check's and
    per settlement's script; keys "PING redis-py" and "PING direct" are the floors."""
    found: dict[tuple[str, str], tuple[float, ...]] = {}
    for store, (redis_url, parser) in STORES.items():
        if parser is _AsyncHiredisParser and not HIREDIS_AVAILABLE:
            continue  # hiredis is the optional extra `redis`: uv sync --extra redis
        config = config_module.parse(tomllib.loads(config_text(url if redis_url else "")), "bench.toml")
        server = GatewayServer(config)
        counters = server.counters if parser is not None else None
        if counters is not None:  # before the pool's first connection
            counters._client.connection_pool.connection_kwargs["parser_class"] = parser
        interceptor = server.auth[0]
        for key in KEYS:
            admits, settles, check_lua, settle_lua = await measure(interceptor, key, requests, counters)
            found[store, key] = (*p50_p99(admits), *p50_p99(settles), check_lua, settle_lua)
        if counters is not None:  # the floor: one bare round trip, each way
            for name, times in (await round_trips(counters, requests)).items():
                found[store, name] = (*p50_p99(times), 0.0, 0.0, 0.0, 0.0)
        await server.router.aclose()
    return found


FLOORS = ("PING redis-py", "PING direct")


async def main(requests: int, runs: int) -> None:
    redis, url = start_redis()
    try:
        results = [await one_run(url, requests) for _ in range(runs)]
    finally:
        redis.terminate()
        redis.wait(10)

    def median(store: str, key: str, column: int) -> float:
        return statistics.median(r[store, key][column] for r in results)

    print(f"Medians of {runs} runs of {requests} requests each (after a tenth more of warm-up).\n")
    print(
        "| meters | key | check p50 µs | check p99 µs | p50 minus direct PING's | p50 minus redis-py PING's "
        "| p50 minus in-process | Redis µs per check script | settle p50 µs (off the answer's path) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for store, (redis_url, _) in STORES.items():
        if (store, "none") not in results[0]:
            continue
        for key in (*KEYS, *(FLOORS if redis_url else ())):
            p50, p99 = median(store, key, 0), median(store, key, 1)
            compared = bool(redis_url) and key in KEYS and key != "none"
            cells = ["", "", "", "", ""]
            if compared:
                cells = [
                    f"{p50 - median(store, 'PING direct', 0):.1f}",
                    f"{p50 - median(store, 'PING redis-py', 0):.1f}",
                    f"{p50 - median('memory', key, 0):.1f}",
                    f"{median(store, key, 4):.1f}",
                    f"{median(store, key, 2):.1f}",
                ]
            elif key in KEYS:
                cells[4] = f"{median(store, key, 2):.1f}"
            print(f"| {store} | {key} | {p50:.1f} | {p99:.1f} | {' | '.join(cells)} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    args: Any = parser.parse_args()
    asyncio.run(main(args.requests, args.runs))
