"""The service tier an answer says it was served on sets its price: a flex answer costs the flex
price, a priority one the priority price, a standard (`default`, `auto`, `standard`) one the
standard price, and one served on a tier its model has no prices for (or with no per-token list
price: capacity bought ahead) the standard price, said once in the log. Through the real gateway over gRPC, the answers being recordings of the
vendors' own (tests/replay) with the tier word changed where the test says so; expected costs are
worked out by hand from the recording's usage and prices.toml's row."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import ADAPTER_ROUTING, run_gateway, use_fake_aws_credentials
from google.protobuf import struct_pb2
from replay.support import CORPUS, ask, pieces, replay_gateway
from rpc_util import WAIT_S, chat

from provider_gateway.config import ConfigError, Section
from provider_gateway.domain import Usage
from provider_gateway.fakes import FakeUpstream, Reply
from provider_gateway.pricing import PriceTable
from provider_gateway.providers.gemini.codec import normalise_usage
from provider_gateway.server.auth import hash_key
from provider_gateway.v1 import provider_service_pb2 as pb

KEY = "alice-key-0123456789abcdefghijklmnop"


def served_as(path: Path, recorded: str, tier: str) -> bytes:
    """The recording with its tier word `recorded` replaced by `tier` (JSON text, so any form)."""
    body = path.read_bytes()
    assert recorded.encode() in body, f"{path.name} carries no {recorded}"
    return body.replace(recorded.encode(), tier.encode())


def reply(body: bytes, content_type: str) -> Reply:
    return Reply(chunks=pieces(body), content_type=content_type)


def assert_cost(cost: pb.Cost, expected: int) -> None:
    assert (cost.known, cost.amount_micros, cost.usage_source) == (True, expected, "provider"), cost


async def final_cost(stub: Any, request: pb.ChatRequest, *, stream: bool) -> pb.Cost:
    if stream:
        events = [e async for e in stub.ChatStream(request, timeout=WAIT_S)]
        finish = events[-1].finish
    else:
        finish = (await stub.Chat(request, timeout=WAIT_S)).finish
    assert finish.attempts[-1].cost == finish.cost
    return finish.cost


# --- OpenAI Chat Completions: the top-level `service_tier` of the answer or of its usage chunk ---


@pytest.fixture(scope="module")
async def openai() -> AsyncIterator[tuple[FakeUpstream, Any]]:
    async with replay_gateway("openai", "/v1") as pair:
        yield pair


# gpt-4.1 (the recordings' model): $2 input, $0.50 cached, $8 output; priority $3.50, $0.875, $14;
# no flex prices. tool_calls.json: 1874 prompt tokens (1792 cached), 52 output.
# tool_calls_split.sse: 2361 prompt tokens (2304 cached), 87 output.
CHAT_CASES = [
    ("default", 82 * 2.0 + 1792 * 0.50 + 52 * 8.0, 57 * 2.0 + 2304 * 0.50 + 87 * 8.0),
    ("priority", 82 * 3.5 + 1792 * 0.875 + 52 * 14.0, 57 * 3.5 + 2304 * 0.875 + 87 * 14.0),
    # gpt-4.1 has no flex prices, and prepaid Scale Tier units no token price: standard's
    ("flex", 82 * 2.0 + 1792 * 0.50 + 52 * 8.0, 57 * 2.0 + 2304 * 0.50 + 87 * 8.0),
    ("scale", 82 * 2.0 + 1792 * 0.50 + 52 * 8.0, 57 * 2.0 + 2304 * 0.50 + 87 * 8.0),
]


async def whole_and_streamed(
    pair: tuple[FakeUpstream, Any], url: str, model: str, recorded: tuple[Path, Path], said: str, tier: str
) -> tuple[pb.Cost, pb.Cost]:
    """The costs of a whole answer and of a stream, recordings whose tier word `said` (as JSON
    writes it, with or without a space) is replaced by `tier`."""
    fake, stub = pair
    costs = []
    for path, content_type, stream in (
        (recorded[0], "application/json", False),
        (recorded[1], "text/event-stream", True),
    ):
        spaced = path.suffix == ".json"  # the whole bodies are pretty-printed
        word = f'"service_tier":{" " if spaced else ""}"'
        fake.script(url, reply(served_as(path, f'{word}{said}"', f'{word}{tier}"'), content_type))
        costs.append(await final_cost(stub, ask(model), stream=stream))
    return costs[0], costs[1]


@pytest.mark.parametrize(("tier", "whole", "streamed"), CHAT_CASES, ids=[c[0] for c in CHAT_CASES])
async def test_openai_chat_answers_cost_the_price_of_their_tier(
    openai: tuple[FakeUpstream, Any], tier: str, whole: float, streamed: float
) -> None:
    recorded = (CORPUS / "openai/tool_calls.json", CORPUS / "openai/tool_calls_split.sse")
    costs = await whole_and_streamed(
        openai, "/v1/chat/completions", "openai/gpt-4.1", recorded, "default", tier
    )
    assert_cost(costs[0], round(whole))
    assert_cost(costs[1], round(streamed))


async def test_the_served_tier_reaches_the_client_in_its_usage(openai: tuple[FakeUpstream, Any]) -> None:
    fake, stub = openai
    for tier, said in (("priority", "priority"), ("default", "standard"), ("scale", "scale")):
        body = served_as(
            CORPUS / "openai/tool_calls.json", '"service_tier": "default"', f'"service_tier": "{tier}"'
        )
        fake.script("/v1/chat/completions", reply(body, "application/json"))
        answer = await stub.Chat(ask("openai/gpt-4.1"), timeout=WAIT_S)
        assert answer.usage.service_tier == said
        body = served_as(
            CORPUS / "openai/tool_calls_split.sse", '"service_tier":"default"', f'"service_tier":"{tier}"'
        )
        fake.script("/v1/chat/completions", reply(body, "text/event-stream"))
        events = [e async for e in stub.ChatStream(ask("openai/gpt-4.1"), timeout=WAIT_S)]
        assert events[-1].finish.usage.service_tier == said


# --- OpenAI Responses API: `service_tier` of the terminal response (`response.completed`) -------


@pytest.fixture(scope="module")
async def responses() -> AsyncIterator[tuple[FakeUpstream, Any]]:
    async with replay_gateway("openai", "/v1", extra='api = "responses"') as pair:
        yield pair


# o4-mini: $1.10 input, $0.275 cached, $4.40 output; flex $0.55, $0.138, $2.20; priority $2, $0.50,
# $8. reasoning_function_call.json: 1320 input (1152 cached), 147 output; reasoning_summary.sse:
# 1843 input (1664 cached), 212 output. The recordings say `auto`, even on completion.
RESPONSES_CASES = [
    ("auto", 168 * 1.10 + 1152 * 0.275 + 147 * 4.40, 179 * 1.10 + 1664 * 0.275 + 212 * 4.40),
    ("default", 168 * 1.10 + 1152 * 0.275 + 147 * 4.40, 179 * 1.10 + 1664 * 0.275 + 212 * 4.40),
    ("flex", 168 * 0.55 + 1152 * 0.138 + 147 * 2.20, 179 * 0.55 + 1664 * 0.138 + 212 * 2.20),
    ("priority", 168 * 2.0 + 1152 * 0.50 + 147 * 8.0, 179 * 2.0 + 1664 * 0.50 + 212 * 8.0),
    ("scale", 168 * 1.10 + 1152 * 0.275 + 147 * 4.40, 179 * 1.10 + 1664 * 0.275 + 212 * 4.40),
]


@pytest.mark.parametrize(("tier", "whole", "streamed"), RESPONSES_CASES, ids=[c[0] for c in RESPONSES_CASES])
async def test_openai_responses_answers_cost_the_price_of_their_tier(
    responses: tuple[FakeUpstream, Any], tier: str, whole: float, streamed: float
) -> None:
    recorded = (
        CORPUS / "openai_responses/reasoning_function_call.json",
        CORPUS / "openai_responses/reasoning_summary.sse",
    )
    costs = await whole_and_streamed(responses, "/v1/responses", "openai/o4-mini", recorded, "auto", tier)
    assert_cost(costs[0], round(whole))
    assert_cost(costs[1], round(streamed))


# --- Anthropic Messages: `usage.service_tier` ---------------------------------------------------


# stop_sequence.sse (claude-sonnet-4-5, recorded on the priority tier): 37 input, 2214 5-minute
# cache writes, 23 output; $3 input, $3.75 cache write, $15 output. Anthropic publishes no
# per-token priority price (Priority Tier is a capacity commitment): that answer costs standard's.
@pytest.mark.parametrize(
    ("tier", "expected"),
    [(tier, 37 * 3.0 + 2214 * 3.75 + 23 * 15.0) for tier in ("priority", "standard", "batch")],
)
async def test_anthropic_answers_cost_the_price_of_their_tier(tier: str, expected: float | None) -> None:
    path = CORPUS / "anthropic/stop_sequence.sse"
    async with replay_gateway("anthropic") as (fake, stub):
        fake.script(
            "/v1/messages",
            reply(
                served_as(path, '"service_tier":"priority"', f'"service_tier":"{tier}"'), "text/event-stream"
            ),
        )
        cost = await final_cost(stub, ask("anthropic/claude-sonnet-4-5-20250929"), stream=True)
    assert_cost(cost, round(expected))


# --- Bedrock Converse: `serviceTier: {"type": ...}` beside the usage ------------------------------

NOVA_PRO = "amazon.nova-pro-v1:0"  # $0.80 / $0.20 cached / $3.20; flex half; priority $1.40 / $0.35 / $5.60
CLAUDE = "anthropic.claude-sonnet-4-5-20250929-v1:0"  # no flex nor priority prices


@pytest.fixture(scope="module")
async def bedrock() -> AsyncIterator[tuple[FakeUpstream, Any]]:
    with pytest.MonkeyPatch.context() as patch:
        use_fake_aws_credentials(patch)
        async with FakeUpstream() as fake:
            config = f'[providers.bedrock]\nkind = "bedrock"\nregion = "us-west-2"\nendpoint_url = "{fake.url}"\n{ADAPTER_ROUTING}'
            async with run_gateway(config) as gateway:
                yield fake, gateway.stub


# text_then_tool_use_priority.bin, a ConverseStream recorded on the priority tier: 412 input,
# 2048 cache reads, 58 output.
@pytest.mark.parametrize(
    ("model", "expected"),
    [(NOVA_PRO, 412 * 1.40 + 2048 * 0.35 + 58 * 5.60), (CLAUDE, 412 * 3.0 + 2048 * 0.30 + 58 * 15.0)],
    ids=["nova-pro", "claude"],
)
async def test_a_bedrock_stream_served_on_priority_costs_the_priority_price(
    bedrock: tuple[FakeUpstream, Any], model: str, expected: float | None
) -> None:
    fake, stub = bedrock
    body = (CORPUS / "bedrock/text_then_tool_use_priority.bin").read_bytes()
    fake.script(f"/model/{model}/converse-stream", reply(body, "application/vnd.amazon.eventstream"))
    cost = await final_cost(stub, ask(f"bedrock/{model}"), stream=True)
    assert_cost(cost, round(expected))


# reasoning_tool_use.json (a whole Converse answer): 31 input, 2048 cache reads, 174 output.
@pytest.mark.parametrize(
    ("served", "expected"),
    [
        (None, 31 * 0.80 + 2048 * 0.20 + 174 * 3.20),
        ("default", 31 * 0.80 + 2048 * 0.20 + 174 * 3.20),
        ("flex", 31 * 0.40 + 2048 * 0.10 + 174 * 1.60),
        ("priority", 31 * 1.40 + 2048 * 0.35 + 174 * 5.60),
        ("reserved", 31 * 0.80 + 2048 * 0.20 + 174 * 3.20),  # provisioned capacity: standard's
    ],
)
async def test_a_bedrock_answer_costs_the_price_of_its_tier(
    bedrock: tuple[FakeUpstream, Any], served: str | None, expected: float | None
) -> None:
    fake, stub = bedrock
    answer = json.loads((CORPUS / "bedrock/reasoning_tool_use.json").read_bytes())
    if served is not None:
        answer["serviceTier"] = {"type": served}
    fake.script(f"/model/{NOVA_PRO}/converse", reply(json.dumps(answer).encode(), "application/json"))
    cost = await final_cost(stub, ask(f"bedrock/{NOVA_PRO}"), stream=False)
    assert_cost(cost, round(expected))


# --- Gemini API and Vertex AI: usageMetadata's `serviceTier` / `trafficType` --------------------


@pytest.mark.parametrize(
    ("metadata", "tier"),
    [
        ({"trafficType": "ON_DEMAND"}, "standard"),
        ({"trafficType": "ON_DEMAND_FLEX"}, "flex"),
        ({"trafficType": "ON_DEMAND_PRIORITY"}, "priority"),
        ({"trafficType": "PROVISIONED_THROUGHPUT"}, "provisioned_throughput"),
        ({"serviceTier": "flex"}, "flex"),
        ({"serviceTier": "unspecified", "trafficType": "ON_DEMAND_FLEX"}, "flex"),
        ({"serviceTier": "SERVICE_TIER_PRIORITY"}, "priority"),
        ({}, ""),
    ],
)
def test_gemini_and_vertex_name_the_served_tier(metadata: dict[str, str], tier: str) -> None:
    usage = normalise_usage({"promptTokenCount": 1000, "candidatesTokenCount": 100, **metadata})
    assert usage.service_tier == tier
    cost = PriceTable.builtin().cost("vertex", "gemini-2.5-flash", usage)
    # $0.30 / $2.50 standard, $0.15 / $1.25 flex, $0.54 / $4.50 priority
    expected = {"flex": 275, "priority": 990}.get(tier, 550)  # provisioned throughput: standard's
    assert (cost.known, cost.amount_micros) == (True, expected)


# --- configuration and the budgets' worst case ----------------------------------------------------


def test_configured_tier_prices_are_checked_and_used(caplog: pytest.LogCaptureFixture) -> None:
    section = Section(
        {"openai": {"my-model": {"input": 1.0, "output": 2.0, "flex_input": 0.5, "flex_output": 1.0}}}, "test"
    )
    table = PriceTable.from_config(section)
    usage_flex = table.cost("openai", "my-model", _usage(1000, 100, "flex"))
    assert (usage_flex.known, usage_flex.amount_micros) == (True, 600)
    with caplog.at_level(logging.WARNING, logger="provider_gateway.pricing"):
        for _ in range(2):  # a tier the row does not price: standard's, said once in the log
            usage_priority = table.cost("openai", "my-model", _usage(1000, 100, "priority"))
            assert (usage_priority.known, usage_priority.amount_micros) == (True, 1200)
    said = [r.getMessage() for r in caplog.records if "priced at standard rates" in r.getMessage()]
    assert len(said) == 1
    assert "'priority' tier" in said[0]
    assert "priority_* keys" in said[0]
    for row, problem in (
        ({"input": 1.0, "output": 2.0, "flex_input": 0.5}, "flex_output"),
        ({"input": 1.0, "output": 2.0, "priority_output": 3.0}, "priority_input"),
        ({"input": 1.0, "output": 2.0, "flex_input": -1.0, "flex_output": 1.0}, "flex_input"),
        (
            {
                "input": 1.0,
                "output": 2.0,
                "flex_input": 1,
                "flex_output": 1,
                "flex_long_context_input": 1,
                "flex_long_context_output": 1,
            },
            "long_context_tokens",
        ),
        ({"input": 1.0, "output": 2.0, "turbo_input": 1.0}, "turbo_input"),
        (
            {
                "input": 1,
                "output": 2,
                "long_context_tokens": 9,
                "long_context_input": 1,
                "long_context_output": 2,
                "flex_long_context_input": 1,
                "flex_long_context_output": 1,
            },
            "flex_input",
        ),
    ):
        with pytest.raises(ConfigError, match=problem):
            PriceTable.from_config(Section({"openai": {"my-model": row}}, "test"))


def _usage(input_tokens: int, output_tokens: int, tier: str) -> Usage:
    return Usage(input_tokens, output_tokens, service_tier=tier)


def options(value: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


@pytest.mark.parametrize(
    ("asked", "input_price", "output_price"),
    [
        ({"service_tier": "priority"}, 12.0, 20.0),  # OpenAI's field
        ({"serviceTier": {"type": "priority"}}, 12.0, 20.0),  # Bedrock's
        ({"service_tier": "flex"}, 2.0, 5.0),  # never below the standard price
        ({}, 2.0, 5.0),
    ],
    ids=["openai-priority", "bedrock-priority", "flex", "none"],
)
async def test_a_money_budget_reserves_the_priority_price_a_request_asks_for(
    asked: dict[str, Any], input_price: float, output_price: float
) -> None:
    config = f"""
[prices.mock."echo"]
input = 2.0
output = 5.0
flex_input = 1.0
flex_output = 2.5
priority_input = 12.0
priority_output = 20.0
[[auth.keys]]
name = "alice"
sha256 = "{hash_key(KEY)}"
usd_micros_per_day = 1
"""
    async with run_gateway(config) as gw:
        request = chat("mock/echo", "hi", max_tokens=7)
        if asked:
            request.provider_options.CopyFrom(options(asked))
        prompt = max(1, request.ByteSize() // 4)
        worst = math.ceil(prompt * input_price + 7 * output_price)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await gw.stub.Chat(request, metadata=(("authorization", f"Bearer {KEY}"),), timeout=WAIT_S)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"this request needs {worst} against a usd_micros budget per day of 1" in (
        refused.value.details() or ""
    )
