"""The gateway and fake upstream the logprobs tests share: OpenAI-family and Anthropic providers
on one fake, and the openai SDK (the oracle) pointed at the same fake."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import openai
from conftest import ADAPTER_ROUTING, run_gateway

from provider_gateway.fakes import FakeUpstream, kinds

KEY = "sk-test-logprobs"
CHAT_PATH = "/v1/chat/completions"
TOP = 3
# What a user compares: each token with its number, its bytes, and its alternatives.
Entry = tuple[str, float, bytes | None, list[tuple[str, float, bytes | None]]]


class Env:
    def __init__(self, fake: FakeUpstream, stub: Any, target: str) -> None:
        self.fake = fake
        self.stub = stub
        self.target = target
        self.sdk = openai.AsyncOpenAI(api_key=KEY, base_url=fake.url + "/v1", max_retries=0)


@asynccontextmanager
async def logprobs_env(keys_dir: Path, responses: bool = False) -> AsyncIterator[Env]:
    """Providers `oa` (openai), `groq`, `ant` (anthropic) and, with `responses`, `rs` (openai's
    Responses API), all on one fake."""
    key_file = keys_dir / "key"
    key_file.write_text(KEY)
    key = f'api_key_file = "{key_file}"\n'
    async with FakeUpstream() as fake:
        kinds.openai(fake)
        config = (
            f'[providers.oa]\nkind = "openai"\nbase_url = "{fake.url}/v1"\n{key}'
            + (
                f'[providers.rs]\nkind = "openai"\napi = "responses"\nbase_url = "{fake.url}/v1"\n{key}'
                if responses
                else ""
            )
            + f'[providers.groq]\nkind = "groq"\nbase_url = "{fake.url}/groq"\n{key}'
            f'[providers.ant]\nkind = "anthropic"\nbase_url = "{fake.url}/anthropic"\n{key}'
            f"{ADAPTER_ROUTING}"
        )
        async with run_gateway(config) as gateway:
            env = Env(fake, gateway.stub, gateway.target)
            try:
                yield env
            finally:
                await env.sdk.close()
