"""A gateway over a fake of every provider kind (the mock aside): each OpenAI-family host, OpenAI
on the Responses API too, Mistral, Ollama, Anthropic, Gemini, Vertex (Gemini and Claude), Cohere
and Bedrock, each provider named after its kind. The tests that walk every kind share it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
from conftest import RunningGateway, run_gateway, use_fake_aws_credentials

from provider_gateway.fakes import FakeUpstream, kinds
from provider_gateway.fakes.anthropic import FakeAnthropic
from provider_gateway.fakes.bedrock import FakeBedrock
from provider_gateway.fakes.cohere import FakeCohere
from provider_gateway.fakes.gemini import FakeGemini
from provider_gateway.fakes.vertex import FakeVertex
from provider_gateway.providers.openai.presets import PRESETS

OPENAI_HOSTS = tuple(kind for kind, preset in PRESETS.items() if preset.wire == "openai")
CHAT_COMPLETIONS = (*OPENAI_HOSTS, "openai-responses", "mistral")


class EveryKind:
    """`openai` serves the OpenAI-family hosts (each under its own base path) and the Responses API;
    `mistral` and `ollama` may be the same fake or their own."""

    def __init__(self, openai: FakeUpstream, mistral: FakeUpstream, ollama: FakeUpstream) -> None:
        self.openai, self.mistral, self.ollama = openai, mistral, ollama

    async def open(self, stack: AsyncExitStack, patch: pytest.MonkeyPatch) -> None:
        enter = stack.enter_async_context
        for fake in {id(f): f for f in (self.openai, self.mistral, self.ollama)}.values():
            await enter(fake)
        self.anthropic = await enter(FakeAnthropic())
        self.gemini = await enter(FakeGemini())
        self.vertex = await enter(FakeVertex())
        self.cohere = await enter(FakeCohere())
        self.bedrock = await enter(FakeBedrock())
        patch.setenv("PG_EK_KEY", "k")
        patch.setenv("PG_EK_ANTHROPIC", self.anthropic.api_key)
        patch.setenv("PG_EK_GEMINI", self.gemini.api_key)
        patch.setenv("PG_EK_VERTEX", self.vertex.vertex_token)
        patch.setenv("PG_EK_COHERE", self.cohere.api_key)
        use_fake_aws_credentials(patch)

    def config(self) -> str:
        hosts = "".join(
            f'[providers.{h}]\nkind = "{h}"\nbase_url = "{self.openai.url}/{h}"\napi_key_env = "PG_EK_KEY"\n'
            for h in OPENAI_HOSTS
        )
        return (
            hosts
            + f"""
[providers.openai-responses]
kind = "openai"
api = "responses"
base_url = "{self.openai.url}/v1"
api_key_env = "PG_EK_KEY"
[providers.mistral]
kind = "mistral"
base_url = "{self.mistral.url}/mistral"
api_key_env = "PG_EK_KEY"
[providers.ollama]
kind = "ollama"
base_url = "{self.ollama.url}"
[providers.anthropic]
base_url = "{self.anthropic.base_url}"
api_key_env = "PG_EK_ANTHROPIC"
[providers.gemini]
base_url = "{self.gemini.base_url}"
api_key_env = "PG_EK_GEMINI"
[providers.vertex]
kind = "vertex"
project = "p"
location = "us-east5"
base_url = "{self.vertex.base_url}"
access_token_env = "PG_EK_VERTEX"
[providers.cohere]
base_url = "{self.cohere.base_url}"
api_key_env = "PG_EK_COHERE"
[providers.bedrock]
kind = "bedrock"
region = "us-west-2"
endpoint_url = "{self.bedrock.url}"
"""
        )

    def received(self, provider: str) -> int:
        """How many requests `provider`'s fake has received (models lists and counts included)."""
        if provider in (*CHAT_COMPLETIONS, "ollama"):
            return len({"mistral": self.mistral, "ollama": self.ollama}.get(provider, self.openai).requests)
        if provider == "bedrock":
            return len(self.bedrock.seen)
        return len(
            {
                "anthropic": self.anthropic,
                "gemini": self.gemini,
                "vertex": self.vertex,
                "cohere": self.cohere,
            }[provider].calls
        )

    def last_body(self, provider: str) -> Any:
        """The body of the last request `provider`'s fake received (None before any)."""
        if provider in (*CHAT_COMPLETIONS, "ollama"):
            fake = {"mistral": self.mistral, "ollama": self.ollama}.get(provider, self.openai)
            posts = [r for r in fake.requests if r.method == "POST"]
            return posts[-1].json() if posts else None
        if provider == "bedrock":
            return self.bedrock.seen[-1].body if self.bedrock.seen else None
        vendor = {
            "anthropic": self.anthropic,
            "gemini": self.gemini,
            "vertex": self.vertex,
            "cohere": self.cohere,
        }
        calls = vendor[provider].calls
        return calls[-1].body if calls else None

    def problems(self) -> list[str]:
        return [*self.anthropic.problems, *self.gemini.problems, *self.vertex.problems, *self.cohere.problems]


@asynccontextmanager
async def default_fakes_gateway(extra_config: str = "") -> AsyncIterator[tuple[RunningGateway, EveryKind]]:
    """A gateway over every kind's fake answering as the fakes do by default."""
    async with AsyncExitStack() as stack:
        fakes = EveryKind(kinds.build("openai"), kinds.build("mistral"), kinds.build("ollama"))
        with pytest.MonkeyPatch.context() as patch:
            await fakes.open(stack, patch)
            yield await stack.enter_async_context(run_gateway(fakes.config() + extra_config)), fakes
