"""Memory held by the Bedrock provider: imports, the aiobotocore session and client, calls.

Runs the fake Bedrock endpoint in its own process, then measures in fresh processes (one for RSS,
one for tracemalloc, since tracing inflates RSS) after each phase:

  baseline        provider_gateway's core imported
  import          the Bedrock adapter imported (aiobotocore, botocore, aiohttp)
  provider        BedrockProvider built from config (an AioSession)
  client          the bedrock-runtime client created (service model loaded, endpoint resolved)
  first call      one ConverseStream call streamed to the end
  100 calls       100 more calls (steady state: growth here would be a leak)
  2nd region      a bedrock-runtime client for another region (the service model is cached)
  control plane   the `bedrock` client that list_models uses
  closed          provider closed

Usage: .venv/bin/python benchmarks/bedrock_memory.py   (prints a Markdown table)
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
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
    return round(elapsed * 1000), round(worst * 1000)


async def child(url: str, trace: bool) -> dict[str, int]:
    if trace:
        tracemalloc.start()
    from provider_gateway.config import Section
    from provider_gateway.domain import ChatRequest, Message, Role, TextPart

    phases = {"baseline": sample(trace)}
    from provider_gateway.providers.bedrock.adapter import BedrockProvider

    phases["import"] = sample(trace)
    options = Section(
        {"kind": "bedrock", "region": "us-east-1", "endpoint_url": url}, "bench.toml", "providers.b"
    )
    provider = BedrockProvider.from_config("bedrock", options)
    phases["provider"] = sample(trace)
    created_ms, stall_ms = await timed_with_loop_stall(provider.client())
    phases["client"] = sample(trace)
    phases["client creation ms"], phases["worst loop stall ms"] = created_ms, stall_ms
    request = ChatRequest("anthropic.claude-3-haiku-20240307-v1:0", [Message(Role.USER, (TextPart("hi"),))])

    async def call() -> None:
        async for _ in provider.chat_stream(request):
            pass

    await call()
    phases["first call"] = sample(trace)
    for _ in range(100):
        await call()
    phases["100 calls"] = sample(trace)
    await provider.client(region="eu-west-1")
    phases["2nd region client"] = sample(trace)
    await provider.client("bedrock")
    phases["control-plane client"] = sample(trace)
    await provider.aclose()
    phases["closed"] = sample(trace)
    return phases


def run_child(url: str, mode: str) -> dict[str, int]:
    output = subprocess.run(
        [sys.executable, __file__, "--child", mode, url], check=True, capture_output=True, text=True
    ).stdout
    result: dict[str, int] = json.loads(output.strip().splitlines()[-1])
    return result


def main() -> None:
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
        rss = run_child(url, "rss")
        traced = run_child(url, "trace")
    finally:
        fake.terminate()
        fake.wait()
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    print("| phase | RSS KiB | RSS delta KiB | traced KiB | traced delta KiB |")
    print("|---|---:|---:|---:|---:|")
    previous: dict[str, Any] = {}
    timings = {k: rss.pop(k) for k in ("client creation ms", "worst loop stall ms")}
    for k in timings:
        traced.pop(k)
    for phase in rss:
        r, t = rss[phase], traced[phase]
        dr = r - previous.get("r", r)
        dt = t - previous.get("t", t)
        print(f"| {phase} | {r:,} | {dr:+,} | {t:,} | {dt:+,} |")
        previous = {"r": r, "t": t}
    print(
        f"\nHeld by Bedrock (import + provider + client + first call): RSS {rss['first call'] - rss['baseline']:,} KiB, "
        f"traced {traced['first call'] - traced['baseline']:,} KiB"
    )
    print(
        f"Creating the bedrock-runtime client took {timings['client creation ms']} ms; the event loop's "
        f"longest stall meanwhile was {timings['worst loop stall ms']} ms"
    )


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps(asyncio.run(child(sys.argv[3], sys.argv[2] == "trace"))))
    else:
        main()
