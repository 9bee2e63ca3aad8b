"""Recorded token counts (tests/replay/count_tokens, one answer a file, its vendor named by the
file's prefix: Anthropic's `/v1/messages/count_tokens`, Gemini's and Vertex AI's `:countTokens`,
Bedrock's CountTokens) served byte for byte from a fake upstream on 127.0.0.1, through the real
gateway's CountTokens, compared with the count the vendor's official SDK reads from the same bytes:
the vendor's own count, never marked `estimated`. A provider kind without a counting endpoint
answers a local estimate, marked as one (docs/capabilities.md)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import pytest
from replay.sdk_clients import bedrock_runtime, google_client
from replay.support import (
    KEY,
    VERTEX_MODELS,
    bedrock_gateway,
    recordings,
    replay,
    replay_gateway,
    vertex_gateway,
)

from provider_gateway.fakes import FakeUpstream
from provider_gateway.v1 import provider_service_pb2 as pb

# google-genai's own aiohttp session subclass warns on import; nothing of the gateway's.
pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")

TEXT = "How many tokens is this sentence?"
CLAUDE = "claude-sonnet-4-5"
BEDROCK_CLAUDE = "anthropic.claude-sonnet-4-5-20250929-v1:0"
GEMINI = "gemini-2.5-flash"


async def anthropic_read(fake: FakeUpstream) -> int:
    client = anthropic.AsyncAnthropic(api_key=KEY, base_url=fake.url, max_retries=0)
    counted = await client.messages.count_tokens(model=CLAUDE, messages=[{"role": "user", "content": TEXT}])
    return counted.input_tokens


async def gemini_read(fake: FakeUpstream) -> int:
    counted = await google_client(fake).aio.models.count_tokens(model=GEMINI, contents=TEXT)
    return counted.total_tokens or 0


async def vertex_read(fake: FakeUpstream) -> int:
    counted = await google_client(fake, vertex=True).aio.models.count_tokens(model=GEMINI, contents=TEXT)
    return counted.total_tokens or 0


async def bedrock_read(fake: FakeUpstream) -> int:
    """botocore's CountTokens (in a thread: it blocks, and the fake answers on this loop)."""

    def run() -> int:
        client = bedrock_runtime(fake, "us-east-1")
        messages = [{"role": "user", "content": [{"text": TEXT}]}]
        counted = client.count_tokens(modelId=BEDROCK_CLAUDE, input={"converse": {"messages": messages}})
        return int(counted["inputTokens"])

    return await asyncio.to_thread(run)


@dataclass(frozen=True)
class Host:
    gateway: Callable[[], Any]
    path: str
    model: str
    read: Callable[[FakeUpstream], Awaitable[int]]


HOSTS = {
    "anthropic": Host(
        lambda: replay_gateway("anthropic"), "/v1/messages/count_tokens", CLAUDE, anthropic_read
    ),
    "gemini": Host(
        lambda: replay_gateway("gemini"), f"/v1beta/models/{GEMINI}:countTokens", GEMINI, gemini_read
    ),
    "vertex": Host(
        vertex_gateway,
        VERTEX_MODELS.format(publisher="google", model=GEMINI) + ":countTokens",
        GEMINI,
        vertex_read,
    ),
    "bedrock": Host(
        lambda: bedrock_gateway("us-east-1"),
        f"/model/{BEDROCK_CLAUDE}/count-tokens",
        BEDROCK_CLAUDE,
        bedrock_read,
    ),
}


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in recordings("count_tokens", ".json")])
async def test_count_matches_sdk(path: Path) -> None:
    vendor = path.stem.split("_")[0]
    host = HOSTS[vendor]
    async with host.gateway() as (fake, stub):
        fake.script(host.path, *[replay(path, "application/json")] * 2)
        ours = await stub.CountTokens(
            pb.CountTokensRequest(model=f"{vendor}/{host.model}", text=TEXT), timeout=20
        )
        asked = json.dumps(fake.last(host.path).json())
        theirs = await host.read(fake)
    assert TEXT in asked  # the text counted is the one asked about
    assert (ours.input_tokens, ours.estimated) == (theirs, False)
    assert ours.provider == vendor


async def test_a_provider_without_a_counting_endpoint_says_its_count_is_an_estimate() -> None:
    async with replay_gateway("openai", "/v1") as (fake, stub):
        counted = await stub.CountTokens(pb.CountTokensRequest(model="openai/gpt-4.1", text=TEXT), timeout=20)
    assert counted.estimated
    assert counted.input_tokens > 0
    assert not [r for r in fake.requests if r.method == "POST"]  # nothing sent upstream to count
