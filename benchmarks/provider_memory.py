"""RSS that providers add to a gateway: every kind configured, each having served one call (issue 14).

Fake upstreams for every kind run in one child process. Each round starts three real gateways
(`provider-gateway serve`, fresh processes) and sends each configured provider one ChatStream call,
then reads the gateway's RSS:

  mock only        the reference
  mock + bedrock   Bedrock alone (target: at most 2 MB over mock only)
  every kind       mock, openai, azure, mistral, ollama, anthropic, gemini, vertex, cohere, bedrock
                   (target: at most 8 MB over mock only)
  every kind but bedrock   what Bedrock adds to a gateway that already has the HTTP adapters

Rounds alternate the three (the machine is shared); medians are reported, with each round's figures.

    .venv/bin/python benchmarks/provider_memory.py [--rounds 3] [--per-kind]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).parent))
from harness import procs
from provider_gateway.v1 import provider_service_pb2 as pb
from provider_gateway.v1 import provider_service_pb2_grpc as pb_grpc

BEDROCK_MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
FAKES = """
import asyncio, json
from contextlib import AsyncExitStack
from provider_gateway.fakes import kinds
from provider_gateway.fakes.anthropic import FakeAnthropic
from provider_gateway.fakes.bedrock import FakeBedrock
from provider_gateway.fakes.cohere import FakeCohere
from provider_gateway.fakes.gemini import FakeGemini
from provider_gateway.fakes.vertex import FakeVertex

async def main():
    async with AsyncExitStack() as stack:
        urls = {}
        for kind in ("openai", "azure", "mistral", "ollama"):
            urls[kind] = (await stack.enter_async_context(kinds.build(kind))).url
        keys = {}
        for kind, fake in (("anthropic", FakeAnthropic()), ("gemini", FakeGemini()), ("cohere", FakeCohere())):
            await fake.start()
            stack.push_async_callback(fake.stop)
            urls[kind], keys[kind] = fake.base_url, fake.api_key
        vertex = FakeVertex()
        await vertex.start()
        stack.push_async_callback(vertex.stop)
        urls["vertex"], keys["vertex"] = vertex.base_url, vertex.vertex_token
        urls["bedrock"] = (await stack.enter_async_context(FakeBedrock())).url
        print(json.dumps({"urls": urls, "keys": keys}), flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""
MOCK = '[providers.mock]\nkind = "mock"\n'


def bedrock_section(urls: dict[str, str]) -> str:
    return (
        f'[providers.bedrock]\nkind = "bedrock"\nregion = "us-east-1"\nendpoint_url = "{urls["bedrock"]}"\n'
    )


def every_kind(urls: dict[str, str]) -> str:
    return (
        MOCK
        + f"""
[providers.openai]
kind = "openai"
base_url = "{urls["openai"]}/v1"
api_key_env = "PG_BENCH_KEY"

[providers.azure]
kind = "azure"
base_url = "{urls["azure"]}"
api_key_env = "PG_BENCH_KEY"

[providers.mistral]
kind = "mistral"
base_url = "{urls["mistral"]}/v1"
api_key_env = "PG_BENCH_KEY"

[providers.ollama]
kind = "ollama"
base_url = "{urls["ollama"]}"

[providers.anthropic]
kind = "anthropic"
base_url = "{urls["anthropic"]}"
api_key_env = "PG_BENCH_ANTHROPIC"

[providers.gemini]
kind = "gemini"
base_url = "{urls["gemini"]}"
api_key_env = "PG_BENCH_GEMINI"

[providers.vertex]
kind = "vertex"
project = "bench"
base_url = "{urls["vertex"]}"
access_token_env = "PG_BENCH_VERTEX"

[providers.cohere]
kind = "cohere"
base_url = "{urls["cohere"]}"
api_key_env = "PG_BENCH_COHERE"

"""
        + bedrock_section(urls)
    )


def kind_section(config: str, kind: str) -> str:
    """One provider's table out of the every-kind configuration."""
    start = config.index(f"[providers.{kind}]")
    end = config.find("[providers.", start + 1)
    return config[start : end if end > 0 else None]


MODELS = {
    "mock": "mock/echo",
    "openai": "openai/gpt-4o",
    "azure": "azure/gpt-4o",
    "mistral": "mistral/mistral-large-latest",
    "ollama": "ollama/llama3.2",
    "anthropic": "anthropic/tools",
    "gemini": "gemini/tools",
    "vertex": "vertex/tools",
    "cohere": "cohere/tools",
    "bedrock": f"bedrock/{BEDROCK_MODEL}",
}


async def one_call_each(port: int, providers: list[str]) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.ProviderServiceStub(channel)
        for name in providers:
            request = pb.ChatRequest(
                model=MODELS[name],
                messages=[pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text="hi")])],
            )
            events = [event async for event in stub.ChatStream(request, timeout=30)]
            assert events, name
            assert events[-1].HasField("finish"), (name, events[-1])


def measure(config: str, providers: list[str], env: dict[str, str]) -> float:
    gateway = procs.gateway(config, env=env)
    try:
        asyncio.run(one_call_each(gateway.port, providers))
        time.sleep(1.0)  # let the calls' buffers settle, as an idle gateway would
        return gateway.rss_mb()
    finally:
        gateway.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-kind", action="store_true", help="also mock + each kind alone")
    args = parser.parse_args()
    fakes = subprocess.Popen([sys.executable, "-c", FAKES], stdout=subprocess.PIPE, text=True)
    try:
        assert fakes.stdout is not None
        started: dict[str, Any] = json.loads(fakes.stdout.readline())
        urls, keys = started["urls"], started["keys"]
        env = os.environ | {
            "PG_BENCH_KEY": "sk-bench",
            "PG_BENCH_ANTHROPIC": keys["anthropic"],
            "PG_BENCH_GEMINI": keys["gemini"],
            "PG_BENCH_VERTEX": keys["vertex"],
            "PG_BENCH_COHERE": keys["cohere"],
            "AWS_ACCESS_KEY_ID": "AKIDFAKEBEDROCK",
            "AWS_SECRET_ACCESS_KEY": "fake-secret-key-for-tests",
        }
        cases = {
            "mock only": (MOCK, ["mock"]),
            "mock + bedrock": (MOCK + bedrock_section(urls), ["mock", "bedrock"]),
            "every kind": (every_kind(urls), list(MODELS)),
            "every kind but bedrock": (
                every_kind(urls).replace(bedrock_section(urls), ""),
                [kind for kind in MODELS if kind != "bedrock"],
            ),
        }
        if args.per_kind:
            for kind in MODELS:
                if kind not in ("mock", "bedrock"):
                    cases[f"mock + {kind}"] = (MOCK + kind_section(every_kind(urls), kind), ["mock", kind])
        rss: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name, (config, providers) in cases.items():
                rss[name].append(measure(config, providers, env))
    finally:
        fakes.terminate()
        fakes.wait()
    print(
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, {args.rounds} rounds"
    )
    print(
        "\n| gateway (each provider served one ChatStream) | median RSS MB | rounds | over mock only (median) |"
    )
    print("|---|---:|---|---:|")
    base = statistics.median(rss["mock only"])
    for name, values in rss.items():
        rounds = ", ".join(f"{v:.1f}" for v in values)
        print(
            f"| {name} | {statistics.median(values):.1f} | {rounds} | {statistics.median(values) - base:+.1f} |"
        )
    paired = {
        name: [v - m for v, m in zip(values, rss["mock only"], strict=True)]
        for name, values in rss.items()
        if name != "mock only"
    }
    for name, deltas in paired.items():
        print(f"\n{name} over mock only, round by round: " + ", ".join(f"{d:+.1f}" for d in deltas) + " MB")


if __name__ == "__main__":
    main()
