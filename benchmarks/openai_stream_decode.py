"""CPU per upstream event of an OpenAI-family stream, bytes in, domain events out (issue 15).

    .venv/bin/python benchmarks/openai_stream_decode.py
    PYTHONPATH=<older tree>/service .venv/bin/python benchmarks/openai_stream_decode.py   # before

The OpenAI adapter's `chat_stream` (SSE decoder, JSON, chunk parser, merge of each read's deltas)
over an in-memory upstream that hands it the bytes `fake_openai.py` sends for the load benchmarks:
every event in its own read (the light-load case), or the whole body in one read (a burst). No
socket, router or server: only the per-event decode. CPU time (`process_time`) per stream, the
best of 40 rounds of 100 streams; streams of 20 and of 200 tokens, whose difference over the 180
extra events is the cost per event without the stream's own set-up. An older tree is measured by
putting its `service` directory first on PYTHONPATH (`git archive REV service | tar -x -C DIR`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from fake_openai import Upstream as FakeOpenAI

from provider_gateway.domain import ChatRequest, Message, Role, TextPart
from provider_gateway.providers.openai.adapter import OpenAIProvider
from provider_gateway.providers.openai.presets import PRESETS

REQUEST = ChatRequest(model="gpt-4o-mini", messages=[Message(Role.USER, (TextPart("hi"),))])


class InMemoryUpstream:
    """What the adapter's `upstream.stream(...)` gives: the body's reads, from memory."""

    def __init__(self, reads: list[bytes]) -> None:
        self.reads = reads

    @contextlib.asynccontextmanager
    async def stream(self, method: str, path: str, **_: Any) -> AsyncIterator[AsyncIterator[bytes]]:
        async def chunks() -> AsyncIterator[bytes]:
            for read in self.reads:
                yield read

        yield chunks()


def upstream_events(tokens: int) -> list[bytes]:
    return [*FakeOpenAI(tokens, 0).sse_chunks, b"data: [DONE]\n\n"]


async def stream_us(tokens: int, one_read: bool) -> float:
    events = upstream_events(tokens)
    reads = [b"".join(events)] if one_read else events
    provider = OpenAIProvider("openai", "openai", PRESETS["openai"], InMemoryUpstream(reads))

    async def one() -> None:
        async for _ in provider.chat_stream(REQUEST):
            pass

    for _ in range(200):
        await one()
    best = float("inf")
    for _ in range(40):
        started = time.process_time()
        for _ in range(100):
            await one()
        best = min(best, (time.process_time() - started) / 100)
    return best * 1e6


async def main() -> None:
    print("| reads | per stream, 20 tokens | per stream, 200 tokens | per event |\n| --- | --- | --- | --- |")
    for one_read, label in ((False, "one event each"), (True, "the whole body")):
        short, long = await stream_us(20, one_read), await stream_us(200, one_read)
        print(f"| {label} | {short:.0f} µs | {long:.0f} µs | {(long - short) / 180:.2f} µs |")


if __name__ == "__main__":
    asyncio.run(main())
