"""Unary Chat on Anthropic, Claude and Gemini on Vertex, Gemini, Cohere and Ollama: one non-streaming
upstream call (issue 15, point 2) against the former way, streaming upstream and accumulating the
events (`BaseProvider.chat`). The OpenAI family's figures come from `unary_openai.py`.

Each adapter reads the same answer both ways from its loopback fake (in process, same event loop,
no delays): the vendor fakes' `text` scenario (three text chunks, usage with cache reads; the
streams carry 5 to 9 events), and for Ollama the same text in three NDJSON lines and a done line.
Calls go through the same adapter object, interleaved in rounds; medians of the rounds' p50s.

    .venv/bin/python benchmarks/unary_vendors.py [--calls 300] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
import tomllib
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

from provider_gateway import config as config_module
from provider_gateway.domain import ChatRequest, Message, Role, TextPart
from provider_gateway.fakes import FakeUpstream, RecordedRequest, Reply
from provider_gateway.fakes import conversation as conv
from provider_gateway.fakes.anthropic import FakeAnthropic
from provider_gateway.fakes.cohere import FakeCohere
from provider_gateway.fakes.gemini import FakeGemini
from provider_gateway.fakes.vendor_base import FakeVendor
from provider_gateway.fakes.vertex import FakeVertex
from provider_gateway.providers.base import BaseProvider
from provider_gateway.server.app import GatewayServer

# provider name in the config: the model it is asked for
MODELS = {
    "anthropic": "text",
    "vertex-claude": "claude-text",
    "gemini": "text",
    "vertex-gemini": "text",
    "cohere": "text",
    "ollama": "llama3.2",
}


def ollama_answer(request: RecordedRequest) -> Reply:
    done = {
        "model": "llama3.2",
        "created_at": "2026-01-01T00:00:00Z",
        "message": {"role": "assistant", "content": ""},
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": conv.INPUT_TOKENS,
        "eval_count": conv.OUTPUT_TOKENS,
    }
    if request.json().get("stream") is False:
        return Reply.json(done | {"message": {"role": "assistant", "content": "".join(conv.TEXT_CHUNKS)}})
    lines = [
        {"model": "llama3.2", "message": {"role": "assistant", "content": t}, "done": False}
        for t in conv.TEXT_CHUNKS
    ]
    return Reply.ndjson([*lines, done])


def gateway_config(
    anthropic: FakeAnthropic, gemini: FakeGemini, vertex: FakeVertex, cohere: FakeCohere, ollama_url: str
) -> str:
    keys = {
        "PG_BENCH_ANTHROPIC": anthropic.api_key,
        "PG_BENCH_GEMINI": gemini.api_key,
        "PG_BENCH_VERTEX": vertex.vertex_token,
        "PG_BENCH_COHERE": cohere.api_key,
    }
    os.environ.update(keys)
    vertex_table = f'kind = "vertex"\nproject = "bench"\nbase_url = "{vertex.base_url}"\naccess_token_env = "PG_BENCH_VERTEX"'
    return f"""
[providers.anthropic]
kind = "anthropic"
base_url = "{anthropic.base_url}"
api_key_env = "PG_BENCH_ANTHROPIC"
[providers.gemini]
kind = "gemini"
base_url = "{gemini.base_url}"
api_key_env = "PG_BENCH_GEMINI"
[providers.vertex-claude]
{vertex_table}
[providers.vertex-gemini]
{vertex_table}
[providers.cohere]
kind = "cohere"
base_url = "{cohere.base_url}"
api_key_env = "PG_BENCH_COHERE"
[providers.ollama]
kind = "ollama"
base_url = "{ollama_url}"
"""


async def timed(call: Callable[[], Awaitable[Any]], calls: int) -> float:
    """p50 of `calls` sequential calls, in ms."""
    latencies = []
    for _ in range(calls):
        began = time.perf_counter()
        await call()
        latencies.append(time.perf_counter() - began)
    return statistics.median(latencies) * 1000


def runs(server: GatewayServer) -> dict[tuple[str, str], Callable[[], Awaitable[None]]]:
    calls: dict[tuple[str, str], Callable[[], Awaitable[None]]] = {}
    for name, model in MODELS.items():
        provider = server.registry.get(name)
        request = ChatRequest(model=model, messages=[Message(Role.USER, (TextPart("hi"),))])

        async def unary(provider: Any = provider, request: ChatRequest = request) -> None:
            assert (await provider.chat(request)).text

        async def streamed(provider: Any = provider, request: ChatRequest = request) -> None:
            assert (await BaseProvider.chat(provider, request)).text

        calls[(name, "unary")] = unary
        calls[(name, "stream")] = streamed
    return calls


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(
        f"python {sys.version.split()[0]} on {platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    async with AsyncExitStack() as stack:
        anthropic, gemini, vertex, cohere = FakeAnthropic(), FakeGemini(), FakeVertex(), FakeCohere()
        vendors: list[FakeVendor] = [anthropic, gemini, vertex, cohere]
        for fake in vendors:
            await stack.enter_async_context(fake)
        ollama = await stack.enter_async_context(FakeUpstream())
        ollama.on("POST", "/api/chat", ollama_answer)
        text = gateway_config(anthropic, gemini, vertex, cohere, ollama.url)
        server = GatewayServer(config_module.parse(tomllib.loads(text), "bench.toml"))
        await server.start("127.0.0.1", 0)
        try:
            calls = runs(server)
            for call in calls.values():
                await timed(call, 30)  # warm up connections and caches
            results: dict[tuple[str, str], list[float]] = {key: [] for key in calls}
            for _ in range(args.rounds):
                for key, call in calls.items():
                    results[key].append(await timed(call, args.calls))
        finally:
            await server.stop(0)
        problems = [p for fake in vendors for p in fake.problems]
        assert not problems, problems
    print(
        f"\n| adapter chat(), {args.calls} calls x {args.rounds} rounds | unary p50 ms | stream + accumulate p50 ms |"
    )
    print("|---|---|---|")
    for name in MODELS:
        unary, stream = (statistics.median(results[(name, way)]) for way in ("unary", "stream"))
        print(f"| {name} | {unary:.3f} | {stream:.3f} |")


if __name__ == "__main__":
    asyncio.run(main())
