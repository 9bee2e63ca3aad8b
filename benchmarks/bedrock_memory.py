"""Memory held by the Bedrock provider, and the event loop's longest stall during its first call.

Runs the fake Bedrock endpoint in its own process, then measures in fresh processes (one for RSS,
one for tracemalloc, since tracing inflates RSS) after each phase:

  baseline        provider_gateway's core, grpc and the shared HTTP pool (httpx, aiohttp) imported
  import          the Bedrock adapter imported (signer, frame decoder, codec)
  provider        the provider built from config on the shared pool (environment credentials)
  first call      one ConverseStream call streamed to the end (timed, with the loop's longest stall)
  100 calls       100 more calls (steady state: growth here would be a leak)
  control plane   ListModels (ListFoundationModels and ListInferenceProfiles)
  closed          provider and pool closed

Usage: .venv/bin/python benchmarks/bedrock_memory.py [--repeat 5]   (prints a Markdown table)
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from typing import Any

FAKE = """
import asyncio
from provider_gateway.fakes.bedrock import FakeBedrock
async def main():
    async with FakeBedrock() as fake:
        print(fake.url, flush=True)
        await asyncio.Event().wait()
asyncio.run(main())
"""


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def sample(trace: bool) -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0] // 1024 if trace else rss_kib()


class LongestCallback:
    """The longest single event-loop callback (task step, I/O callback) while active, in wall and in
    thread CPU time: CPU time is what the loop itself spent, whatever the shared machine's scheduler
    did meanwhile (a busy neighbour stretches wall time, not this thread's CPU time)."""

    def __init__(self) -> None:
        self.wall_us = self.cpu_us = 0
        self._original = asyncio.events.Handle._run
        self._ended: tuple[float, float] | None = (
            None  # the clocks at exit: a step running then counts until it
        )

    def __enter__(self) -> LongestCallback:
        original, timer = self._original, self

        def timed_run(handle: asyncio.events.Handle) -> None:
            wall, cpu = time.perf_counter(), time.thread_time()
            original(handle)
            end_wall, end_cpu = timer._ended or (time.perf_counter(), time.thread_time())
            timer.wall_us = max(timer.wall_us, round((end_wall - wall) * 1e6))
            timer.cpu_us = max(timer.cpu_us, round((end_cpu - cpu) * 1e6))

        asyncio.events.Handle._run = timed_run  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        self._ended = (time.perf_counter(), time.thread_time())
        asyncio.events.Handle._run = self._original  # type: ignore[method-assign]


async def timed_with_loop_stall(work: Any) -> tuple[int, int]:
    """How long `work` took and the longest the event loop could not run anything else meanwhile."""
    worst, done = 0.0, False

    async def ticker() -> None:
        nonlocal worst
        while not done:
            started = time.perf_counter()
            await asyncio.sleep(0.001)
            worst = max(worst, time.perf_counter() - started - 0.001)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    started = time.perf_counter()
    await work
    elapsed = time.perf_counter() - started
    done = True
    await task
    return round(elapsed * 1e6), round(worst * 1e6)  # microseconds


async def child(url: str, trace: bool) -> dict[str, int]:
    if trace:
        tracemalloc.start()
    import grpc  # noqa: F401  (a gateway has it loaded before any provider)

    from provider_gateway.config import Section
    from provider_gateway.domain import ChatRequest, Message, Role, TextPart
    from provider_gateway.http.pool import UpstreamPool
    from provider_gateway.providers.context import ProviderContext

    phases = {"baseline": sample(trace)}
    from provider_gateway.providers.bedrock.adapter import from_config

    phases["import"] = sample(trace)
    options = Section(
        {"kind": "bedrock", "region": "us-east-1", "endpoint_url": url}, "bench.toml", "providers.b"
    )
    pool = UpstreamPool()
    provider = from_config("bedrock", options, ProviderContext(pool))
    phases["provider"] = sample(trace)
    request = ChatRequest("anthropic.claude-3-haiku-20240307-v1:0", [Message(Role.USER, (TextPart("hi"),))])

    async def call() -> None:
        async for _ in provider.chat_stream(request):
            pass

    with LongestCallback() as longest:
        first_us, stall_us = await timed_with_loop_stall(call())
    phases["first call"] = sample(trace)
    # The same probe over an idle loop for as long: what the shared machine alone delays it by.
    _, idle_us = await timed_with_loop_stall(asyncio.sleep(first_us / 1e6))
    phases["first call us"], phases["worst loop stall us"], phases["idle stall us"] = (
        first_us,
        stall_us,
        idle_us,
    )
    phases["longest callback us"], phases["longest callback cpu us"] = longest.wall_us, longest.cpu_us
    for _ in range(100):
        await call()
    phases["100 calls"] = sample(trace)
    await provider.list_models()
    phases["control plane (list_models)"] = sample(trace)
    await provider.aclose()
    await pool.aclose()
    phases["closed"] = sample(trace)
    loaded = [m for m in sys.modules if m.split(".")[0] in ("botocore", "aiobotocore")]
    assert not loaded, loaded
    return phases


def run_child(url: str, mode: str) -> dict[str, int]:
    output = subprocess.run(
        [sys.executable, __file__, "--child", mode, url], check=True, capture_output=True, text=True
    ).stdout
    result: dict[str, int] = json.loads(output.strip().splitlines()[-1])
    return result


TIMINGS = (
    "first call us",
    "worst loop stall us",
    "idle stall us",
    "longest callback us",
    "longest callback cpu us",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5, help="fresh processes measuring RSS and stalls")
    args = parser.parse_args()
    env = os.environ | {
        "AWS_ACCESS_KEY_ID": "AKIDFAKEBEDROCK",
        "AWS_SECRET_ACCESS_KEY": "fake-secret-key-for-tests",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    }
    os.environ.update(env)
    fake = subprocess.Popen([sys.executable, "-c", FAKE], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert fake.stdout is not None
        url = fake.stdout.readline().strip()
        runs = [run_child(url, "rss") for _ in range(args.repeat)]
        traced = run_child(url, "trace")
    finally:
        fake.terminate()
        fake.wait()
    rss = {phase: int(statistics.median(run[phase] for run in runs)) for phase in runs[0]}
    timings = {k: [run[k] for run in runs] for k in TIMINGS}
    for k in TIMINGS:
        rss.pop(k)
        traced.pop(k)
    print(
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; RSS: median of {args.repeat} processes"
    )
    print("| phase | RSS KiB | RSS delta KiB | traced KiB | traced delta KiB |")
    print("|---|---:|---:|---:|---:|")
    previous: dict[str, Any] = {}
    for phase in rss:
        r, t = rss[phase], traced[phase]
        dr = r - previous.get("r", r)
        dt = t - previous.get("t", t)
        print(f"| {phase} | {r:,} | {dr:+,} | {t:,} | {dt:+,} |")
        previous = {"r": r, "t": t}
    held = [run["first call"] - run["baseline"] for run in runs]
    print(
        f"\nHeld by Bedrock (import + provider + first call): RSS median {statistics.median(held):,.0f} KiB "
        f"(runs: {', '.join(f'{h:,}' for h in held)}), traced {traced['first call'] - traced['baseline']:,} KiB"
    )

    def ms(values: list[int]) -> str:
        return f"median {statistics.median(values) / 1000:.1f} ms (runs: {', '.join(f'{v / 1000:.1f}' for v in values)})"

    print(f"First ConverseStream call: {ms(timings['first call us'])}")
    print(f"Longest event-loop stall during it: {ms(timings['worst loop stall us'])}")
    print(f"Longest stall of the same probe on an idle loop, as long: {ms(timings['idle stall us'])}")
    print(f"Longest single loop callback during it, wall: {ms(timings['longest callback us'])}")
    print(f"Longest single loop callback during it, thread CPU: {ms(timings['longest callback cpu us'])}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps(asyncio.run(child(sys.argv[3], sys.argv[2] == "trace"))))
    else:
        main()
