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
parser, every check a round trip (`[auth] budget_lease_ms = 0`), then with budget leases (the
default: routing/leases.py; most checks then take from a lease in process, and the settlements,
all made after the checks, may find their leases expired). The table has the medians over
`--runs` runs of each figure.
End to end (what a request waits for): a real gateway (`provider-gateway serve`, as
benchmarks/run.py starts it) in front of the OpenAI fake upstream of benchmarks/fake_openai.py,
with the same keys and a redis-server of its own on 127.0.0.1, answers unary Chat calls sent one at
a time, key after key (in a new random order every round, with a pause of `PAUSE_S` after each call
so that its settlement, off the answer's path, is not paid by the next call). "Added" is a key's p50 minus the
unlimited key's p50 in the same run: what its check and settlement cost the request, round trip
included, where the gateway overlaps the check with the request's own work (routing/admission.py).
Two gateways of this checkout run side by side, "leases on" (the default) and "leases off"
(`budget_lease_ms = 0`), their calls interleaved round by round. `--before DIR` starts a third
from another checkout's `service` folder (put first on its PYTHONPATH), interleaved too.
Usage: .venv/bin/python benchmarks/budget_check.py [--requests 1500] [--runs 5] [--calls 300]
       [--before DIR]   (Markdown tables; under two minutes with --before)
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import socket
import statistics
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import grpc
from redis.asyncio.connection import _AsyncHiredisParser, _AsyncRESP2Parser
from redis.utils import HIREDIS_AVAILABLE

from provider_gateway import config as config_module
from provider_gateway.server.app import GatewayServer
from provider_gateway.server.auth import AuthInterceptor, hash_key
from provider_gateway.server.budgets import Outcome
from provider_gateway.v1 import provider_service_pb2 as pb
from provider_gateway.v1 import provider_service_pb2_grpc as pb_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import procs

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


LEASE_REQUESTS = 0  # --lease-requests: [auth] budget_lease_requests (0: the default)
PAUSE_S = 0.002  # before each end-to-end call: the previous call's settlement has ended by then
UPSTREAM = """
[server]
default_provider = "openai"

[providers.openai]
kind = "openai"
base_url = "http://127.0.0.1:{port}/v1"
api_key_env = "BENCH_OPENAI_KEY"

[prices.openai."bench-model"]
input = 2.0
output = 5.0
"""


def config_text(redis_url: str, upstream_port: int = 0, lease_ms: int | None = None) -> str:
    """The keys and team, with Redis at `redis_url` ("": in-process meters); the mock priced, or
    with `upstream_port` the OpenAI fake upstream there priced and the default provider.
    `lease_ms`: `[auth] budget_lease_ms` (None: the default, or a checkout without leases)."""
    text = (
        UPSTREAM.format(port=upstream_port)
        if upstream_port
        else '[prices.mock."echo"]\ninput = 2.0\noutput = 5.0\n'
    )
    if lease_ms is not None:
        text += f"[auth]\nbudget_lease_ms = {lease_ms}\n"
        if LEASE_REQUESTS:
            text += f"budget_lease_requests = {LEASE_REQUESTS}\n"
    text += TEAM
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


def chat_request(model: str = "mock/echo") -> pb.ChatRequest:
    return pb.ChatRequest(
        model=model,
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


# Each store: its Redis url ("" for the in-process meters), the reply parser redis-py uses, and
# `[auth] budget_lease_ms` (0: every check a round trip; the leased rows take most from leases).
BEST_PARSER = _AsyncHiredisParser if HIREDIS_AVAILABLE else _AsyncRESP2Parser
STORES: dict[str, tuple[str, Any, int]] = {
    "memory": ("", None, 0),
    "redis+hiredis": ("url", _AsyncHiredisParser, 0),
    "redis+python": ("url", _AsyncRESP2Parser, 0),
    "redis, leases": ("url", BEST_PARSER, 1000),
}


async def one_run(url: str, requests: int) -> dict[tuple[str, str], tuple[float, ...]]:
    found: dict[tuple[str, str], tuple[float, ...]] = {}
    for store, (redis_url, parser, lease_ms) in STORES.items():
        if parser is _AsyncHiredisParser and not HIREDIS_AVAILABLE:
            continue  # hiredis is the optional extra `redis`: uv sync --extra redis
        text = config_text(url if redis_url else "", lease_ms=lease_ms)
        config = config_module.parse(tomllib.loads(text), "bench.toml")
        server = GatewayServer(config)
        counters = server.counters if parser is not None else None
        if counters is not None:  # before the pool's first connection
            counters._client.connection_pool.connection_kwargs["parser_class"] = parser
        for name, figures in (await measure(server.auth[0], requests, counters)).items():
            found[store, name] = figures
        await server.auth[0].quotas.aclose()  # leases returned before Redis closes
        await server.router.aclose()
    return found


async def end_to_end(url: str, calls: int, runs: int, before: str) -> list[dict[tuple[str, str], float]]:
    """Per run, (gateway, key) -> p50 µs of a unary Chat through a real gateway; the gateways (this
    checkout's with leases and without, and `before`'s when given) and their keys interleaved
    call by call."""
    upstream = procs.upstream(tokens=20)
    sources: dict[str, tuple[str, int | None]] = {"before": (before, None)} if before else {}
    sources |= {"leases on": ("", 1000), "leases off": ("", 0)}
    started: list[procs.Proc] = []
    channels: list[grpc.aio.Channel] = []
    try:
        stubs = {}
        for label, (service, lease_ms) in sources.items():
            env = {"BENCH_OPENAI_KEY": "sk-bench", **({"PYTHONPATH": service} if service else {})}
            started.append(procs.gateway(config_text(url, upstream.port, lease_ms), env))
            channels.append(grpc.aio.insecure_channel(f"127.0.0.1:{started[-1].port}"))
            stubs[label] = pb_grpc.ProviderServiceStub(channels[-1])
        request = chat_request("openai/bench-model")
        keys = {key: (("authorization", f"Bearer {key * 30}"),) for key in KEYS}
        pairs = [(label, key) for label in stubs for key in keys]
        order = list(pairs)

        shuffle = random.Random(16).shuffle

        async def one_round(times: dict[tuple[str, str], list[float]]) -> None:
            shuffle(order)
            for label, key in order:
                await asyncio.sleep(PAUSE_S)
                started_ns = time.perf_counter_ns()
                await stubs[label].Chat(request, metadata=keys[key], timeout=10)
                times[label, key].append((time.perf_counter_ns() - started_ns) / 1e3)

        warm_up: dict[tuple[str, str], list[float]] = {pair: [] for pair in pairs}
        for _ in range(max(calls // 5, 20)):  # connections, caches, the checks' kept commands
            await one_round(warm_up)
        found = []
        for _ in range(runs):
            times: dict[tuple[str, str], list[float]] = {pair: [] for pair in pairs}
            for _call in range(calls):
                await one_round(times)
            medians = {pair: statistics.median(values) for pair, values in times.items()}
            for label, key in pairs:  # each round's call minus its none call (drift cancels)
                none = times[label, "none"]
                paired = [t - n for t, n in zip(times[label, key], none, strict=True)]
                medians[label, f"{key} paired"] = statistics.median(paired)
            found.append(medians)
        return found
    finally:
        for channel in channels:
            await channel.close()
        for proc in (*started, upstream):
            proc.stop()


def print_end_to_end(found: list[dict[tuple[str, str], float]], calls: int) -> None:
    """The p50s and what each key adds; "paired": the median of a key's call minus the none
    key's call of the same round, the same gateway (a second reading, less moved by drift)."""
    print("\nEnd to end: unary Chat through `provider-gateway serve` to benchmarks/fake_openai.py, Redis on")
    print(
        f"127.0.0.1; medians of {len(found)} runs of {calls} calls per key (after a fifth more of warm-up).\n"
    )
    print(
        "| gateway | key | Chat p50 µs | added p50 µs (minus the none key's, same run) | added, each run "
        "| added, paired |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for label, key in found[0]:
        if key.endswith("paired"):
            continue
        p50 = statistics.median(run[label, key] for run in found)
        cells = ["", "", ""]
        if key != "none":
            added = [run[label, key] - run[label, "none"] for run in found]
            paired = statistics.median(run[label, f"{key} paired"] for run in found)
            cells = [
                f"{statistics.median(added):.1f}",
                " / ".join(f"{a:.0f}" for a in added),
                f"{paired:.1f}",
            ]
        print(f"| {label} | {key} | {p50:.1f} | {' | '.join(cells)} |")


async def main(requests: int, runs: int, calls: int, before: str) -> None:
    redis, url = start_redis()
    try:
        results = [await one_run(url, requests) for _ in range(runs)]
        whole = await end_to_end(url, calls, runs, before) if calls else []
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
    for store, (redis_url, _, _) in STORES.items():
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
    if whole:
        print_end_to_end(whole, calls)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1500, help="per run, the isolated checks")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--calls", type=int, default=300, help="per key and run, end to end (0: none)")
    parser.add_argument("--before", default="", help="another checkout's service folder, end to end")
    parser.add_argument("--lease-requests", type=int, default=0, help="[auth] budget_lease_requests")
    args: Any = parser.parse_args()
    LEASE_REQUESTS = args.lease_requests
    asyncio.run(main(args.requests, args.runs, args.calls, args.before))
