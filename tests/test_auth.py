"""Client authentication, per-key permissions and quotas, through the real gRPC API."""

from __future__ import annotations

import asyncio
import io
import os
import tomllib
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from conftest import run_gateway
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from provider_gateway import cli
from provider_gateway import config as config_module
from provider_gateway.fakes import FakeUpstream, Reply
from provider_gateway.server.auth import AuthConfig, hash_key
from provider_gateway.v1 import provider_service_pb2 as pb

GatewayFactory = Callable[[str], Any]

ALICE = "alice-key-0123456789abcdefghijklmnop"
BOB = "bob-key-0123456789abcdefghijklmnopqrst"
CAROL = "carol-key-0123456789abcdefghijklmnopq"

CONFIG = f"""
[providers.mock.models.slow]
tokens = 400
token_delay_ms = 20

[providers.other]
kind = "mock"

[groups.mixed]
deployments = [{{ provider = "mock", model = "echo" }}, {{ provider = "other", model = "echo" }}]

[groups.mine]
deployments = [{{ provider = "mock", model = "echo" }}]

[auth]
open_health = true
open_reflection = false

[[auth.keys]]
name = "alice"
sha256 = "{hash_key(ALICE)}"

[[auth.keys]]
name = "bob"
sha256 = "{hash_key(BOB)}"
models = ["mock/echo", "mock/slow"]
providers = ["mock"]
requests_per_minute = 3
max_concurrent_streams = 1

[[auth.keys]]
name = "carol"
sha256 = "{hash_key(CAROL)}"
tokens_per_minute = 60
"""


def chat(model: str = "mock/echo", text: str = "hello") -> pb.ChatRequest:
    return pb.ChatRequest(
        model=model, messages=[pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text=text)])]
    )


def bearer(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


async def status_of(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    return info.value


@pytest.mark.parametrize(
    "metadata",
    [
        (),
        (("authorization", "Bearer wrong-key-0123456789abcdefghijk"),),
        (("authorization", f"Basic {ALICE}"),),
        (("authorization", "Bearer "),),
        (("x-api-key", "nope"),),
    ],
    ids=["none", "unknown", "wrong-scheme", "empty-bearer", "unknown-x-api-key"],
)
async def test_missing_or_unknown_key_is_unauthenticated(
    metadata: tuple[tuple[str, str], ...], gateway_factory: GatewayFactory
) -> None:
    async with gateway_factory(CONFIG) as gw:
        error = await status_of(gw.stub.Chat(chat(), metadata=metadata, timeout=10))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "API key" in (error.details() or "")
        stream = gw.stub.ChatStream(chat(), metadata=metadata, timeout=10)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in stream:
                pass
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_bearer_and_x_api_key_are_accepted(gateway_factory: GatewayFactory) -> None:
    async with gateway_factory(CONFIG) as gw:
        response = await gw.stub.Chat(chat(), metadata=bearer(ALICE), timeout=10)
        assert response.text
        response = await gw.stub.Chat(chat(), metadata=(("x-api-key", ALICE),), timeout=10)
        assert response.text
        events = [e async for e in gw.stub.ChatStream(chat(), metadata=bearer(ALICE), timeout=10)]
        assert events[-1].WhichOneof("event") == "finish"


async def test_two_different_keys_in_one_call_are_refused(gateway_factory: GatewayFactory) -> None:
    """Bob's x-api-key and Alice's bearer token in one call: neither is guessed (the first one won,
    so a proxy adding its own key could make a call act as another key); the same key twice is one."""
    async with gateway_factory(CONFIG) as gw:
        for both in (
            (("x-api-key", BOB), ("authorization", f"Bearer {ALICE}")),
            (("authorization", f"Bearer {ALICE}"), ("x-api-key", BOB)),
        ):
            error = await status_of(gw.stub.Chat(chat(), metadata=both, timeout=10))
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "send one key" in (error.details() or "")
        same = (("x-api-key", ALICE), ("authorization", f"Bearer {ALICE}"))
        assert (await gw.stub.Chat(chat(), metadata=same, timeout=10)).text


async def test_health_open_and_reflection_closed_by_config(gateway_factory: GatewayFactory) -> None:
    async with gateway_factory(CONFIG) as gw:
        health = health_pb2_grpc.HealthStub(gw.channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING

        reflection = reflection_pb2_grpc.ServerReflectionStub(gw.channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in reflection.ServerReflectionInfo(iter([request]), timeout=10):
                pass
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        replies = [
            r
            async for r in reflection.ServerReflectionInfo(
                iter([request]), metadata=bearer(ALICE), timeout=10
            )
        ]
        assert replies[0].list_services_response.service


async def test_closed_health_needs_a_key(gateway_factory: GatewayFactory) -> None:
    closed = CONFIG.replace("open_health = true", "open_health = false")
    async with gateway_factory(closed) as gw:
        health = health_pb2_grpc.HealthStub(gw.channel)
        error = await status_of(health.Check(health_pb2.HealthCheckRequest(), timeout=10))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        reply = await health.Check(health_pb2.HealthCheckRequest(), metadata=bearer(ALICE), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize(
    ("request_", "needle"),
    [
        # A provider bob may not use is, to bob, no provider: its name is part of the model id, on
        # the default provider, as an unknown prefix is (tests/test_unseen_providers.py).
        (chat("other/echo"), "model 'mock/other/echo'"),
        (chat("mock/tools"), "model 'mock/tools'"),
        (
            pb.ChatRequest(model="mock/echo", fallbacks=["other/echo"], messages=chat().messages),
            "model 'mock/other/echo'",
        ),
        # A group with a member on a provider bob may not use is refused by its own name: bob
        # does not learn that provider's name (tests/test_group_hides_forbidden_members.py).
        (chat("mixed"), "no model 'mixed' for this key"),
    ],
    ids=["provider", "model", "fallback", "group-member"],
)
async def test_route_outside_the_key_is_refused(
    request_: pb.ChatRequest, needle: str, gateway_factory: GatewayFactory
) -> None:
    async with gateway_factory(CONFIG) as gw:
        error = await status_of(gw.stub.Chat(request_, metadata=bearer(BOB), timeout=10))
        # A provider bob may not use is, to bob, none: NOT_FOUND, as one not configured.
        provider = needle.startswith("no model")
        assert error.code() == (grpc.StatusCode.NOT_FOUND if provider else grpc.StatusCode.PERMISSION_DENIED)
        assert needle in (error.details() or "")
        assert provider or "bob" in (error.details() or "")
        # The unrestricted key may use the same route.
        assert (await gw.stub.Chat(request_, metadata=bearer(ALICE), timeout=10)).finish.provider


async def test_list_models_of_a_forbidden_provider_is_not_found(gateway_factory: GatewayFactory) -> None:
    async with gateway_factory(CONFIG) as gw:
        error = await status_of(
            gw.stub.ListModels(pb.ListModelsRequest(provider="other"), metadata=bearer(BOB), timeout=10)
        )
        assert error.code() == grpc.StatusCode.NOT_FOUND  # as for a provider not configured


def retry_delay_s(error: grpc.aio.AioRpcError) -> float:
    details = dict(error.trailing_metadata() or ())
    status = status_pb2.Status.FromString(details["grpc-status-details-bin"])
    info = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(info)
    return info.retry_delay.ToTimedelta().total_seconds()


async def test_requests_per_minute_quota_returns_retry_info(gateway_factory: GatewayFactory) -> None:
    async with gateway_factory(CONFIG) as gw:
        for _ in range(3):
            await gw.stub.Chat(chat(), metadata=bearer(BOB), timeout=10)
        error = await status_of(gw.stub.Chat(chat(), metadata=bearer(BOB), timeout=10))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "requests-per-minute" in (error.details() or "")
        assert 0 < retry_delay_s(error) <= 60
        # Quotas are per key: another key is unaffected.
        await gw.stub.Chat(chat(), metadata=bearer(ALICE), timeout=10)


async def test_listing_providers_and_health_cost_no_quota(gateway_factory: GatewayFactory) -> None:
    """Bob may make 3 requests a minute and Carol 60 tokens: listing and health spend neither."""
    async with gateway_factory(CONFIG) as gw:
        health = health_pb2_grpc.HealthStub(gw.channel)
        for _ in range(10):
            await gw.stub.ListProviders(pb.ListProvidersRequest(), metadata=bearer(BOB), timeout=10)
            await gw.stub.ListProviders(pb.ListProvidersRequest(), metadata=bearer(CAROL), timeout=10)
            await health.Check(health_pb2.HealthCheckRequest(), metadata=bearer(BOB), timeout=10)
        for _ in range(3):
            await gw.stub.Chat(chat(), metadata=bearer(BOB), timeout=10)
        await gw.stub.Chat(chat(), metadata=bearer(CAROL), timeout=10)


async def test_tokens_per_minute_quota_counts_input_and_output(gateway_factory: GatewayFactory) -> None:
    async with gateway_factory(CONFIG) as gw:
        exhausted = None
        for _ in range(20):
            try:
                await gw.stub.Chat(chat(text="word " * 10), metadata=bearer(CAROL), timeout=10)
            except grpc.aio.AioRpcError as error:
                exhausted = error
                break
        assert exhausted is not None, "60 tokens a minute must run out within 20 requests"
        assert exhausted.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "tokens-per-minute" in (exhausted.details() or "")


async def test_tokens_per_minute_counts_the_input_the_provider_reports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The prompt is reserved as bytes / 4 (about 5 tokens here), but the provider reports 50,000
    input tokens (an image or a file by URL, a cached document): the settlement charges them, so a
    key of 10,000 tokens a minute makes one such call, not every one."""
    monkeypatch.setenv("TPM_TEST_OPENAI_KEY", "sk-test-tpm-0123456789")
    usage = {"prompt_tokens": 50_000, "completion_tokens": 1, "total_tokens": 50_001}
    body = {
        "id": "x",
        "object": "chat.completion",
        "model": "gpt-4o",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}],
        "usage": usage,
    }
    async with FakeUpstream() as fake:
        fake.on("POST", "/v1/chat/completions", lambda r: Reply.json(body))
        config = f"""
[providers.up]
kind = "openai"
base_url = "{fake.url}/v1"
api_key_env = "TPM_TEST_OPENAI_KEY"

[[auth.keys]]
name = "bob"
sha256 = "{hash_key(BOB)}"
tokens_per_minute = 10000
"""
        async with run_gateway(config) as gw:
            assert (await gw.stub.Chat(chat("up/gpt-4o"), metadata=bearer(BOB), timeout=10)).text == "ok"
            await gw.server.auth[0].quotas.drain()  # its settlement, at the loop's next turn
            error = await status_of(gw.stub.Chat(chat("up/gpt-4o"), metadata=bearer(BOB), timeout=10))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "tokens-per-minute" in (error.details() or "")


async def test_max_concurrent_streams_per_key(gateway_factory: GatewayFactory) -> None:
    async with gateway_factory(CONFIG) as gw:
        first = gw.stub.ChatStream(chat("mock/slow"), metadata=bearer(BOB), timeout=30)
        assert (await first.read()).WhichOneof("event")  # the stream is open and holds its slot
        second = gw.stub.ChatStream(chat("mock/slow"), metadata=bearer(BOB), timeout=10)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await second.read()
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "max_concurrent_streams" in (info.value.details() or "")
        first.cancel()
        # The slot is released when the cancelled stream's handler ends; wait for it, bounded.
        async with asyncio.timeout(10):
            while True:
                third = gw.stub.ChatStream(chat(), metadata=bearer(BOB), timeout=10)
                try:
                    events = [e async for e in third]
                    break
                except grpc.aio.AioRpcError as error:
                    if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                        raise
                    await asyncio.sleep(0.02)
        assert events[-1].WhichOneof("event") == "finish"


def parse(text: str) -> config_module.GatewayConfig:
    return config_module.parse(tomllib.loads(text), "test.toml")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[auth]\n", "auth.keys: at least one"),
        ('[[auth.keys]]\nname = "a"\nsha256 = "abc"\n', "auth.keys[0].sha256: must be 64 hex"),
        (f'[[auth.keys]]\nsha256 = "{"0" * 64}"\n', "auth.keys[0].name"),
        (f'[[auth.keys]]\nname = "a"\nkey = "x"\nsha256 = "{"0" * 64}"\n', "auth.keys[0].key: unknown key"),
        (
            f'[[auth.keys]]\nname = "a"\nsha256 = "{"0" * 64}"\n[[auth.keys]]\nname = "a"\nsha256 = "{"1" * 64}"\n',
            "used 2 times",
        ),
        (f'[auth]\nopen_health = 1\n[[auth.keys]]\nname = "a"\nsha256 = "{"0" * 64}"\n', "auth.open_health"),
    ],
)
def test_auth_config_errors_name_the_key(text: str, needle: str) -> None:
    with pytest.raises(config_module.ConfigError) as info:
        AuthConfig.from_config(parse(text))
    assert needle in str(info.value)


def test_no_auth_table_means_open() -> None:
    assert AuthConfig.from_config(parse("")) is None


def test_hash_key_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(ALICE + "\n"))
    assert cli.main(["hash-key"]) == 0
    assert capsys.readouterr().out.strip() == hash_key(ALICE)
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert cli.main(["hash-key"]) == 2
    assert "at least" in capsys.readouterr().err


async def test_group_of_allowed_deployments_is_allowed(gateway_factory: GatewayFactory) -> None:
    async with gateway_factory(CONFIG) as gw:
        response = await gw.stub.Chat(chat("mine"), metadata=bearer(BOB), timeout=10)
        assert response.finish.provider == "mock"


async def test_the_cli_takes_its_key_from_the_environment_or_a_file(
    gateway_factory: GatewayFactory, tmp_path: Any
) -> None:
    """PROVIDER_GATEWAY_API_KEY, so that the key is not in the command line (ps shows that)."""
    from processes import run_process
    from served import CLI

    async with gateway_factory(CONFIG) as gw:
        env = {**os.environ, "PROVIDER_GATEWAY_API_KEY": ALICE}
        code, out, err = await run_process(CLI, "models", "--target", gw.target, cwd=tmp_path, env=env)
        assert code == 0, err
        assert "mock/echo" in out
        env.pop("PROVIDER_GATEWAY_API_KEY")
        code, _, err = await run_process(CLI, "models", "--target", gw.target, cwd=tmp_path, env=env)
        assert code == 1
        assert "UNAUTHENTICATED" in err
        (tmp_path / "key").write_text(ALICE + "\n")  # a mounted secret file, newline and all
        code, out, err = await run_process(
            CLI,
            "models",
            "--target",
            gw.target,
            "--api-key-file",
            str(tmp_path / "key"),
            cwd=tmp_path,
            env=env,
        )
        assert code == 0, err
        assert "mock/echo" in out


async def test_a_cancelled_stream_charges_what_it_consumed(gateway_factory: GatewayFactory) -> None:
    """The client leaves a stream after a dozen tokens: the key pays for them (estimated, as the
    provider never reported usage), so its next request is over a small tokens-per-minute quota."""
    config = f"""
[providers.mock.models.slow]
tokens = 400
token_delay_ms = 20

[[auth.keys]]
name = "dave"
sha256 = "{hash_key(ALICE)}"
tokens_per_minute = 14
"""
    async with gateway_factory(config) as gw:
        stream = gw.stub.ChatStream(chat("mock/slow", "tell me"), metadata=bearer(ALICE), timeout=10)
        relayed = ""
        while len(relayed) < 60:  # about fifteen tokens' worth
            relayed += (await stream.read()).text_delta.text
        stream.cancel()
        # Probes that are admitted (and charged about 2 tokens each) but fail validation, so they
        # consume no output: the prompt and three probes stay under 14 tokens unless the relayed
        # tokens were charged too.
        probe = pb.ChatRequest(model="mock/echo")
        for _ in range(3):
            await asyncio.sleep(0.5)  # bounded: the charge is made as the cancelled handler unwinds
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await gw.stub.Chat(probe, metadata=bearer(ALICE), timeout=10)
            if refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                assert "tokens-per-minute" in (refused.value.details() or "")
                return
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        raise AssertionError("the relayed tokens were never charged")
