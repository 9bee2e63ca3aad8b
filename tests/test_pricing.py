"""Cost per attempt and per request, from the price table (issue 16.1-16.2): exact to the micro-unit,
unknown (never 0) without a price, and overridable from the configuration."""

from __future__ import annotations

import tomllib

import orjson
import pytest
from conftest import run_gateway
from vendor_cases import chat_request

from provider_gateway.config import Section
from provider_gateway.domain import Cost, Usage
from provider_gateway.fakes import FakeUpstream, Reply
from provider_gateway.pricing import PriceTable

# A Claude stream as the API sends it, with a cache read and a cache write (5-minute breakpoint).
UNCACHED, CACHE_READ, CACHE_WRITE, OUTPUT = 212, 6_000, 1_500, 87


def anthropic_stream(model: str) -> bytes:
    def frame(kind: str, data: dict[str, object]) -> bytes:
        return f"event: {kind}\ndata: ".encode() + orjson.dumps({"type": kind, **data}) + b"\n\n"

    usage = {
        "input_tokens": UNCACHED,
        "cache_creation_input_tokens": CACHE_WRITE,
        "cache_read_input_tokens": CACHE_READ,
        "output_tokens": 1,
    }
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": model, "content": []}
    return b"".join(
        [
            frame("message_start", {"message": {**message, "stop_reason": None, "usage": usage}}),
            frame("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
            frame("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "Paris."}}),
            frame("content_block_stop", {"index": 0}),
            frame(
                "message_delta", {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": OUTPUT}}
            ),
            frame("message_stop", {}),
        ]
    )


async def test_a_claude_stream_with_cache_read_and_write_costs_the_right_micro_dollars(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PG_X_KEY", "k")
    model = "claude-sonnet-4-5-20250929"
    async with FakeUpstream() as fake:
        fake.script("/v1/messages", Reply(chunks=[anthropic_stream(model)], content_type="text/event-stream"))
        config = f'[providers.a]\nkind = "anthropic"\nbase_url = "{fake.url}"\napi_key_env = "PG_X_KEY"\n'
        async with run_gateway(config) as gateway:
            events = [e async for e in gateway.stub.ChatStream(chat_request(f"a/{model}"), timeout=20)]
    finish = events[-1].finish
    # $3 input, $0.30 cache read, $3.75 cache write, $15 output per million tokens.
    expected = UNCACHED * 3 + CACHE_READ * 0.30 + CACHE_WRITE * 3.75 + OUTPUT * 15
    assert expected == pytest.approx(9366)
    assert (finish.cost.amount_micros, finish.cost.currency, finish.cost.known) == (9366, "USD", True)
    assert finish.cost.usage_source == "provider"
    assert finish.attempts[0].cost == finish.cost


async def test_the_mock_costs_a_known_zero_and_an_unpriced_model_an_unknown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PG_X_KEY", "k")
    async with run_gateway("[providers.mock]\nkind = 'mock'") as gateway:
        answer = await gateway.stub.Chat(chat_request("mock/echo"), timeout=20)
    assert (answer.finish.cost.known, answer.finish.cost.amount_micros) == (True, 0)
    table = PriceTable.builtin()
    unknown = table.cost("openai", "gpt-99-turbo", Usage(10, 10))
    assert unknown == Cost(0, known=False, usage_source="provider")


@pytest.mark.parametrize(
    ("kind", "model", "row"),
    [
        ("openai", "gpt-4o-2024-08-06", "gpt-4o"),
        ("openai", "gpt-4o-mini-2024-07-18", "gpt-4o-mini"),  # the longer row, not gpt-4o's
        ("vertex", "claude-sonnet-4-5@20250929", "claude-sonnet-4-5"),
        ("bedrock", "us.anthropic.claude-opus-4-1-20250805-v1:0", "anthropic.claude-opus-4-1"),
        ("bedrock", "amazon.nova-pro-v1:0", "amazon.nova-pro"),
    ],
)
def test_dated_versioned_and_profiled_ids_find_their_row(kind: str, model: str, row: str) -> None:
    table = PriceTable.builtin()
    assert table.price(kind, model) is table.rows[kind][row]


def test_an_other_model_of_the_family_does_not_take_its_price() -> None:
    assert PriceTable.builtin().price("openai", "o4-mini-deep-research") is None


def test_the_configuration_overrides_and_adds_rows() -> None:
    text = '[openai."gpt-4o"]\ninput = 1.0\noutput = 2.0\n[groq."llama-3.3-70b-versatile"]\ninput = 0.59\noutput = 0.79\n'
    table = PriceTable.from_config(Section(tomllib.loads(text), "gw.toml", "prices"))
    assert table.cost("openai", "gpt-4o", Usage(1000, 100)).amount_micros == 1000 + 200
    assert table.cost("groq", "llama-3.3-70b-versatile", Usage(1000, 1000)).amount_micros == 590 + 790


def test_every_builtin_row_names_its_source_and_date() -> None:
    table = PriceTable.builtin()
    assert table.version
    for models in table.rows.values():
        for price in models.values():
            assert price.source
            assert price.date
