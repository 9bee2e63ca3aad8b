"""Load generators for the three paths: direct HTTP, the gateway over gRPC, and LiteLLM over HTTP.

Each path offers `unary()` and `stream()` coroutines returning (ttft_s, total_s) so that the same
measurement code drives all of them.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import grpc

from provider_gateway.v1 import provider_service_pb2 as pb
from provider_gateway.v1 import provider_service_pb2_grpc as pb_grpc

Call = Callable[[], Awaitable[tuple[float, float]]]
MESSAGES = [{"role": "user", "content": "Say something short."}]


class HttpPath:
    """An OpenAI-compatible HTTP endpoint (the upstream itself, or LiteLLM's proxy)."""

    def __init__(self, base_url: str, model: str, api_key: str = "sk-bench") -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HttpPath:
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=False))
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.session is not None
        await self.session.close()

    def _body(self, stream: bool) -> bytes:
        return json.dumps({"model": self.model, "messages": MESSAGES, "stream": stream}).encode()

    async def unary(self) -> tuple[float, float]:
        assert self.session is not None
        start = time.perf_counter()
        async with self.session.post(self.url, data=self._body(False), headers=self.headers) as response:
            response.raise_for_status()
            await response.read()
        total = time.perf_counter() - start
        return total, total

    async def stream(self) -> tuple[float, float]:
        assert self.session is not None
        start = time.perf_counter()
        ttft = 0.0
        async with self.session.post(self.url, data=self._body(True), headers=self.headers) as response:
            response.raise_for_status()
            async for line in response.content:
                if not ttft and line.startswith(b"data: {") and b'"content"' in line:
                    ttft = time.perf_counter() - start
                if line.startswith(b"data: [DONE]"):
                    break
        return ttft, time.perf_counter() - start


class GatewayPath:
    """Calls through a gateway, streams asking for `usage_in_finish` and `batch_events` as both
    clients do by default (the usage once, in the finish; events in hand together as one message:
    under load a short answer's text and finish come as one message, not two); `usage_in_finish=
    False` measures a client that reads `usage` events instead, `batch_events=False` one that
    takes every event in its own message."""

    def __init__(
        self, target: str, model: str, usage_in_finish: bool = True, batch_events: bool = True
    ) -> None:
        self.target = target
        self.model = model
        self.channel: grpc.aio.Channel | None = None
        # The gateway's own account of each call (Finish.timing.gateway_overhead_us): its dispatch
        # work, without the upstream's time or the gRPC transport's.
        self.overheads_us: dict[str, list[int]] = {"unary": [], "stream": []}
        self.request = pb.ChatRequest(
            model=model,
            messages=[pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text=MESSAGES[0]["content"])])],
        )
        self.stream_request = pb.ChatRequest()
        self.stream_request.CopyFrom(self.request)
        self.stream_request.stream_options.usage_in_finish = usage_in_finish
        self.stream_request.stream_options.batch_events = batch_events

    async def __aenter__(self) -> GatewayPath:
        self.channel = grpc.aio.insecure_channel(self.target)
        self.stub = pb_grpc.ProviderServiceStub(self.channel)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.channel is not None
        await self.channel.close()

    async def unary(self) -> tuple[float, float]:
        start = time.perf_counter()
        response = await self.stub.Chat(self.request, timeout=30)
        total = time.perf_counter() - start
        self.overheads_us["unary"].append(response.finish.timing.gateway_overhead_us)
        return total, total

    async def stream(self) -> tuple[float, float]:
        start = time.perf_counter()
        ttft = 0.0
        async for message in self.stub.ChatStream(self.stream_request, timeout=30):
            for event in message.batch.events if message.HasField("batch") else (message,):
                if not ttft and event.HasField("text_delta"):
                    ttft = time.perf_counter() - start
                elif event.HasField("finish"):
                    self.overheads_us["stream"].append(event.finish.timing.gateway_overhead_us)
        return ttft, time.perf_counter() - start


@dataclass
class Stats:
    count: int
    p50_ms: float
    p99_ms: float
    ttft_p50_ms: float
    ttft_p99_ms: float
    throughput: float  # calls per second

    def row(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in self.__dict__.items()}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(call: Call, total: int, concurrency: int, warmup: int = 20, max_seconds: float = 30.0) -> Stats:
    """Run `total` calls with `concurrency` workers (stopping early after `max_seconds`)."""
    for _ in range(warmup):
        await call()
    results: list[tuple[float, float]] = []
    remaining = total
    deadline = time.perf_counter() + max_seconds

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0 and time.perf_counter() < deadline:
            remaining -= 1
            results.append(await call())

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    totals = [t for _, t in results]
    ttfts = [f for f, _ in results]
    return Stats(
        count=len(results),
        p50_ms=statistics.median(totals) * 1000,
        p99_ms=percentile(totals, 0.99) * 1000,
        ttft_p50_ms=statistics.median(ttfts) * 1000,
        ttft_p99_ms=percentile(ttfts, 0.99) * 1000,
        throughput=len(results) / elapsed,
    )
