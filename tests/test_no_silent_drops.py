"""Every ChatRequest field against every provider kind, through the real gRPC server on the fakes
(issue 17.3): a field either reaches the upstream request (the body differs from the same request
without it), or is emulated (Finish.emulated names it), or is refused with FAILED_PRECONDITION
naming it, never silently dropped. The outcome must also be the one catalog/features.toml (and so
docs/capabilities.md) promises for the kind.

Fields not walked, by design: model, provider, fallbacks (routing), metadata (never sent upstream,
as the proto says), provider_options (merged into the body as given, tests/test_owned_options.py),
and the per-part hints the proto documents as best effort (`Message.name`, `cache_breakpoint`).
The mock kind has no upstream and is left out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from conftest import RunningGateway
from every_kind import OPENAI_HOSTS, EveryKind, default_fakes_gateway
from google.protobuf import struct_pb2
from vendor_cases import PNG, chat_request, user, weather_tool

from provider_gateway.catalog.features import FeatureTable
from provider_gateway.v1 import provider_service_pb2 as pb

# case -> (provider, kind, model): every kind, OpenAI on both of its APIs, Vertex with both
# publishers. Models not in the catalog where its row would refuse before the codec is reached.
PROVIDERS = {
    **{host: (host, host, "deepseek-chat" if host == "deepseek" else "gpt-4-turbo") for host in OPENAI_HOSTS},
    "openai-responses": ("openai-responses", "openai", "gpt-4-turbo"),
    "mistral": ("mistral", "mistral", "mistral-large-latest"),
    "ollama": ("ollama", "ollama", "llama3.2"),
    "anthropic": ("anthropic", "anthropic", "claude-sonnet-4-5"),
    "gemini": ("gemini", "gemini", "gemini-2.5-flash"),
    "vertex": ("vertex", "vertex", "gemini-2.5-flash"),
    "vertex-claude": ("vertex", "vertex", "claude-sonnet-4-5@20250929"),
    "cohere": ("cohere", "cohere", "command-a-03-2025"),
    "bedrock": ("bedrock", "bedrock", "anthropic.claude-sonnet-4-5-20250929-v1:0"),
    # Converse serves every family; what each model offers is its codec's (ConverseFeatures).
    # gpt-oss and DeepSeek-R1, which reason unasked (nothing to send for `reasoning.enabled`), aside.
    **{
        f"bedrock-{family}": ("bedrock", "bedrock", model)
        for family, model in (
            ("claude-3-5", "anthropic.claude-3-5-sonnet-20241022-v2:0"),
            ("nova-2", "amazon.nova-2-lite-v1:0"),
            ("nova-micro", "amazon.nova-micro-v1:0"),
            ("titan", "amazon.titan-text-express-v1"),
            ("llama", "meta.llama3-1-70b-instruct-v1:0"),
            ("llama-vision", "us.meta.llama3-2-90b-instruct-v1:0"),
            ("mistral", "mistral.mistral-large-2407-v1:0"),
            ("mixtral", "mistral.mixtral-8x7b-instruct-v0:1"),
            ("cohere", "cohere.command-r-plus-v1:0"),
            ("jamba", "ai21.jamba-1-5-large-v1:0"),
            ("writer", "writer.palmyra-x5-v1:0"),
        )
    },
}


def schema(strict: bool = False) -> pb.ResponseFormat:
    struct = struct_pb2.Struct()
    struct.update({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
    return pb.ResponseFormat(
        type=pb.ResponseFormat.TYPE_JSON_SCHEMA, schema_name="w", json_schema=struct, strict=strict
    )


def picture() -> list[pb.Message]:
    return [
        user("What is in this picture?", pb.ContentPart(image=pb.Image(data=PNG, media_type="image/png")))
    ]


def choice(mode: int) -> pb.ToolChoice:
    return pb.ToolChoice(mode=mode, name=weather_tool().name if mode == pb.ToolChoice.MODE_TOOL else "")  # type: ignore[arg-type]


THINK = {"max_tokens": 8000}
ON = pb.ReasoningOptions(enabled=True)


@dataclass(frozen=True)
class Variant:
    field: str  # as the refusal and Finish.emulated name it
    feature: str  # its column in features.toml ("" for fields every kind takes)
    fields: Callable[[], dict[str, Any]]
    baseline: Callable[[], dict[str, Any]] = dict


VARIANTS = {
    "temperature": Variant("temperature", "temperature", lambda: {"temperature": 0.3}),
    "top_p": Variant("top_p", "top_p", lambda: {"top_p": 0.5}),
    "max_tokens": Variant("max_tokens", "", lambda: {"max_tokens": 77}),
    "stop": Variant("stop", "stop", lambda: {"stop": ["END"]}),
    "tools": Variant("tools", "tools", lambda: {"tools": [weather_tool()]}),
    **{
        f"tool_choice-{name}": Variant(
            "tool_choice",
            f"tool_choice_{name}",
            lambda mode=mode: {"tools": [weather_tool()], "tool_choice": choice(mode)},
            lambda: {"tools": [weather_tool()]},
        )
        for name, mode in (
            ("none", pb.ToolChoice.MODE_NONE),
            ("required", pb.ToolChoice.MODE_REQUIRED),
            ("named", pb.ToolChoice.MODE_TOOL),
        )
    },
    "image": Variant("image", "vision", lambda: {"messages": picture()}, lambda: {"messages": [user("Hi")]}),
    "reasoning.enabled": Variant("reasoning", "reasoning", lambda: {"reasoning": ON, **THINK}, lambda: THINK),
    "reasoning.effort": Variant(
        "reasoning.effort",
        "reasoning_effort",
        lambda: {"reasoning": pb.ReasoningOptions(effort=pb.ReasoningOptions.EFFORT_HIGH)},
    ),
    "reasoning.budget_tokens": Variant(
        "reasoning.budget_tokens",
        "reasoning_budget",
        lambda: {"reasoning": pb.ReasoningOptions(enabled=True, budget_tokens=2048), **THINK},
        lambda: {"reasoning": ON, **THINK},
    ),
    "json_object": Variant(
        "response_format",
        "json_mode",
        lambda: {"response_format": pb.ResponseFormat(type=pb.ResponseFormat.TYPE_JSON_OBJECT)},
    ),
    "json_schema": Variant("response_format", "json_schema", lambda: {"response_format": schema()}),
    "logprobs": Variant(
        "logprobs", "logprobs", lambda: {"logprobs": pb.LogprobsOptions(enabled=True, top_logprobs=2)}
    ),
    "strict": Variant(
        "response_format",
        "strict",
        lambda: {"response_format": schema(strict=True)},
        lambda: {"response_format": schema()},
    ),
}


@pytest.fixture(scope="module")
async def setup() -> AsyncIterator[tuple[RunningGateway, EveryKind]]:
    async with default_fakes_gateway() as running:
        yield running


@dataclass
class Outcome:
    body: Any = None
    emulated: tuple[str, ...] = ()
    error: grpc.aio.AioRpcError | None = None


async def run(gateway: RunningGateway, fakes: EveryKind, case: str, fields: dict[str, Any]) -> Outcome:
    provider, _, model = PROVIDERS[case]
    before = fakes.last_body(provider)
    request = chat_request(f"{provider}/{model}", **fields)
    try:
        response = await gateway.stub.Chat(request, timeout=20)
    except grpc.aio.AioRpcError as error:
        return Outcome(error=error)
    body = fakes.last_body(provider)
    assert body is not before, "the gateway answered without calling the upstream"
    return Outcome(body, tuple(response.finish.emulated))


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("provider", list(PROVIDERS))
async def test_a_field_is_sent_emulated_or_refused(setup: Any, provider: str, variant: str) -> None:
    gateway, fakes = setup
    case = VARIANTS[variant]
    _, kind, model = PROVIDERS[provider]
    baseline = await run(gateway, fakes, provider, case.baseline())
    got = await run(gateway, fakes, provider, case.fields())
    cell = FeatureTable.builtin().cell(kind, case.feature) if case.feature else None
    if got.error is not None:
        details = got.error.details() or ""
        assert got.error.code() == grpc.StatusCode.FAILED_PRECONDITION, details
        if baseline.error is not None and case.field.split(".")[0] not in details:
            # What the variant builds on is itself refused (tools on a model without tool use):
            # the field walked is never reached, and the refusal is the baseline's own.
            assert details == baseline.error.details()
            return
        assert case.field.split(".")[0] in details, details  # names the field...
        assert model in details, details  # ...and the model
        return
    assert cell is None or cell.status != "refused", f"{kind} should refuse {variant}: {cell}"
    assert baseline.error is None, baseline.error.details() if baseline.error else ""
    if cell is not None and cell.status == "emulated":
        assert case.field in got.emulated, f"{variant} on {provider}: Finish.emulated {got.emulated}"
    elif cell is not None and cell.how.startswith("always"):
        pass  # the provider always does it, with no field to send (strict constrained decoding)
    elif case.field not in got.emulated:
        assert got.body != baseline.body, (
            f"{variant} on {provider} ({kind}) was dropped: the body did not change"
        )


@pytest.mark.parametrize("case", list(PROVIDERS))
async def test_a_reasoning_budget_without_enabled_is_refused_before_any_call(setup: Any, case: str) -> None:
    """`budget_tokens` is a setting of the reasoning `enabled` turns on (proto ReasoningOptions): on
    its own it once reached neither Anthropic nor Gemini, and Gemini 2.5, which thinks unasked,
    thought without the client's cap. Every kind now refuses it alike, naming what to set."""
    gateway, fakes = setup
    provider, _, model = PROVIDERS[case]
    before = fakes.received(provider)
    request = chat_request(f"{provider}/{model}", reasoning=pb.ReasoningOptions(budget_tokens=4096), **THINK)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway.stub.Chat(request, timeout=20)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "set reasoning.enabled to use budget_tokens" in (caught.value.details() or "")
    assert fakes.received(provider) == before, "the refused request reached the upstream"
