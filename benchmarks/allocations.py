"""Heap allocations per relayed token on the streaming hot path, stage by stage (issue 15, point 5).

    .venv/bin/python benchmarks/allocations.py [--tokens 1000] [--streams 10] [--json]
    .venv/bin/python benchmarks/allocations.py --cpu --streams 5   # CPU time per token instead

Each stage adds one layer to the one before, in the order a token crosses the gateway:

    sse        upstream SSE bytes -> `SseDecoder.feed`
    codec      + JSON parse + `ChatStreamParser.stream_chunk` (the OpenAI codec, as the adapter calls it)
    adapter    the OpenAI adapter's `chat_stream` (http/client.py's chunk loop, idle timeout included)
               over a canned transport that hands one SSE frame per read, yielding to the loop between
    router     + `Router.chat_stream` (limiter, breaker, open-call tracking, telemetry of the attempt)
    coalesce   + `server.coalesce.coalesced` (frames arrive one per loop turn: every token is its own
               message, the light-load case and the most messages per token)
    convert    + `convert.StreamMessages.to_proto` (what the servicer yields to grpc.aio)
    serialize  + `SerializeToString`, what grpc.aio's serializer does before the write

Allocations are counted exactly, not sampled: the stages run in a child Python with
`PYTHONMALLOC=malloc` (every object Python allocates is then a libc malloc) and a tiny preloaded
library that counts malloc, calloc and realloc calls (C source below, built with the system's C
compiler). Each stage first relays one stream to warm up (imports, caches, the first connection
of the pool), then `--streams` streams of `--tokens` tokens; the counter's difference over
streams x tokens is the count per token (a stream's own set-up is spread over its tokens).
Counts are deterministic: they do not depend on the machine's load, unlike CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
COUNTER_C = r"""
#include <stddef.h>
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
static unsigned long long count;
void *malloc(size_t n) { __atomic_fetch_add(&count, 1, __ATOMIC_RELAXED); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { __atomic_fetch_add(&count, 1, __ATOMIC_RELAXED); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { __atomic_fetch_add(&count, 1, __ATOMIC_RELAXED); return __libc_realloc(p, n); }
unsigned long long allocations(void) { return __atomic_load_n(&count, __ATOMIC_RELAXED); }
"""
STAGES = ("sse", "codec", "adapter", "router", "coalesce", "convert", "serialize")
CONFIG = """
[server]
default_provider = "openai"

[providers.openai]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
api_key_env = "BENCH_OPENAI_KEY"
"""


def frames(tokens: int) -> list[bytes]:
    """One stream's body as the benchmark upstream (benchmarks/fake_openai.py) writes it."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from fake_openai import chunk

    body = [chunk(f"tok{i % 10} ") for i in range(tokens)]
    body.append(chunk(None, "stop"))
    body.append(
        chunk(None, usage={"prompt_tokens": 5, "completion_tokens": tokens, "total_tokens": tokens + 5})
    )
    body.append(b"data: [DONE]\n\n")
    return body


def canned_transport(body: list[bytes]) -> Any:
    """An httpx transport answering every request with `body`, one SSE frame per read and a loop
    turn between reads (as if each frame came in its own TCP segment)."""
    import httpx

    class CannedBody(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            for frame in body:
                await asyncio.sleep(0)
                yield frame

    class Canned(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=CannedBody())

    return Canned()


def parse_only(stage: str, body: list[bytes]) -> Callable[[], int]:
    """The sse and codec stages: plain function calls over one stream's frames."""
    import orjson

    from provider_gateway.providers.openai.presets import PRESETS
    from provider_gateway.providers.openai.stream import ChatStreamParser
    from provider_gateway.providers.openai.wires import wire_for
    from provider_gateway.wire.sse import SseDecoder

    wire = wire_for(PRESETS["openai"])

    def one_stream() -> int:
        decoder, parser, count = SseDecoder(), ChatStreamParser("openai", wire), 0
        for frame in body:
            for event in decoder.feed(frame):
                if stage == "sse" or event.data == "[DONE]":
                    count += 1
                    continue
                count += len(parser.stream_chunk(orjson.loads(event.data)))
        return count

    return one_stream


async def relay(stage: str, body: list[bytes], streams: int, count: Callable[[], int]) -> int:
    """The adapter stage and every stage after it, through the real objects: the allocations of
    `streams` streams, after one stream that warms up (the pool's TLS context, caches)."""
    import tomllib

    from provider_gateway import config as config_module
    from provider_gateway.domain import ChatRequest, Message, Role, TextPart
    from provider_gateway.http import UpstreamPool
    from provider_gateway.providers.context import ProviderContext
    from provider_gateway.providers.registry import ProviderRegistry
    from provider_gateway.routing.resolve import RouteResolver
    from provider_gateway.routing.router import Router
    from provider_gateway.routing.settings import parse_routing
    from provider_gateway.routing.shared_state import MemoryCounterStore
    from provider_gateway.routing.timing import RequestClock
    from provider_gateway.server import convert
    from provider_gateway.server.coalesce import coalesced
    from provider_gateway.v1 import provider_service_pb2 as pb

    config = config_module.parse(tomllib.loads(CONFIG), "bench.toml")
    # httpx's transport, the one a canned httpx transport can stand in for
    registry = ProviderRegistry.from_config(config, ProviderContext(UpstreamPool(transport="httpx")))
    provider = registry.get("openai")
    host = provider.upstream.host  # type: ignore[attr-defined]
    host.transport = canned_transport(body)
    router = Router(
        registry,
        RouteResolver(registry.names(), registry.default, config.aliases),
        parse_routing(config),
        MemoryCounterStore(),
    )
    request = ChatRequest("bench-model", [Message(Role.USER, (TextPart("hello"),))], provider="openai")

    # Commits before StreamMessages built a new message per event: measure them as they were.
    pooled = getattr(convert, "StreamMessages", None)

    def messages() -> Any:
        """This commit's StreamMessages as the clients ask for it (usage in the finish only), or an
        older commit's (no options)."""
        try:
            return pooled(pb.StreamOptions(usage_in_finish=True))  # type: ignore[misc]
        except (TypeError, AttributeError):
            return pooled()  # type: ignore[misc]

    async def one_stream() -> None:
        to_proto = messages().to_proto if pooled is not None else convert.event_to_proto
        events: AsyncIterator[Any]
        if stage == "adapter":
            events = provider.chat_stream(request)
        else:
            events = router.chat_stream(request, RequestClock())
            if stage != "router":
                events = coalesced(events)  # type: ignore[arg-type]
        async for event in events:
            if stage in ("convert", "serialize"):
                message = to_proto(event)
                if stage == "serialize" and message is not None:
                    message.SerializeToString()

    await one_stream()
    before = count()
    for _ in range(streams):
        await one_stream()
    return count() - before


def allocation_counter() -> Callable[[], int]:
    """The preloaded counter's reading (in the child)."""
    import ctypes

    library = ctypes.CDLL(os.environ["ALLOCATIONS_COUNTER"])
    library.allocations.restype = ctypes.c_ulonglong
    return library.allocations  # type: ignore[no-any-return]


def child(stages: tuple[str, ...], tokens: int, streams: int) -> None:
    """Count each stage's allocations per token and print them as JSON (in the child)."""
    os.environ.setdefault("BENCH_OPENAI_KEY", "sk-bench")
    count = allocation_counter()
    body = frames(tokens)
    out = {}
    for stage in stages:
        if stage in ("sse", "codec"):
            one_stream = parse_only(stage, body)
            one_stream()
            before = count()
            for _ in range(streams):
                one_stream()
            allocations = count() - before
        else:
            allocations = asyncio.run(relay(stage, body, streams, count))
        out[stage] = allocations / (streams * tokens)
    print(json.dumps(out))


def measure(tokens: int, streams: int, stages: tuple[str, ...] = STAGES) -> dict[str, Any]:
    """Allocations per token, cumulative and added by each stage ({} without a C compiler)."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return {}
    with tempfile.TemporaryDirectory() as scratch:
        source, library = Path(scratch) / "counter.c", Path(scratch) / "counter.so"
        source.write_text(COUNTER_C)
        subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
        env = {
            **os.environ,
            "PYTHONMALLOC": "malloc",
            "PYTHONHASHSEED": "0",
            "LD_PRELOAD": str(library),
            "ALLOCATIONS_COUNTER": str(library),
        }
        command = [sys.executable, __file__, "--child", ",".join(stages)]
        command += ["--tokens", str(tokens), "--streams", str(streams)]
        result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    if result.returncode:
        raise RuntimeError(f"allocation count failed:\n{result.stderr[-3000:]}")
    cumulative = {stage: round(value, 2) for stage, value in json.loads(result.stdout).items()}
    added, before = {}, 0.0
    for stage in stages:
        added[stage] = round(cumulative[stage] - before, 2)
        before = cumulative[stage]
    return {"tokens": streams * tokens, "cumulative": cumulative, "added": added}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=1000, help="tokens per stream")
    parser.add_argument("--streams", type=int, default=10, help="streams measured (after the first)")
    parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated, cumulative order")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--cpu", action="store_true", help="instead: CPU µs per token of the whole path, median of 3 rounds"
    )
    args = parser.parse_args()
    if args.child:
        child(tuple(args.child.split(",")), args.tokens, args.streams)
        return
    if args.cpu:
        os.environ.setdefault("BENCH_OPENAI_KEY", "sk-bench")
        body = frames(args.tokens)
        rounds = [
            asyncio.run(relay("serialize", body, args.streams, time.process_time_ns)) / 1000 for _ in range(3)
        ]
        print(
            f"CPU per relayed token, whole path: {statistics.median(rounds) / (args.streams * args.tokens):.2f} µs"
        )
        return
    stages = tuple(s for s in STAGES if s in args.stages.split(","))
    figures = measure(args.tokens, args.streams, stages)
    if not figures:
        sys.exit("no C compiler (cc or gcc): no allocation counts")
    if args.json:
        print(json.dumps(figures, indent=1))
        return
    print(f"heap blocks allocated per relayed token ({figures['tokens']} tokens)")
    print("| stage | cumulative | added by the stage |\n| --- | --- | --- |")
    for stage in stages:
        print(f"| {stage} | {figures['cumulative'][stage]:.2f} | {figures['added'][stage]:.2f} |")


if __name__ == "__main__":
    main()
