"""Cost per attempt and per request, from the price table (issue 16.1-16.2): exact to the micro-unit,
unknown (never 0) without a price, and overridable from the configuration."""

from __future__ import annotations

import tomllib
from pathlib import Path

import orjson
import pytest
from conftest import run_gateway
from vendor_cases import PNG, chat_request, user

from provider_gateway.config import ConfigError, Section
from provider_gateway.domain import Cost, Usage
from provider_gateway.fakes import FakeUpstream, Reply
from provider_gateway.model_ids import MAX_REMEMBERED_IDS, ModelRows
from provider_gateway.pricing import PriceTable
from provider_gateway.v1 import provider_service_pb2 as pb

# A Claude stream as the API sends it, with a cache read and a cache write (5-minute breakpoint).
UNCACHED, CACHE_READ, CACHE_WRITE, OUTPUT = 212, 6_000, 1_500, 87


def anthropic_stream(model: str, one_hour_writes: int = 0) -> bytes:
    def frame(kind: str, data: dict[str, object]) -> bytes:
        return f"event: {kind}\ndata: ".encode() + orjson.dumps({"type": kind, **data}) + b"\n\n"

    usage: dict[str, object] = {
        "input_tokens": UNCACHED,
        "cache_creation_input_tokens": CACHE_WRITE,
        "cache_read_input_tokens": CACHE_READ,
        "output_tokens": 1,
    }
    if one_hour_writes:  # the API names the writes per TTL (the anthropic SDK's CacheCreation)
        usage["cache_creation"] = {
            "ephemeral_5m_input_tokens": CACHE_WRITE - one_hour_writes,
            "ephemeral_1h_input_tokens": one_hour_writes,
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
        ("openai", "gpt-5-mini-2025-08-07", "gpt-5-mini"),  # its own row, not gpt-5's
        ("openai", "o1-2024-12-17", "o1"),
        ("anthropic", "claude-3-haiku-20240307", "claude-3-haiku"),
        ("vertex", "claude-opus-4-1@20250805", "claude-opus-4-1"),
        ("bedrock", "us.anthropic.claude-haiku-4-5-20251001-v1:0", "anthropic.claude-haiku-4-5"),
        ("gemini-openai", "gemini-2.5-flash", "gemini-2.5-flash"),
    ],
)
def test_dated_versioned_and_profiled_ids_find_their_row(kind: str, model: str, row: str) -> None:
    table = PriceTable.builtin()
    assert table.price(kind, model) is table.rows[kind][row]


def test_gemini_through_its_openai_endpoint_costs_what_the_gemini_api_does() -> None:
    table = PriceTable.builtin()
    usage = Usage(input_tokens=1_000, output_tokens=500, cache_read_tokens=200)
    for model in table.rows["gemini-openai"]:
        assert table.cost("gemini-openai", model, usage) == table.cost("gemini", model, usage), model


@pytest.mark.parametrize(
    ("kind", "model"),
    [("openai", "o4-mini-deep-research"), ("openai", "o1-pro"), ("gemini", "gemini-2.0-flash-lite")],
)
def test_an_other_model_of_the_family_does_not_take_its_price(kind: str, model: str) -> None:
    assert PriceTable.builtin().price(kind, model) is None


def test_answers_for_ids_the_table_does_not_list_are_remembered_within_a_bound() -> None:
    """Callers choose model ids: the answers kept for them stay bounded, and stay right when the
    oldest are forgotten or a row is added."""
    table = PriceTable.builtin()
    dated, row = "gpt-4o-2024-08-06", table.rows["openai"]["gpt-4o"]
    assert table.price("openai", dated) is row
    for n in range(3 * MAX_REMEMBERED_IDS):
        assert table.price("openai", f"caller-model-{n}") is None
    assert table.price("openai", dated) is row  # forgotten, then found again
    rows = ModelRows({"openai": {"gpt-4o": 1}})
    for n in range(3 * MAX_REMEMBERED_IDS):
        rows.find("openai", f"caller-model-{n}")
    assert len(rows._answers) == MAX_REMEMBERED_IDS
    assert rows.find("openai", dated) == 1
    rows.put("openai", dated, 2)  # a configuration row for the dated id itself now answers it
    assert rows.find("openai", dated) == 2
    last = f"caller-model-{3 * MAX_REMEMBERED_IDS - 1}"  # remembered as having no row
    rows.put("openai", "*", 3)  # a catch-all row now answers the ids that had none
    assert rows.find("openai", last) == 3


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


@pytest.mark.parametrize(
    ("model", "prices", "micros"),
    [
        # input, cache read, 5-minute write, 1-hour write, output: USD per million tokens
        ("claude-sonnet-4-5-20250929", (3.0, 0.30, 3.75, 6.0, 15.0), 11_616),
        ("claude-opus-4-1-20250805", (15.0, 1.50, 18.75, 30.0, 75.0), 58_080),
        ("claude-3-haiku-20240307", (0.25, 0.03, 0.30, 0.50, 1.25), 992),
    ],
)
async def test_one_hour_cache_writes_cost_their_own_price(
    monkeypatch: pytest.MonkeyPatch, model: str, prices: tuple[float, ...], micros: int
) -> None:
    """Of the 1,500 tokens written, the API says 1,000 were for a 1-hour breakpoint: those cost the
    1-hour write price, the 500 of 5 minutes the 5-minute one."""
    monkeypatch.setenv("PG_X_KEY", "k")
    stream = anthropic_stream(model, one_hour_writes=1_000)
    async with FakeUpstream() as fake:
        fake.script("/v1/messages", Reply(chunks=[stream], content_type="text/event-stream"))
        config = f'[providers.a]\nkind = "anthropic"\nbase_url = "{fake.url}"\napi_key_env = "PG_X_KEY"\n'
        async with run_gateway(config) as gateway:
            events = [e async for e in gateway.stub.ChatStream(chat_request(f"a/{model}"), timeout=20)]
    usage = next(e.usage for e in events if e.WhichOneof("event") == "usage")
    assert usage.cache_write_tokens == CACHE_WRITE
    fresh, read, write_5m, write_1h, output = prices
    expected = UNCACHED * fresh + CACHE_READ * read + 500 * write_5m + 1_000 * write_1h + OUTPUT * output
    assert events[-1].finish.cost.amount_micros == round(expected) == micros


@pytest.mark.parametrize(
    ("kind", "model", "base", "long"),
    [
        ("gemini", "gemini-2.5-pro", (1.25, 10.0), (2.50, 15.0)),
        ("vertex", "gemini-2.5-pro", (1.25, 10.0), (2.50, 15.0)),
        ("anthropic", "claude-sonnet-4-5", (3.0, 15.0), (6.0, 22.5)),
        ("bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0", (3.0, 15.0), (6.0, 22.5)),
    ],
)
def test_a_prompt_past_200k_tokens_is_billed_whole_at_the_long_context_tier(
    kind: str, model: str, base: tuple[float, float], long: tuple[float, float]
) -> None:
    table = PriceTable.builtin()
    at_limit = table.cost(kind, model, Usage(input_tokens=200_000, output_tokens=1_000))
    past = table.cost(kind, model, Usage(input_tokens=200_001, output_tokens=1_000))
    assert at_limit.amount_micros == round(200_000 * base[0] + 1_000 * base[1])
    assert past.amount_micros == round(200_001 * long[0] + 1_000 * long[1])


def test_cache_tokens_count_towards_the_long_context_threshold() -> None:
    """150K read from the cache and 60K fresh: 210K of prompt, so every token takes the long tier."""
    usage = Usage(input_tokens=210_000, output_tokens=0, cache_read_tokens=150_000)
    cost = PriceTable.builtin().cost("anthropic", "claude-sonnet-4-5", usage)
    assert cost.amount_micros == round(60_000 * 6.0 + 150_000 * 0.60)


def test_reasoning_images_and_requests_priced_apart_where_a_row_says_so() -> None:
    text = """
[custom."thinker"]
input = 1.0
output = 2.0
reasoning = 5.0
per_image = 0.002
per_request = 0.0005
source = "a contract"
"""
    table = PriceTable.from_config(Section(tomllib.loads(text), "gw.toml", "prices"))
    usage = Usage(input_tokens=1_000, output_tokens=300, reasoning_tokens=200)
    cost = table.cost("custom", "thinker", usage, images=3)
    # 1,000 in; 100 answer tokens at $2 and 200 reasoning at $5; 3 images at $0.002; one request.
    assert cost.amount_micros == 1_000 + 100 * 2 + 200 * 5 + 3 * 2_000 + 500


@pytest.mark.parametrize(("kind", "model"), [("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4-5")])
@pytest.mark.parametrize("images", [0, 1, 7])
def test_images_cost_nothing_on_a_row_without_an_image_price(kind: str, model: str, images: int) -> None:
    """The router counts a request's images only for a row that prices them (`cost_at`): on any
    other row, the cost with them must be the cost without them, as the general path computes it."""
    table = PriceTable.builtin()
    price = table.price(kind, model)
    assert price is not None
    assert not price.per_image
    usage = Usage(input_tokens=1_234, output_tokens=56)
    assert table.cost_at(price, usage, "provider", 0) == table.cost(kind, model, usage, "provider", images)


def test_a_long_context_tier_needs_its_prices() -> None:
    text = '[openai."m"]\ninput = 1.0\noutput = 1.0\nlong_context_tokens = 1000\nlong_context_input = 2.0\n'
    with pytest.raises(ConfigError, match="long_context_output"):
        PriceTable.from_config(Section(tomllib.loads(text), "gw.toml", "prices"))


BASE = "input = 1.0\noutput = 1.0\n"
TIER = "long_context_tokens = 1000\nlong_context_input = 2.0\nlong_context_output = 2.0\nflex_input = 0.5\nflex_output = 0.5\n"


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        # Long-context prices without the threshold: the threshold is what to add.
        ("long_context_input = 2.0\nlong_context_output = 2.0\n", "long_context_tokens: required with long_context_input"),
        ("flex_input = 0.5\nflex_output = 0.5\nflex_long_context_input = 1.0\nflex_long_context_output = 1.0\n",
         "long_context_tokens: required with flex_long_context_input"),
        # A tier's long-context row half set: its missing price, required by the key that is there.
        (TIER + "flex_long_context_input = 1.0\n", "flex_long_context_output: required with flex_long_context_input"),
        (TIER + "flex_long_context_output = 1.0\n", "flex_long_context_input: required with flex_long_context_output"),
        (TIER + "flex_long_context_cache_read = 0.1\n", "flex_long_context_input: required with flex_long_context_cache_read"),
        # A tier's standard prices half set: as before.
        ("flex_input = 0.5\n", "flex_output: required with flex_input"),
    ],
)  # fmt: skip
def test_a_half_set_price_row_names_the_key_to_add(keys: str, message: str) -> None:
    text = '[openai."m"]\n' + BASE + keys
    with pytest.raises(ConfigError) as raised:
        PriceTable.from_config(Section(tomllib.loads(text), "gw.toml", "prices"))
    assert str(raised.value) == f"gw.toml: prices.openai.m.{message}"


CATALOG = Path(__file__).resolve().parents[1] / "service" / "provider_gateway" / "catalog" / "models.toml"
# Model ids the presets, fakes and docs examples use (grep docs/, README.md, examples/, fakes/ and the
# adapters for model ids); the fakes' made-up ids ("fake-model", "claude-tools", "gemini-error-429")
# are not models.
USED = [
    ("openai", "gpt-4o"),
    ("openai", "gpt-4o-mini"),
    ("openai", "gpt-4o-2024-08-06"),
    ("openai", "gpt-5"),
    ("openai", "o3"),
    ("openai", "o3-mini"),
    ("openai", "o4-mini"),
    ("azure", "gpt-4o"),
    ("anthropic", "claude-sonnet-4-5"),
    ("anthropic", "claude-sonnet-4-5-20250929"),
    ("anthropic", "claude-haiku-4-5"),
    ("vertex", "claude-sonnet-4-5@20250929"),
    ("vertex", "gemini-2.5-flash"),
    ("vertex", "text-embedding-005"),
    ("vertex", "text-multilingual-embedding-002"),
    ("vertex", "gemini-embedding-001"),
    ("gemini", "gemini-2.5-flash"),
    ("gemini", "gemini-embedding-001"),
    ("deepseek", "deepseek-reasoner"),
    ("groq", "llama-3.3-70b-versatile"),
    ("mistral", "mistral-small-latest"),
    ("mistral", "mistral-large-latest"),
    ("cohere", "command-a-03-2025"),
    ("cohere", "embed-v4.0"),
    ("bedrock", "anthropic.claude-3-5-sonnet-20241022-v2:0"),
    ("bedrock", "us.anthropic.claude-3-5-sonnet-20241022-v2:0"),
    ("bedrock", "anthropic.claude-opus-4-1-20250805-v1:0"),
    ("bedrock", "amazon.titan-embed-text-v2:0"),
    ("bedrock", "cohere.embed-english-v3"),
    ("bedrock", "amazon.nova-pro-v1:0"),
    ("ollama", "llama3.2:latest"),
    ("mock", "echo"),
]


# Models the gateway names that have no row, and why: their cost is unknown, never a guessed 0.
UNPRICED = {
    ("gemini", "text-embedding-004"): "retired on the Gemini API on 2026-01-14 (Google's deprecation "
    "notice on developers.googleblog.com); litellm 1.110.2 prices it on Vertex only (no gemini/ row)",
}


def catalog_models() -> list[tuple[str, str]]:
    catalog = tomllib.loads(CATALOG.read_text())
    return [(kind, model) for kind, rows in catalog.items() if isinstance(rows, dict) for model in rows]


@pytest.mark.parametrize(("kind", "model"), USED + catalog_models())
def test_every_model_the_gateway_names_has_a_price(kind: str, model: str) -> None:
    table = PriceTable.builtin()
    price = table.price(kind, model)
    if (kind, model) in UNPRICED:
        assert price is None, f"{kind}/{model} has a row now: drop it from UNPRICED"
        assert not table.cost(kind, model, Usage(10, 0)).known
        return
    assert price is not None, f"no price row for {kind}/{model}"
    assert price.source
    assert price.date


def test_every_unpriced_model_is_one_the_gateway_names() -> None:
    assert set(UNPRICED) <= set(USED + catalog_models())


async def test_images_and_requests_priced_apart_reach_the_finish() -> None:
    config = (
        "[providers.mock]\nkind = 'mock'\n"
        '[prices.mock."echo"]\ninput = 0.0\noutput = 0.0\nper_image = 0.01\nper_request = 0.001\n'
    )
    picture = pb.ContentPart(image=pb.Image(data=PNG, media_type="image/png"))
    request = chat_request("mock/echo", messages=[user("Compare these.", picture, picture)])
    async with run_gateway(config) as gateway:
        answer = await gateway.stub.Chat(request, timeout=20)
    assert answer.finish.cost.amount_micros == 2 * 10_000 + 1_000  # two images at $0.01, one request
