"""No silent drops (issue 17.3, part): what a deployment's provider declares it cannot do (vision,
tools, JSON output, reasoning) is refused FAILED_PRECONDITION naming the field, the provider and
the model, before anything is sent; a fallback that can honour it serves instead."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import grpc
import orjson
import pytest
from conftest import run_gateway
from hypothesis import given, settings
from hypothesis import strategies as st

from provider_gateway.catalog import Catalog
from provider_gateway.domain import (
    Capabilities,
    ChatRequest,
    ImagePart,
    Message,
    ReasoningOptions,
    ResponseFormat,
    ResponseFormatType,
    Role,
    TextPart,
    Tool,
)
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.fakes import FakeUpstream, Reply
from provider_gateway.routing.capabilities import honouring, unhonoured
from provider_gateway.v1 import provider_service_pb2 as pb

JPEG = b"\xff\xd8\xff\xe0 image bytes"


def deployment(provider: str = "p", model: str = "m", **caps: Any) -> Any:
    capabilities = Capabilities(**caps)
    return SimpleNamespace(
        spec=SimpleNamespace(provider=provider, model=model),
        provider=SimpleNamespace(capabilities=lambda: capabilities),
    )


def request(**fields: Any) -> ChatRequest:
    fields.setdefault("messages", [Message(Role.USER, (TextPart("hi"),))])
    return ChatRequest("m", **fields)


@pytest.mark.parametrize(
    ("fields", "caps", "field"),
    [
        (
            {"messages": [Message(Role.USER, (TextPart("a"), ImagePart(data=JPEG)))]},
            {"tools": True},
            "messages[0].content[1].image",
        ),
        ({"tools": [Tool("f", "d", {})]}, {"vision": True}, "tools"),
        (
            {"response_format": ResponseFormat(ResponseFormatType.JSON_OBJECT)},
            {"tools": True},
            "response_format",
        ),
        ({"reasoning": ReasoningOptions(enabled=True)}, {"tools": True}, "reasoning"),
    ],
)
def test_each_declared_lack_names_the_field(
    fields: dict[str, Any], caps: dict[str, bool], field: str
) -> None:
    refusal = unhonoured(request(**fields), deployment(**caps))
    assert refusal is not None
    assert (refusal.kind, refusal.field) == (ErrorKind.FAILED_PRECONDITION, field)
    full = {"vision": True, "tools": True, "json_output": True, "reasoning": True}
    assert unhonoured(request(**fields), deployment(**full)) is None
    with pytest.raises(GatewayError) as refused:
        honouring(request(**fields), [deployment("deepseek", "deepseek-chat", **caps)])
    assert refused.value.kind is ErrorKind.FAILED_PRECONDITION
    assert f"{field}: provider 'deepseek' model 'deepseek-chat' cannot honour it" in refused.value.message


def test_a_deployment_that_cannot_is_skipped_for_one_that_can() -> None:
    lacking, able = deployment("a", vision=False), deployment("b", vision=True)
    image = request(messages=[Message(Role.USER, (ImagePart(data=JPEG),))])
    assert honouring(image, [lacking, able]) == [able]


def image_request(model: str, **fields: Any) -> pb.ChatRequest:
    image = pb.ContentPart(image=pb.Image(data=JPEG, media_type="image/jpeg"))
    return pb.ChatRequest(
        model=model,
        messages=[pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text="Look"), image])],
        **fields,
    )


async def test_an_image_to_a_text_only_provider_is_refused_and_a_fallback_serves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PG_X_KEY", "k")
    chunk = {
        "id": "c",
        "model": "gpt-4o",
        "choices": [{"index": 0, "delta": {"content": "A cat."}, "finish_reason": "stop"}],
    }
    answer = b"data: " + orjson.dumps(chunk) + b"\n\ndata: [DONE]\n\n"
    async with FakeUpstream() as fake:
        fake.script("/v1/chat/completions", Reply(chunks=[answer], content_type="text/event-stream"))
        config = (
            f'[providers.ds]\nkind = "deepseek"\nbase_url = "{fake.url}/ds"\napi_key_env = "PG_X_KEY"\n'
            f'[providers.oa]\nkind = "openai"\nbase_url = "{fake.url}/v1"\napi_key_env = "PG_X_KEY"\n'
        )
        async with run_gateway(config) as gateway:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await gateway.stub.Chat(image_request("ds/deepseek-chat"), timeout=20)
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            details = refused.value.details() or ""
            assert (
                "messages[0].content[1].image: provider 'ds' model 'deepseek-chat' cannot honour it"
                in details
            )
            assert not [r for r in fake.requests if r.path == "/ds/chat/completions"]  # nothing went out
            call = gateway.stub.ChatStream(
                image_request("ds/deepseek-chat", fallbacks=["oa/gpt-4o"]), timeout=20
            )
            events = [e async for e in call]
    assert "".join(e.text_delta.text for e in events) == "A cat."
    assert [a.provider for a in events[-1].finish.attempts] == ["oa"]  # DeepSeek skipped, not failed


# --- the model catalog (issue 17.4) -----------------------------------------------------------------


def test_the_catalog_finds_dated_ids_and_the_config_adds_rows() -> None:
    import tomllib

    from provider_gateway.catalog import Catalog
    from provider_gateway.config import Section

    catalog = Catalog.builtin()
    assert catalog.version
    entry = catalog.entry("openai", "gpt-4o-2024-08-06")
    assert entry is not None
    assert (entry.max_output, "image" in entry.input) == (16384, True)
    assert catalog.entry("openai", "gpt-99") is None  # unknown models pass with the provider's defaults
    text = '[groq."llama-3.3-70b-versatile"]\ncontext_window = 131072\nmax_output = 32768\ntools = true\n'
    added = Catalog.from_config(Section(tomllib.loads(text), "gw.toml", "catalog")).entry(
        "groq", "llama-3.3-70b-versatile"
    )
    assert added is not None
    assert (added.max_output, added.input, added.tools) == (32768, ("text",), True)


async def test_the_catalog_bounds_max_tokens_and_modalities_before_dispatch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PG_X_KEY", "k")
    async with FakeUpstream() as fake:
        fake.on("GET", "/v1/models", lambda _: Reply.json({"object": "list", "data": [{"id": "gpt-4o"}]}))
        config = (
            f'[providers.oa]\nkind = "openai"\nbase_url = "{fake.url}/v1"\napi_key_env = "PG_X_KEY"\n'
            '[catalog.openai."house-text-model"]\nmax_output = 4096\ninput = ["text"]\ntools = true\n'
        )
        async with run_gateway(config) as gateway:
            hi = [pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text="hi")])]
            with pytest.raises(grpc.aio.AioRpcError) as too_many:
                await gateway.stub.Chat(
                    pb.ChatRequest(model="oa/gpt-4o", max_tokens=20000, messages=hi), timeout=20
                )
            assert too_many.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "max_tokens: provider 'oa' model 'gpt-4o' cannot honour it: at most 16384, got 20000" in (
                too_many.value.details() or ""
            )
            with pytest.raises(grpc.aio.AioRpcError) as no_images:  # a row the configuration added
                await gateway.stub.Chat(image_request("oa/house-text-model"), timeout=20)
            assert no_images.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "messages[0].content[1].image" in (no_images.value.details() or "")
            listed = await gateway.stub.ListModels(pb.ListModelsRequest(provider="oa"), timeout=20)
        assert not [r for r in fake.requests if r.path == "/v1/chat/completions"]  # nothing went out
    (model,) = listed.models  # the provider's listing, with the catalog's figures
    assert (model.max_output_tokens, model.context_window, model.vision, model.tools) == (
        16384,
        128000,
        True,
        True,
    )


@settings(max_examples=150, deadline=None)
@given(
    kind_model=st.sampled_from(
        [
            ("openai", "gpt-4o-mini"),
            ("deepseek", "deepseek-chat"),
            ("anthropic", "claude-3-5-haiku"),
            ("p", "m"),
        ]
    ),
    caps=st.fixed_dictionaries(
        {
            name: st.booleans()
            for name in ("vision", "tools", "json_output", "reasoning", "schema_by_forced_tool")
        }
    ),
    max_tokens=st.none() | st.integers(1, 300_000),
    image=st.booleans(),
    tools=st.booleans(),
    fmt=st.sampled_from(list(ResponseFormatType)),
    reasoning=st.booleans(),
    temperature=st.none() | st.just(0.5),
)
def test_a_single_deployment_is_judged_as_in_any_plan(
    kind_model: tuple[str, str],
    caps: dict[str, bool],
    max_tokens: int | None,
    image: bool,
    tools: bool,
    fmt: ResponseFormatType,
    reasoning: bool,
    temperature: float | None,
) -> None:
    """A one-deployment plan (the shortcut) is judged as the same deployment in a longer plan (the
    general walk): usable exactly when unhonoured() finds nothing, else refused with its field."""
    catalog = Catalog.builtin()
    kind, model = kind_model
    one = deployment(kind, model, **caps)
    one.kind = kind
    parts = (TextPart("hi"), *((ImagePart(data=JPEG),) if image else ()))
    ask = request(
        messages=[Message(Role.USER, parts)],
        max_tokens=max_tokens,
        tools=[Tool("f", "d", {})] if tools else [],
        response_format=ResponseFormat(fmt),
        reasoning=ReasoningOptions(enabled=True) if reasoning else None,
        temperature=temperature,
    )
    refusal = unhonoured(ask, one, catalog)
    if refusal is None:
        assert honouring(ask, [one], catalog) == [one]
        assert honouring(ask, [one, one], catalog) == [one, one]
        return
    for plan in ([one], [one, one]):
        with pytest.raises(GatewayError) as refused:
            honouring(ask, plan, catalog)
        assert refused.value.kind is refusal.kind
        assert refused.value.message.startswith(f"{refusal.field}: provider '{kind}' model '{model}'")
