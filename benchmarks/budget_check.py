"""What the budget check adds per request (issue 16.4; target <= 0.1 ms at p50 with Redis on loopback).

Builds the gateway's own auth interceptor from a config (no server started), then times, per
request, the check before dispatch (`Budgets.admit`: the worst case priced from the router's plan,
then one atomic Lua call over every meter of the key and its team: one round trip) and the
settlement (`Budgets.settle`: one forced Lua call, which the gateway runs after the answer is sent,
so it adds nothing to the answer's latency), on one event loop:

  none       a key without limits (the floor: what the interceptor does for every key)
  quotas     requests_per_minute and tokens_per_minute (two GCRA meters)
  budgets    rpm/tpm plus money and token budgets of the key and its team (8 meters in one call:
             2 rates, 4 calendar budgets of the key, 2 of its team)
  PING direct    a bare PING on the connections the checks use (routing/redis_calls.py): the
                 floor of any check kept in Redis
  PING redis-py  a bare PING through redis-py's client (its pool, retry and timeout layers)

The machine these run on is shared, so its speed drifts within seconds: each request measures
every key's check and both PINGs one after the other (interleaved), so that a difference between
them is not a drift. The settlements follow, all of them (the limits are out of reach, so the order
changes no answer), then a short run per key reads Redis's own time per script (INFO commandstats).
In one run: the in-process meters (the baseline), then a redis-server started on 127.0.0.1, read
with hiredis (the optional extra `redis`; skipped when not installed) and with redis-py's own
parser. The table has the medians over `--runs` runs of each figure.
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


def chat_request() -> pb.ChatRequest:
    return pb.ChatRequest(
        model="mock/echo",
        max_tokens=64,
        messages=[pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text="a short question " * 8)])],
    )


PING = b"*1\r\n$4\r\nPING\r\n"
FLOORS = ("PING direct", "PING redis-py")


async def measure(interceptor: AuthInterceptor, requests: int, store: Any) -> dict[str, tuple[float, ...]]:
    """name -> check p50, check p99, settle p50, Redis µs per check script (µs), for every key and,
    with Redis, both PINGs; each request times every key's check and both PINGs in turn."""
    principals = {key: next(p for p in interceptor.config.keys if p.name == key) for key in KEYS}
    request = chat_request()
    warm_up = requests // 10  # the first tenth warms up and is dropped
    times: dict[str, list[float]] = {name: [] for name in (*KEYS, *(FLOORS if store else ()))}
    tickets: dict[str, list[Any]] = {key: [] for key in KEYS}
    for _ in range(requests + warm_up):
        for key, principal in principals.items():
            started = time.perf_counter_ns()
            tickets[key].append(await interceptor.quotas.admit(principal, request, "Chat"))
            times[key].append((time.perf_counter_ns() - started) / 1e3)
        if store is not None:
            started = time.perf_counter_ns()
            await store.direct.call(PING)
            times["PING direct"].append((time.perf_counter_ns() - started) / 1e3)
            started = time.perf_counter_ns()
            await store._client.ping()
            times["PING redis-py"].append((time.perf_counter_ns() - started) / 1e3)
    answer = pb.ChatResponse(usage=pb.Usage(input_tokens=40, output_tokens=20))
    found = {}
    for name, values in times.items():
        settles = []
        for ticket in tickets.get(name, ()):
            outcome = Outcome()
            outcome.see(answer)
            started = time.perf_counter_ns()
            await interceptor.quotas.settle(ticket, outcome)
            settles.append((time.perf_counter_ns() - started) / 1e3)
        lua = await server_time(store, interceptor, principals.get(name)) if name in KEYS else 0.0
        settle = statistics.median(settles[warm_up:]) if settles else 0.0
        found[name] = (*p50_p99(values[warm_up:]), settle, lua)
    return found


async def server_time(store: Any, interceptor: AuthInterceptor, principal: Any) -> float:
    """Redis's own µs per check script of `principal` (INFO commandstats); 0 without Redis."""
    if store is None:
        return 0.0
    await store._client.config_resetstat()
    for _ in range(300):
        await interceptor.quotas.admit(principal, chat_request(), "Chat")
    stats = await store._client.info("commandstats")
    return float(stats.get("cmdstat_evalsha", {}).get("usec_per_call", 0.0))


def p50_p99(values: list[float]) -> tuple[float, float]:
    return statistics.median(values), statistics.quantiles(values, n=100)[98]


# Each store: its Redis url ("" for the in-process meters) and the reply parser redis-py uses.
STORES: dict[str, tuple[str, Any]] = {
    "memory": ("", None),
    "redis+hiredis": ("url", _AsyncHiredisParser),
    "redis+python": ("url", _AsyncRESP2Parser),
}


async def one_run(url: str, requests: int) -> dict[tuple[str, str], tuple[float, ...]]:
    found: dict[tuple[str, str], tuple[float, ...]] = {}
    for store, (redis_url, parser) in STORES.items():
        if parser is _AsyncHiredisParser and not HIREDIS_AVAILABLE:
            continue  # hiredis is the optional extra `redis`: uv sync --extra redis
        config = config_module.parse(tomllib.loads(config_text(url if redis_url else "")), "bench.toml")
        server = GatewayServer(config)
        counters = server.counters if parser is not None else None
        if counters is not None:  # before the pool's first connection
            counters._client.connection_pool.connection_kwargs["parser_class"] = parser
        for name, figures in (await measure(server.auth[0], requests, counters)).items():
            found[store, name] = figures
        await server.router.aclose()
    return found


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
            cells = ["", "", "", "", ""]
            if key in KEYS:
                cells[4] = f"{median(store, key, 2):.1f}"
            if redis_url and key in KEYS and key != "none":
                cells[:4] = [
                    f"{p50 - median(store, 'PING direct', 0):.1f}",
                    f"{p50 - median(store, 'PING redis-py', 0):.1f}",
                    f"{p50 - median('memory', key, 0):.1f}",
                    f"{median(store, key, 3):.1f}",
                ]
            print(f"| {store} | {key} | {p50:.1f} | {p99:.1f} | {' | '.join(cells)} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    args: Any = parser.parse_args()
    asyncio.run(main(args.requests, args.runs))
