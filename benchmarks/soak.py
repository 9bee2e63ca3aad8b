"""Soak: many requests of every shape against one gateway, then look for leaks.

Loopback only, mock provider only, bounded in count and time; it stops by itself. The gateway and
the load run in this one process and event loop, so that the figures (asyncio tasks, file
descriptors, TCP connections, RSS) can be read directly; at the end the load is idle, so what is
left is the gateway's.

    .venv/bin/python benchmarks/soak.py --requests 100000 --concurrency 64

The mix: unary chats, full streams, streams the client cancels after the first token, calls whose
deadline passes before the first token, and injected upstream faults (error before the first
token, error mid-stream, rate limit). Each kind has the statuses it may end with; anything else is
counted as unexpected, and the run fails if there is any.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import os
import random
import resource
import sys
import time
import tomllib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from provider_gateway import config as config_module
from provider_gateway.server.app import GatewayServer
from provider_gateway.v1 import provider_service_pb2 as pb
from provider_gateway.v1 import provider_service_pb2_grpc as pb_grpc

CONFIG = """
[server]
grace_period_s = 5

[providers.mock.models.fast]
tokens = 8

[providers.mock.models.drip]
tokens = 200
token_delay_ms = 2

[providers.mock.models.late]
tokens = 4
first_token_delay_ms = 400

[providers.mock.models.broken]
fault = "error_before_first_token"
fault_status = "UNAVAILABLE"

[providers.mock.models.midway]
tokens = 10
fault = "error_after_tokens"
fault_after_tokens = 3
fault_status = "INTERNAL"

[providers.mock.models.limited]
fault = "rate_limit"
retry_after_ms = 250
"""

SOAK_KEY = "soak-key-0123456789abcdefghijklmnopqrstuvwxyz"
# With --auth every call goes through the auth interceptor with quotas and a stream cap set high
# enough never to refuse, so the run measures their bookkeeping, not their refusals.
AUTH = f"""
[[auth.keys]]
name = "soak"
sha256 = "{hashlib.sha256(SOAK_KEY.encode()).hexdigest()}"
models = ["mock/*"]
requests_per_minute = 100000000
tokens_per_minute = 1000000000
max_concurrent_streams = 100000
"""
OK = grpc.StatusCode.OK
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE  # also what an open circuit breaker answers
# kind -> (share of requests, statuses it may end with)
MIX: dict[str, tuple[float, frozenset[grpc.StatusCode]]] = {
    "unary": (0.35, frozenset({OK})),
    "stream": (0.30, frozenset({OK})),
    "cancel": (0.10, frozenset({grpc.StatusCode.CANCELLED})),
    "deadline": (0.07, frozenset({grpc.StatusCode.DEADLINE_EXCEEDED, UNAVAILABLE})),
    "fault_before": (0.06, frozenset({UNAVAILABLE})),
    "fault_midway": (0.06, frozenset({grpc.StatusCode.INTERNAL, UNAVAILABLE})),
    "rate_limited": (0.06, frozenset({grpc.StatusCode.RESOURCE_EXHAUSTED, UNAVAILABLE})),
}


def chat(model: str) -> pb.ChatRequest:
    return pb.ChatRequest(
        model=f"mock/{model}", messages=[pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text="soak")])]
    )


REQUESTS = {
    "unary": chat("fast"),
    "stream": chat("fast"),
    "cancel": chat("drip"),
    "deadline": chat("late"),
    "fault_before": chat("broken"),
    "fault_midway": chat("midway"),
    "rate_limited": chat("limited"),
}


async def run_one(
    stub: pb_grpc.ProviderServiceStub, kind: str, metadata: tuple[tuple[str, str], ...]
) -> grpc.StatusCode:
    request = REQUESTS[kind]
    try:
        if kind in ("unary", "rate_limited"):
            await stub.Chat(request, timeout=10, metadata=metadata)
        elif kind == "deadline":
            await stub.Chat(request, timeout=0.05, metadata=metadata)
        elif kind == "cancel":
            call = stub.ChatStream(request, timeout=10, metadata=metadata)
            await call.read()
            call.cancel()
            return await call.code()
        else:
            call = stub.ChatStream(request, timeout=10, metadata=metadata)
            async for _ in call:
                pass
    except grpc.aio.AioRpcError as error:
        return error.code()
    return OK


@dataclass
class Tally:
    outcomes: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    unexpected: int = 0
    done: int = 0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def snapshot(port: int) -> dict[str, float]:
    gc.collect()
    fds = os.listdir("/proc/self/fd")
    established = 0
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        if Path(table).exists():
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                local, remote, state = parts[1], parts[2], parts[3]
                ports = {int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16)}
                if state == "01" and port in ports:  # 01 = ESTABLISHED
                    established += 1
    rss_kb = 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])
    return {
        "rss_mb": round(rss_kb / 1024, 1),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "tasks": len(asyncio.all_tasks()) - 1,  # minus the task taking the snapshot
        "fds": len(fds),
        "tcp_established": established,
    }


async def soak(
    total: int, concurrency: int, max_seconds: float, channels: int, seed: int, auth: bool
) -> dict[str, object]:
    config = config_module.parse(tomllib.loads(CONFIG + (AUTH if auth else "")), "soak.toml")
    metadata = (("authorization", f"Bearer {SOAK_KEY}"),) if auth else ()
    server = GatewayServer(config)
    port = await server.start("127.0.0.1", 0)
    mock = server.registry.get("mock")
    pool = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for _ in range(channels)]
    stubs = [pb_grpc.ProviderServiceStub(c) for c in pool]
    kinds = list(MIX)
    weights = [MIX[k][0] for k in kinds]
    rng = random.Random(seed)
    tally = Tally()
    deadline = time.monotonic() + max_seconds

    async def worker(index: int, count: int) -> None:
        for i in range(count):
            if time.monotonic() > deadline:
                return
            kind = rng.choices(kinds, weights)[0]
            started = time.perf_counter()
            code = await run_one(stubs[(index + i) % len(stubs)], kind, metadata)
            elapsed = time.perf_counter() - started
            tally.outcomes[kind][code.name] += 1
            if code not in MIX[kind][1]:
                tally.unexpected += 1
            if kind in ("unary", "stream") and code == OK:
                tally.latencies[kind].append(elapsed)
            tally.done += 1
            if tally.done % 10_000 == 0:
                print(f"{tally.done} requests, {tally.unexpected} unexpected", file=sys.stderr, flush=True)
            if tally.done % 1000 == 0 and mock is not None:
                # The mock keeps every request for tests to inspect; forget them so that the
                # memory figure is the gateway's (reported as a known mock behaviour).
                mock.stats.requests.clear()

    async def run(count: int) -> float:
        share, extra = divmod(count, concurrency)
        started = time.perf_counter()
        await asyncio.gather(*(worker(w, share + (1 if w < extra else 0)) for w in range(concurrency)))
        return time.perf_counter() - started

    warmup = min(2000, total // 10)
    await run(warmup)
    tally.__init__()  # type: ignore[misc]
    before = snapshot(port)
    elapsed = await run(total)
    # Let cancelled and timed-out handlers finish before reading what is left.
    for _ in range(200):  # at most 10 s; a task count has no event to wait on
        if len(asyncio.all_tasks()) - 1 <= before["tasks"]:
            break
        await asyncio.sleep(0.05)
    after = snapshot(port)
    for channel in pool:
        await channel.close()
    await server.stop(1)
    ms = {k: [v * 1000 for v in vs] for k, vs in tally.latencies.items()}
    return {
        "requests": tally.done,
        "seconds": round(elapsed, 1),
        "rate_per_s": round(tally.done / elapsed, 1),
        "concurrency": concurrency,
        "auth": auth,
        "channels": channels,
        "outcomes": {k: dict(v) for k, v in sorted(tally.outcomes.items())},
        "unexpected": tally.unexpected,
        "latency_ms": {
            k: {
                "p50": round(percentile(v, 0.5), 2),
                "p99": round(percentile(v, 0.99), 2),
                "max": round(max(v), 2),
            }
            for k, v in sorted(ms.items())
        },
        "before": before,
        "after": after,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--channels", type=int, default=4, help="client channels (connections)")
    parser.add_argument("--max-seconds", type=float, default=900, help="stop early after this long")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--auth", action="store_true", help="authenticate every call (auth interceptor on)")
    args = parser.parse_args()
    report = asyncio.run(
        soak(args.requests, args.concurrency, args.max_seconds, args.channels, args.seed, args.auth)
    )
    print(json.dumps(report, indent=2))
    return 1 if report["unexpected"] else 0


if __name__ == "__main__":
    sys.exit(main())
