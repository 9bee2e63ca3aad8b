"""provider_options may add what a vendor offers, never set a field the gateway owns (issue 18.3),
and is bounded in size.

Every provider kind, over the real gRPC API: a key that collides with what the gateway validates and
charges quota by is refused with INVALID_ARGUMENT naming it, before any upstream is called, and so
are options over `[limits] max_provider_options_bytes`. The upstreams here listen nowhere, so a
request that got through would fail UNAVAILABLE instead.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from conftest import RunningGateway, run_gateway, use_fake_aws_credentials
from google.protobuf import struct_pb2
from vendor_cases import chat_error, chat_request

# provider table (without base_url) and model, per wire
WIRES = {
    "openai": ('kind = "openai"\napi_key_env = "PG_X_KEY"', "gpt-4o"),
    "responses": ('kind = "openai"\napi = "responses"\napi_key_env = "PG_X_KEY"', "gpt-4o"),
    "mistral": ('kind = "mistral"\napi_key_env = "PG_X_KEY"', "mistral-large-latest"),
    "ollama": ('kind = "ollama"', "llama3.2"),
    "anthropic": ('kind = "anthropic"\napi_key_env = "PG_X_KEY"', "claude-sonnet-4-5"),
    "gemini": ('kind = "gemini"\napi_key_env = "PG_X_KEY"', "gemini-2.5-flash"),
    "cohere": ('kind = "cohere"\napi_key_env = "PG_X_KEY"', "command-a-03-2025"),
    "bedrock": ('kind = "bedrock"\nregion = "us-west-2"', "anthropic.claude-3-5-sonnet-20241022-v2:0"),
}
# (wire, provider_options, the key the refusal must name)
OWNED_CASES = [
    ("openai", {"max_tokens": 999999999}, "max_tokens"),
    ("openai", {"n": 64}, "n"),
    ("openai", {"temperature": 99}, "temperature"),
    ("openai", {"user": "someone-else"}, "user"),
    ("openai", {"tools": []}, "tools"),
    ("openai", {"max_completion_tokens": 10**6}, "max_completion_tokens"),
    ("responses", {"max_output_tokens": 10**6}, "max_output_tokens"),
    ("responses", {"text": {"format": {"type": "text"}}}, "text"),
    ("mistral", {"max_tokens": 10**6}, "max_tokens"),
    ("ollama", {"options": {"num_predict": 10**6}}, "options.num_predict"),
    ("ollama", {"format": "json"}, "format"),
    ("anthropic", {"max_tokens": 10**6}, "max_tokens"),
    ("anthropic", {"tool_choice": {"type": "any"}}, "tool_choice"),
    ("gemini", {"generationConfig": {"maxOutputTokens": 10**6}}, "generationConfig.maxOutputTokens"),
    ("gemini", {"generation_config": {"candidate_count": 8}}, "generation_config.candidate_count"),
    ("cohere", {"max_tokens": 10**6}, "max_tokens"),
    ("cohere", {"p": 1.5}, "p"),
    ("bedrock", {"inferenceConfig": {"maxTokens": 10**6}}, "inferenceConfig"),
    ("bedrock", {"max_tokens": 10**6}, "max_tokens"),
]


@pytest.fixture(scope="module")
async def gateway() -> AsyncIterator[RunningGateway]:
    with socket.socket() as probe:  # a port nobody listens on: no request may reach it
        probe.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{probe.getsockname()[1]}"
    tables = []
    for name, (table, _) in WIRES.items():
        url_key = "endpoint_url" if name == "bedrock" else "base_url"
        suffix = "/v1" if name in {"openai", "responses", "mistral"} else ""
        tables.append(f'[providers.{name}]\n{table}\n{url_key} = "{nowhere}{suffix}"\n')
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PG_X_KEY", "test-key")
        use_fake_aws_credentials(patch)
        async with run_gateway("\n".join(tables)) as running:
            yield running


def options(values: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(values)
    return struct


@pytest.mark.parametrize(("wire", "values", "key"), OWNED_CASES, ids=lambda v: str(v)[:30])
async def test_an_owned_field_in_provider_options_is_refused(
    gateway: RunningGateway, wire: str, values: dict[str, Any], key: str
) -> None:
    model = f"{wire}/{WIRES[wire][1]}"
    error, seen = await chat_error(gateway.stub, chat_request(model, provider_options=options(values)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert f"provider_options {key!r}" in (error.details() or "")
    assert seen == []
    unary = await chat_error_unary(gateway, chat_request(model, provider_options=options(values)))
    assert unary.code() == grpc.StatusCode.INVALID_ARGUMENT


async def chat_error_unary(gateway: RunningGateway, request: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.stub.Chat(request, timeout=20)
    return caught.value


@pytest.mark.parametrize("wire", sorted(WIRES))
async def test_a_vendor_option_the_gateway_does_not_own_goes_through(
    gateway: RunningGateway, wire: str
) -> None:
    """Not refused: the call reaches for the upstream (which listens nowhere here)."""
    model = f"{wire}/{WIRES[wire][1]}"
    vendor_option = {"gemini": {"generationConfig": {"topK": 5}}, "ollama": {"options": {"num_ctx": 4096}}}
    values = vendor_option.get(wire, {"seed_or_similar_vendor_field": 7})
    error, _ = await chat_error(gateway.stub, chat_request(model, provider_options=options(values)))
    assert error.code() == grpc.StatusCode.UNAVAILABLE, error.details()


@pytest.mark.parametrize("wire", sorted(WIRES))
async def test_options_over_the_byte_limit_are_refused_before_any_other_check(
    gateway: RunningGateway, wire: str
) -> None:
    """Refused for their size, not for the owned key they also carry: the check that finds owned
    keys walks every option, and the size is checked before any such walk."""
    values = {"max_tokens": 10**6, "logit_bias": {str(i): -100 for i in range(4000)}}
    request = chat_request(f"{wire}/{WIRES[wire][1]}", provider_options=options(values))
    size = request.provider_options.ByteSize()
    assert size > 64 * 1024  # the default limit
    error, seen = await chat_error(gateway.stub, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert error.details() == (
        f"provider_options: {size} bytes exceeds the 65536-byte limit ([limits] max_provider_options_bytes); "
        "send only the vendor fields the request's own fields do not cover, or raise the limit"
    )
    assert seen == []


def deepest(shape: str) -> dict[str, Any]:
    """The most deeply nested options protobuf decodes in a request: 33 objects, or an object
    holding 48 lists (a level deeper is refused as the request is decoded, test_undecodable.py)."""
    value: Any = {"seed": 1} if shape == "objects" else 1
    for _ in range(32 if shape == "objects" else 48):
        value = {"a": value} if shape == "objects" else [value]
    return value if shape == "objects" else {"a": value}


@pytest.mark.parametrize("shape", ["objects", "lists"])
@pytest.mark.parametrize("wire", sorted(WIRES))
async def test_the_deepest_options_that_decode_reach_every_upstream(
    gateway: RunningGateway, wire: str, shape: str
) -> None:
    """Why nesting has no `[limits]` bound of its own: whatever decodes, every step after (checks,
    conversion, each wire's merge and body encoding) takes, and the call reaches for the upstream."""
    error, _ = await chat_error(
        gateway.stub, chat_request(f"{wire}/{WIRES[wire][1]}", provider_options=options(deepest(shape)))
    )
    assert error.code() == grpc.StatusCode.UNAVAILABLE, error.details()


DOC_ROWS = {  # wire -> the module whose OWNED_FIELDS the doc's row lists, by the row's "wire" cell
    "Chat Completions, Completions": "provider_gateway.providers.openai.codec",
    "Responses": "provider_gateway.providers.openai.responses",
    "Messages, Complete": "provider_gateway.providers.anthropic.codec",
    "generateContent": "provider_gateway.providers.gemini.codec",
    "v2 Chat": "provider_gateway.providers.cohere.codec",
    "/api/chat, /api/generate": "provider_gateway.providers.ollama.codec",
    "Converse (top level and `additionalModelRequestFields`), InvokeModel bodies": (
        "provider_gateway.providers.bedrock.codec"
    ),
}


def test_the_documented_lists_are_the_owned_fields() -> None:
    import importlib
    import re
    from pathlib import Path

    from provider_gateway.providers.owned_options import owned

    doc = (Path(__file__).resolve().parent.parent / "docs" / "provider-options.md").read_text()
    rows = {}
    for line in doc.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[1] in DOC_ROWS:
            rows[cells[1]] = owned(*re.findall(r"`([^`]+)`", cells[2]))
    assert set(rows) == set(DOC_ROWS)
    for wire, module in DOC_ROWS.items():
        assert rows[wire] == importlib.import_module(module).OWNED_FIELDS, wire
