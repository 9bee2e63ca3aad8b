"""Listings show a key what its allow-lists let it use, and nothing of the rest of the config:
ListModels, ListProviders, Health.List, and the providers an error names."""

from __future__ import annotations

import grpc
import pytest
from conftest import run_gateway
from grpc_health.v1 import health_pb2, health_pb2_grpc

from provider_gateway.fakes import FakeUpstream, Reply
from provider_gateway.server import key_scope
from provider_gateway.server.auth import Principal, hash_key
from provider_gateway.v1 import provider_service_pb2 as pb

ALICE = "alice-key-0123456789abcdefghijklmnop"  # every provider and model
BOB = "bob-key-0123456789abcdefghijklmnopqrst"  # mock/echo only
OTTO = "otto-key-0123456789abcdefghijklmnopqr"  # models of "other" only, by pattern

CONFIG = f"""
[providers.mock]
kind = "mock"

[providers.other]
kind = "mock"

[aliases]
fast = "mock/echo"

[auth]
[[auth.keys]]
name = "alice"
sha256 = "{hash_key(ALICE)}"

[[auth.keys]]
name = "bob"
sha256 = "{hash_key(BOB)}"
models = ["mock/echo"]
providers = ["mock"]

[[auth.keys]]
name = "otto"
sha256 = "{hash_key(OTTO)}"
models = ["other/*"]
"""


def bearer(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


def listed(reply: pb.ListModelsResponse) -> set[str]:
    return {f"{m.provider}/{m.id}" for m in reply.models}


async def test_list_models_shows_a_key_only_the_models_it_may_use() -> None:
    async with run_gateway(CONFIG) as gw:
        everything = await gw.stub.ListModels(pb.ListModelsRequest(), metadata=bearer(ALICE), timeout=10)
        bobs = await gw.stub.ListModels(pb.ListModelsRequest(), metadata=bearer(BOB), timeout=10)
        named = await gw.stub.ListModels(
            pb.ListModelsRequest(provider="mock"), metadata=bearer(BOB), timeout=10
        )
        ottos = await gw.stub.ListModels(pb.ListModelsRequest(), metadata=bearer(OTTO), timeout=10)
    assert {"mock/echo", "mock/embed", "other/echo"} <= listed(everything)
    # Before: every model of both providers, to a key that may call one of them.
    assert listed(bobs) == listed(named) == {"mock/echo"}
    assert list(bobs.models[0].aliases) == ["fast"]  # the alias of a model it may use, with it
    assert {m.provider for m in ottos.models} == {"other"}


async def test_list_models_asks_no_provider_the_key_may_not_use(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway's credentials list nothing for a key that may not use the provider."""
    monkeypatch.setenv("LISTING_SCOPE_OPENAI_KEY", "sk-test-listing-scope-0123456789")
    async with FakeUpstream() as fake:
        fake.on("GET", "/v1/models", lambda r: Reply.json({"object": "list", "data": [{"id": "gpt-4o"}]}))
        config = CONFIG + (
            f'[providers.up]\nkind = "openai"\nbase_url = "{fake.url}/v1"\n'
            'api_key_env = "LISTING_SCOPE_OPENAI_KEY"\n[health]\nenabled = false\n'  # no probe but the first
        )
        async with run_gateway(config) as gw:
            asked = len(fake.requests)  # the start-up health probe
            await gw.stub.ListModels(pb.ListModelsRequest(), metadata=bearer(BOB), timeout=10)
            await gw.stub.ListModels(pb.ListModelsRequest(), metadata=bearer(OTTO), timeout=10)
            assert len(fake.requests) == asked
            with pytest.raises(grpc.aio.AioRpcError) as denied:
                await gw.stub.ListModels(
                    pb.ListModelsRequest(provider="up"), metadata=bearer(OTTO), timeout=10
                )
            assert len(fake.requests) == asked
            everything = await gw.stub.ListModels(pb.ListModelsRequest(), metadata=bearer(ALICE), timeout=10)
    assert denied.value.code() == grpc.StatusCode.NOT_FOUND  # as a provider not configured is
    assert denied.value.details() == "no provider 'up' for this key (available: other)"
    assert "up/gpt-4o" in listed(everything)


async def test_an_unknown_provider_error_names_only_the_keys_providers() -> None:
    async with run_gateway(CONFIG) as gw:
        details = {}
        for name, key in (("bob", BOB), ("alice", ALICE)):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await gw.stub.ListModels(
                    pb.ListModelsRequest(provider="nope"), metadata=bearer(key), timeout=10
                )
            assert caught.value.code() == grpc.StatusCode.NOT_FOUND
            details[name] = caught.value.details()
    # Before: "configured: mock, other" to bob too.
    assert details["bob"] == "no provider 'nope' for this key (available: mock)"
    assert details["alice"] == "no provider 'nope' for this key (available: mock, other)"


async def test_list_providers_shows_a_key_only_its_providers() -> None:
    async with run_gateway(CONFIG) as gw:
        bobs = await gw.stub.ListProviders(pb.ListProvidersRequest(), metadata=bearer(BOB), timeout=10)
        ottos = await gw.stub.ListProviders(pb.ListProvidersRequest(), metadata=bearer(OTTO), timeout=10)
        alices = await gw.stub.ListProviders(pb.ListProvidersRequest(), metadata=bearer(ALICE), timeout=10)
    assert ([p.name for p in bobs.providers], bobs.default_provider) == (["mock"], "mock")
    # The default provider is one otto may not use: not named to it.
    assert ([p.name for p in ottos.providers], ottos.default_provider) == (["other"], "")
    assert ([p.name for p in alices.providers], alices.default_provider) == (["mock", "other"], "mock")


async def test_open_health_lists_provider_entries_only_to_a_key_that_may_use_them() -> None:
    async with run_gateway(CONFIG) as gw:
        health = health_pb2_grpc.HealthStub(gw.channel)
        request = health_pb2.HealthListRequest()  # type: ignore[attr-defined]
        anyone = await health.List(request, timeout=10)  # type: ignore[attr-defined]
        bobs = await health.List(request, metadata=bearer(BOB), timeout=10)  # type: ignore[attr-defined]
        alices = await health.List(request, metadata=bearer(ALICE), timeout=10)  # type: ignore[attr-defined]
        two_keys = (*bearer(ALICE), ("x-api-key", BOB))  # whose? no one's: listed as to anyone
        both = await health.List(request, metadata=two_keys, timeout=10)  # type: ignore[attr-defined]
        # Check still answers anyone for any entry it names: probes know what they check.
        checked = await health.Check(health_pb2.HealthCheckRequest(service="provider/other"), timeout=10)
    overall = {"", "provider_gateway.v1.ProviderService"}
    assert set(anyone.statuses) == overall  # before: provider/mock and provider/other too
    assert set(bobs.statuses) == overall | {"provider/mock"}
    assert set(alices.statuses) == overall | {"provider/mock", "provider/other"}
    assert set(both.statuses) == overall
    assert checked.status == health_pb2.HealthCheckResponse.SERVING


async def test_without_auth_every_listing_shows_everything() -> None:
    async with run_gateway(CONFIG.split("[auth]")[0]) as gw:
        models = await gw.stub.ListModels(pb.ListModelsRequest(), timeout=10)
        providers = await gw.stub.ListProviders(pb.ListProvidersRequest(), timeout=10)
        request = health_pb2.HealthListRequest()  # type: ignore[attr-defined]
        entries = await health_pb2_grpc.HealthStub(gw.channel).List(request, timeout=10)  # type: ignore[attr-defined]
    assert {m.provider for m in models.models} == {"mock", "other"}
    assert [p.name for p in providers.providers] == ["mock", "other"]
    assert {"provider/mock", "provider/other"} <= set(entries.statuses)


@pytest.mark.parametrize(
    ("models", "provider", "usable"),
    [
        ((), "other", True),
        (("mock/*",), "mock", True),
        (("mock/*",), "other", False),
        (("mock/echo", "other/e?ho"), "other", True),
        (("*",), "other", True),
        (("o*",), "other", True),  # `*` crosses the slash: "o*" matches "other/echo"
        (("*/gpt-4o",), "openai", True),
        (("[mn]ock/*",), "mock", True),
        (("[!m]ock/*",), "mock", False),
        (("mock",), "mock", False),  # a bare provider name matches no provider/model
        (("mo[ck/*",), "mo[ck", True),  # an unclosed bracket is a literal, as in fnmatch
    ],
)
def test_a_provider_is_usable_when_some_model_pattern_can_match_it(
    models: tuple[str, ...], provider: str, usable: bool
) -> None:
    key = Principal(name="k", digest=b"", models=models)
    assert key_scope.may_use_provider(key, provider) is usable


def test_the_providers_list_bounds_the_patterns() -> None:
    key = Principal(name="k", digest=b"", models=("*",), providers=("mock",))
    assert key_scope.may_use_provider(key, "mock")
    assert not key_scope.may_use_provider(key, "other")
    assert key_scope.may_use_model(key, "mock", "echo")
    assert not key_scope.may_use_model(key, "other", "echo")
