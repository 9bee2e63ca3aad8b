"""The fake upstreams as a person uses them (the CLI) and the server's ownership of the HTTP pool."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import grpc
import httpx
import pytest
from conftest import run_gateway

from provider_gateway.fakes import FakeUpstream, Reply
from provider_gateway.v1 import provider_service_pb2 as pb


async def test_fake_upstream_cli_serves_the_openai_format(monkeypatch: pytest.MonkeyPatch) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "provider_gateway.cli",
        "fake-upstream",
        "openai",
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        first = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        url = first.split(" on ", 1)[1].split(" ", 1)[0]
        assert url.startswith("http://127.0.0.1:")
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            answer = await client.post(
                "/v1/chat/completions",
                headers={"authorization": "Bearer x"},
                json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            )
            assert answer.json()["choices"][0]["message"]["content"] == "Hello from the fake upstream."
            unauthorised = await client.post("/v1/chat/completions", json={"model": "m", "messages": []})
            assert unauthorised.status_code == 401
        # The provider table it prints works as pasted, with the variable it names set to anything.
        hint = [(await asyncio.wait_for(process.stdout.readline(), 30)).decode().rstrip() for _ in range(6)]
        table = [line for line in hint if line.startswith("[") or " = " in line]
        assert table[0] == "[providers.openai]"
        monkeypatch.setenv("FAKE_UPSTREAM_KEY", "anything")
        async with run_gateway("\n".join(table) + "\n") as gateway:
            request = pb.ChatRequest(
                model="openai/gpt-4o",
                messages=[pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text="hi")])],
            )
            reply = await gateway.stub.Chat(request, timeout=30)
        assert reply.text == "Hello from the fake upstream."
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 30)


async def test_server_creates_one_client_per_origin_and_closes_them_at_stop() -> None:
    async with FakeUpstream() as fake:
        fake.on("GET", "/a/models", lambda r: Reply.json({"data": []}))
        config = (
            '[upstream]\ntransport = "httpx"\nmax_connections_per_host = 4\nmax_response_bytes = 1048576\n'
            f'[providers.one]\nkind = "vllm"\nbase_url = "{fake.url}/a"\n'
            f'[providers.two]\nkind = "lmstudio"\nbase_url = "{fake.url}/a"\n'
        )
        async with run_gateway(config) as gateway:
            pool = gateway.server.upstreams
            assert (pool.transport, pool.max_connections, pool.max_response_bytes) == ("httpx", 4, 1 << 20)
            assert list(pool.stats()) == [fake.url]  # both providers share the origin's client
            stats = pool.stats()[fake.url]
            assert stats.requests == 2  # the two start-up health checks, run concurrently
            opened = stats.connections
            assert 1 <= opened <= 2
            for _ in range(5):
                await gateway.stub.ListModels(pb.ListModelsRequest(provider="one"), timeout=10)
            assert (stats.requests, stats.connections) == (7, opened)  # reused, none opened
        assert pool.stats() == {}


def test_the_cli_names_every_fake_kind_without_importing_the_fakes() -> None:
    """`serve` builds the same parser: it must not load aiohttp's server into every gateway."""
    import subprocess
    import sys

    from provider_gateway.fakes import kinds
    from provider_gateway.fakes.cli import KIND_NAMES

    assert sorted(KIND_NAMES) == sorted(kinds.KINDS)
    probe = "import sys, provider_gateway.cli; print('provider_gateway.fakes.server' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "False"


async def test_an_oversized_unary_answer_is_unavailable_with_the_bound_named() -> None:
    async with FakeUpstream() as fake:
        huge = b'{"id":"x","choices":[{"index":0,"message":{"content":"' + b"z" * 300_000 + b'"}}]}'
        fake.on("POST", "/v1/chat/completions", lambda r: Reply(body=huge))
        config = (
            "[upstream]\nmax_response_bytes = 262144\n"
            f'[providers.openai]\nkind = "openai"\nbase_url = "{fake.url}/v1"\napi_key_env = "PATH"\n'
        )
        async with run_gateway(config) as gateway:
            request = pb.ChatRequest(
                model="openai/gpt-4o",
                messages=[pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text="hi")])],
            )
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await gateway.stub.Chat(request, timeout=30)
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
        assert "response body over 262144 bytes" in (caught.value.details() or "")
        assert "max_response_bytes" in (caught.value.details() or "")
