"""Relay cost per upstream event: Bedrock's ConverseStream against the OpenAI adapter (issue 14).

The fake upstreams run in a child process (their cost is not counted). In this process each adapter
(built by the registry on the shared HTTP pool, as the server builds it) streams a long text answer
of `--events` upstream events; the time per event covers HTTP reading, framing (SSE or
eventstream), JSON decoding and the domain events. Rounds alternate the adapters (the machine is
shared: neighbours' load moves from one minute to the next); medians are reported.

    .venv/bin/python benchmarks/bedrock_relay.py [--events 2000] [--rounds 7] [--calls 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import tomllib

from provider_gateway import config as config_module
from provider_gateway.domain import ChatRequest, Message, Role, TextPart
from provider_gateway.providers.context import ProviderContext
from provider_gateway.providers.registry import ProviderRegistry

FAKES = """
import asyncio, json, sys
from provider_gateway.fakes import FakeUpstream, Reply
from provider_gateway.fakes import chat_completions as cc
from provider_gateway.fakes.bedrock import FakeBedrock, Reply as BedrockReply, converse_text_frames

EVENTS = int(sys.argv[1])
WORDS = [f" word{i}" for i in range(EVENTS)]

async def main():
    chunks = [cc.chunk("gpt-4o", {"role": "assistant", "content": ""})]
    chunks += [cc.chunk("gpt-4o", {"content": w}) for w in WORDS]
    chunks += [cc.chunk("gpt-4o", {}, "stop"), cc.usage_chunk("gpt-4o", cc.usage(9, EVENTS))]
    frames = converse_text_frames(WORDS)
    async with FakeUpstream() as openai, FakeBedrock() as bedrock:
        openai.on("POST", "*", lambda request: Reply.sse(chunks))
        bedrock.push(*[BedrockReply(frames=frames) for _ in range(100_000)])
        print(json.dumps({"openai": openai.url, "bedrock": bedrock.url}), flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIDFAKEBEDROCK",
    "AWS_SECRET_ACCESS_KEY": "fake-secret-key-for-tests",
    "PG_BENCH_OPENAI": "sk-bench",
}


def gateway_config(urls: dict[str, str]) -> str:
    return f"""
[providers.openai]
kind = "openai"
base_url = "{urls["openai"]}/v1"
api_key_env = "PG_BENCH_OPENAI"

[providers.bedrock]
kind = "bedrock"
region = "us-east-1"
endpoint_url = "{urls["bedrock"]}"
"""


async def per_event_us(registry: ProviderRegistry, name: str, model: str, calls: int) -> float:
    provider = registry.get(name)
    assert provider is not None
    request = ChatRequest(model, [Message(Role.USER, (TextPart("hi"),))])
    events = 0
    started = time.perf_counter()
    for _ in range(calls):
        async for _ in provider.chat_stream(request):
            events += 1
    return (time.perf_counter() - started) / events * 1e6


async def measure(urls: dict[str, str], rounds_wanted: int, calls: int) -> dict[str, list[float]]:
    context = ProviderContext()
    registry = ProviderRegistry.from_config(
        config_module.parse(tomllib.loads(gateway_config(urls)), "bench.toml"), context
    )
    cases = [("openai", "gpt-4o"), ("bedrock", "anthropic.claude-3-haiku-20240307-v1:0")]
    for name, model in cases:  # warm up connections and caches
        await per_event_us(registry, name, model, 2)
    rounds: dict[str, list[float]] = {name: [] for name, _ in cases}
    for _ in range(rounds_wanted):
        for name, model in cases:
            rounds[name].append(await per_event_us(registry, name, model, calls))
    await registry.aclose()
    await context.http.aclose()
    return rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=5)
    args = parser.parse_args()
    os.environ.update(AWS_ENV)
    fakes = subprocess.Popen(
        [sys.executable, "-c", FAKES, str(args.events)], stdout=subprocess.PIPE, text=True, env=os.environ
    )
    try:
        assert fakes.stdout is not None
        rounds = asyncio.run(measure(json.loads(fakes.stdout.readline()), args.rounds, args.calls))
    finally:
        fakes.terminate()
        fakes.wait()
    print(
        f"python {sys.version.split()[0]} on {platform.machine()}, {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.1f}; {args.events} upstream events per call, "
        f"{args.calls} calls per round, {args.rounds} rounds"
    )
    print("\n| adapter (chat_stream) | median µs per event | min | max |\n|---|---:|---:|---:|")
    for name, values in rounds.items():
        print(f"| {name} | {statistics.median(values):.1f} | {min(values):.1f} | {max(values):.1f} |")
    ratios = [b / o for b, o in zip(rounds["bedrock"], rounds["openai"], strict=True)]
    print(
        f"\nBedrock / OpenAI per event, round by round: median {statistics.median(ratios):.2f}x "
        f"(range {min(ratios):.2f}-{max(ratios):.2f}x)"
    )


if __name__ == "__main__":
    main()
