"""The exact-match answer cache ([cache], docs/caching.md), through the real gRPC server and the mock
provider, whose request count tells whether an answer came from upstream."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from rpc_util import WAIT_S, access_line, chat, collect_until_error, text_of
from test_observability import observed_gateway

from provider_gateway.config import ConfigError
from provider_gateway.domain import FinishReason, ProviderFinish, TextDelta, Usage, UsageEvent
from provider_gateway.providers.mock import MockScript
from provider_gateway.server.auth import hash_key
from provider_gateway.v1 import provider_service_pb2 as pb

CACHE = "\n[cache]\nenabled = true\n"
# One attempt per call: a retry would count as a second upstream request.
ONE_TRY = "\n[routing]\nretries = 0\n"


def upstream_calls(gw: Any) -> int:
    return int(gw.provider("mock").stats.started)


async def unary(gw: Any, request: pb.ChatRequest, *headers: tuple[str, str]) -> tuple[pb.ChatResponse, str]:
    """The answer and its `x-gateway-cache` header ("" when absent)."""
    call = gw.stub.Chat(request, metadata=headers or None, timeout=WAIT_S)
    response = await call
    return response, dict(await call.initial_metadata()).get("x-gateway-cache", "")


async def streamed(
    gw: Any, request: pb.ChatRequest, *headers: tuple[str, str]
) -> tuple[list[pb.StreamEvent], str]:
    call = gw.stub.ChatStream(request, metadata=headers or None, timeout=WAIT_S)
    events = [event async for event in call]
    return events, dict(await call.initial_metadata()).get("x-gateway-cache", "")


async def test_a_repeated_chat_is_answered_from_the_cache_without_an_upstream_call(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    async with gateway_factory(CACHE) as gw:
        first, said_first = await unary(gw, chat("mock/echo", "tell me a story"))
        again, said_again = await unary(gw, chat("mock/echo", "tell me a story"))
        assert (said_first, said_again) == ("miss", "hit")
        assert upstream_calls(gw) == 1
        assert again.text == first.text
        assert again.finish.response_id == first.finish.response_id
        assert again.usage == first.usage  # the stored answer's usage, as documented
        # Nothing was spent or tried upstream for the hit.
        assert again.finish.cost.known
        assert again.finish.cost.amount_micros == 0
        assert not again.finish.attempts
        assert first.finish.attempts
        assert again.finish.timing.upstream_us == 0


async def test_a_repeated_stream_replays_its_events_in_order_and_ends_with_the_stored_finish(
    gateway_factory,
) -> None:  # type: ignore[no-untyped-def]
    async with gateway_factory(CACHE) as gw:
        request = chat("mock/tools", "weather in Paris?", tools=[pb.Tool(name="get_weather")])
        first, said_first = await streamed(gw, request)
        again, said_again = await streamed(gw, request)
        assert (said_first, said_again) == ("miss", "hit")
        assert upstream_calls(gw) == 1
        assert again[:-1] == first[:-1]
        assert again[-1].finish.reason == first[-1].finish.reason == pb.FINISH_REASON_TOOL_CALLS
        assert again[-1].finish.response_id == first[-1].finish.response_id
        assert again[-1].finish.cost.amount_micros == 0
        assert not again[-1].finish.attempts
        # A unary Chat of the same request is another method's answer: asked upstream.
        _, said = await unary(gw, request)
        assert said == "miss"
        assert upstream_calls(gw) == 2


@pytest.mark.parametrize(
    "changed",
    [
        {"model": "mock/reasoner"},
        {"text": "a different question"},
        {"temperature": 0.5},
        {"top_p": 0.5},
        {"max_tokens": 3},
        {"stop": ["."]},
        {"tools": [pb.Tool(name="get_weather")]},
        {"response_format": pb.ResponseFormat(type=pb.ResponseFormat.TYPE_JSON_OBJECT)},
        {"logprobs": pb.LogprobsOptions(enabled=True)},
        {"fallbacks": ["mock/reasoner"]},
    ],
    ids=lambda changed: next(iter(changed)),
)
async def test_any_change_that_can_change_the_answer_misses(gateway_factory, changed: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    async with gateway_factory(CACHE) as gw:
        fields = dict(changed)
        model, text = fields.pop("model", "mock/echo"), fields.pop("text", "hello there")
        await unary(gw, chat("mock/echo", "hello there"))
        _, said = await unary(gw, chat(model, text, **fields))
        assert said == "miss"
        assert upstream_calls(gw) == 2


async def test_provider_options_are_part_of_the_key_in_any_order(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    def options(pairs: list[tuple[str, float]]) -> struct_pb2.Struct:
        struct = struct_pb2.Struct()
        for name, value in pairs:  # inserted in this order
            struct[name] = value
        return struct

    async with gateway_factory(CACHE) as gw:
        await unary(gw, chat("mock/echo", "hi", provider_options=options([("seed", 1), ("top_k", 5)])))
        _, reordered = await unary(
            gw, chat("mock/echo", "hi", provider_options=options([("top_k", 5), ("seed", 1)]))
        )
        _, other_seed = await unary(
            gw, chat("mock/echo", "hi", provider_options=options([("seed", 2), ("top_k", 5)]))
        )
        assert (reordered, other_seed) == ("hit", "miss")
        assert upstream_calls(gw) == 2


async def test_stream_options_shape_a_streams_entry_but_not_a_chats(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    async with gateway_factory(CACHE) as gw:
        plain, in_finish = (
            chat("mock/echo", "hi"),
            chat("mock/echo", "hi", stream_options=pb.StreamOptions(usage_in_finish=True)),
        )
        await unary(gw, plain)
        _, chat_said = await unary(gw, in_finish)  # Chat ignores stream_options
        await streamed(gw, plain)
        events, stream_said = await streamed(gw, in_finish)  # no usage events: another answer
        assert (chat_said, stream_said) == ("hit", "miss")
        assert "usage" not in [e.WhichOneof("event") for e in events]


ALICE = "alice-key-0123456789abcdefghijklmnop"
BOB = "bob-key-0123456789abcdefghijklmnopqrst"


def keys(alice_limits: str = "") -> str:
    return (
        f'\n[[auth.keys]]\nname = "alice"\nsha256 = "{hash_key(ALICE)}"\n{alice_limits}\n'
        f'\n[[auth.keys]]\nname = "bob"\nsha256 = "{hash_key(BOB)}"\n'
    )


def bearer(key: str) -> tuple[str, str]:
    return ("authorization", f"Bearer {key}")


async def test_an_entry_is_only_ever_served_to_the_key_that_stored_it(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    async with gateway_factory(CACHE + keys()) as gw:
        request = chat("mock/echo", "my private prompt")
        alice, _ = await unary(gw, request, bearer(ALICE))
        bob, said_bob = await unary(gw, request, bearer(BOB))
        _, said_alice = await unary(gw, request, bearer(ALICE))
        assert (said_bob, said_alice) == ("miss", "hit")
        assert bob.finish.response_id != alice.finish.response_id
        assert upstream_calls(gw) == 2
        # A call with a wrong key is refused as before, never answered from anyone's entry.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await unary(gw, request, bearer("not-a-key-0123456789abcdefghijk"))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_tags_are_part_of_the_key_and_a_hit_is_logged_with_its_key_and_tags(  # type: ignore[no-untyped-def]
    gateway_factory, caplog: pytest.LogCaptureFixture
) -> None:
    async with gateway_factory(CACHE + keys()) as gw:
        seen = []
        for tags in ({"team": "search"}, {"team": "search"}, {"team": "ads"}):
            caplog.clear()
            with caplog.at_level(logging.INFO, logger="provider_gateway.access"):
                _, said = await unary(gw, chat("mock/echo", "tagged", metadata=tags), bearer(ALICE))
                line = await access_line(caplog)
            seen.append((said, line.metadata, line.api_key_name))  # type: ignore[attr-defined]
        assert seen == [
            ("miss", {"team": "search"}, "alice"),
            ("hit", {"team": "search"}, "alice"),
            ("miss", {"team": "ads"}, "alice"),
        ]


PRICED = """
[prices.mock."echo"]
input = 2.0
output = 5.0
"""


async def test_a_hit_costs_nothing_against_the_keys_budgets(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    limits = "usd_micros_per_day = 1000000\ntokens_per_day = 100000"
    async with gateway_factory(CACHE + PRICED + keys(limits)) as gw:
        request = chat("mock/echo", "what does this cost?", max_tokens=5)

        async def spent() -> dict[int, int]:
            report = await gw.stub.GetSpend(pb.GetSpendRequest(), metadata=[bearer(ALICE)], timeout=WAIT_S)
            return {s.metric: s.spent for s in report.limits if s.window == pb.SPEND_WINDOW_DAY}

        first, _ = await unary(gw, request, bearer(ALICE))
        after_miss = await spent()
        assert first.finish.cost.amount_micros > 0
        assert after_miss[pb.SPEND_METRIC_USD_MICROS] == first.finish.cost.amount_micros
        again, said = await unary(gw, request, bearer(ALICE))
        assert said == "hit"
        assert again.finish.cost.amount_micros == 0
        assert await spent() == after_miss


async def test_no_cache_asks_upstream_and_stores_the_fresh_answer(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    async with gateway_factory(CACHE) as gw:
        request = chat("mock/echo", "fresh please")
        await unary(gw, request)
        fresh, said = await unary(gw, request, ("cache-control", "no-cache"))
        assert said == "miss"
        assert upstream_calls(gw) == 2
        again, said_again = await unary(gw, request)
        assert said_again == "hit"
        assert again.finish.response_id == fresh.finish.response_id


async def test_no_store_neither_reads_nor_stores(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    async with gateway_factory(CACHE) as gw:
        request = chat("mock/echo", "forget this")
        _, said = await unary(gw, request, ("cache-control", "No-Store"))
        _, said_after = await unary(gw, request)
        assert (said, said_after) == ("miss", "miss")
        _, said_stored = await unary(gw, request, ("cache-control", "max-age=0, no-store"))
        assert said_stored == "miss"
        assert upstream_calls(gw) == 3


async def test_an_entry_expires_after_its_ttl(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    now = [1000.0]
    async with gateway_factory(CACHE + "ttl_s = 60\n") as gw:
        gw.server.cache.store.clock = lambda: now[0]
        request = chat("mock/echo", "how long do you keep this?")
        await unary(gw, request)
        now[0] += 59.9
        _, before = await unary(gw, request)
        now[0] += 0.1
        _, at_ttl = await unary(gw, request)
        assert (before, at_ttl) == ("hit", "miss")
        assert upstream_calls(gw) == 2


async def test_the_least_recently_used_entry_is_evicted_first(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    async with gateway_factory(CACHE + "max_entries = 2\n") as gw:
        a, b, c = (chat("mock/echo", text) for text in ("alpha", "beta", "gamma"))
        for request in (a, b, a, c):  # a is used again, so b is the oldest when c comes
            await unary(gw, request)
        _, said_a = await unary(gw, a)
        _, said_b = await unary(gw, b)
        assert (said_a, said_b) == ("hit", "miss")


async def test_memory_stays_within_max_bytes(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    async with gateway_factory(CACHE + "max_bytes = 1500\nmax_entry_bytes = 1500\n") as gw:
        for text in ("one", "two", "three", "four"):
            await unary(gw, chat("mock/echo", text))
        store = gw.server.cache.store
        assert 0 < len(store) < 4
        assert store.bytes <= 1500
        _, newest = await unary(gw, chat("mock/echo", "four"))
        _, oldest = await unary(gw, chat("mock/echo", "one"))
        assert (newest, oldest) == ("hit", "miss")


async def test_an_answer_over_max_entry_bytes_is_served_but_not_stored(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    config = CACHE + "max_entry_bytes = 64\n[providers.mock.models.long]\ntokens = 40\n"
    async with gateway_factory(config) as gw:
        request = chat("mock/long", "a long answer please")
        answer, _ = await unary(gw, request)
        events, said = await streamed(gw, request)
        assert len(answer.text.split()) == 40
        assert text_of(events).split() == answer.text.split()
        _, said_again = await unary(gw, request)
        _, said_stream_again = await streamed(gw, request)
        assert (said, said_again, said_stream_again) == ("miss", "miss", "miss")


async def test_a_stream_that_errors_is_not_stored(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    config = (
        CACHE
        + ONE_TRY
        + "[providers.mock.models.flaky]\nfault = 'error_after_tokens'\nfault_after_tokens = 2\n"
    )
    async with gateway_factory(config) as gw:
        for _ in range(2):
            call = gw.stub.ChatStream(chat("mock/flaky", "go"), timeout=WAIT_S)
            events, error = await collect_until_error(call)
            assert error is not None
            assert events
            assert dict(await call.initial_metadata())["x-gateway-cache"] == "miss"
        assert upstream_calls(gw) == 2


async def test_a_stream_the_client_cancels_is_not_stored(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    config = CACHE + "[providers.mock.models.steady]\ntokens = 10\ntoken_delay_ms = 30\n"
    async with gateway_factory(config) as gw:
        request = chat("mock/steady", "start then stop")
        call = gw.stub.ChatStream(request, timeout=WAIT_S)
        async for _ in call:
            call.cancel()
            break
        await asyncio.wait_for(gw.provider("mock").stats.cancelled_event.wait(), WAIT_S)
        events, said = await streamed(gw, request)
        assert said == "miss"
        assert events[-1].WhichOneof("event") == "finish"
        assert upstream_calls(gw) == 2


async def test_a_content_filter_finish_is_not_stored(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    async with gateway_factory(CACHE) as gw:
        gw.provider("mock").push(
            MockScript(
                events=[
                    TextDelta("I cannot"),
                    UsageEvent(Usage(input_tokens=3, output_tokens=2)),
                    ProviderFinish(FinishReason.CONTENT_FILTER, model="echo"),
                ]
            )
        )
        request = chat("mock/echo", "something filtered")
        filtered, _ = await unary(gw, request)
        assert filtered.finish.reason == pb.FINISH_REASON_CONTENT_FILTER
        answer, said = await unary(gw, request)
        assert said == "miss"
        assert answer.finish.reason == pb.FINISH_REASON_STOP


async def test_complete_is_cached_too(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    async with gateway_factory(CACHE) as gw:
        request = pb.CompleteRequest(model="mock/echo", prompt="once upon a time")
        said = []
        for _ in range(2):
            call = gw.stub.Complete(request, timeout=WAIT_S)
            await call
            said.append(dict(await call.initial_metadata())["x-gateway-cache"])
        assert said == ["miss", "hit"]
        assert upstream_calls(gw) == 1


async def test_with_the_cache_off_there_is_no_header_and_every_call_goes_upstream(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    async with gateway_factory("[cache]\nenabled = false\nttl_s = 10\n") as gw:
        assert gw.server.cache is None
        request = chat("mock/echo", "same again")
        saids = [(await unary(gw, request))[1] for _ in range(2)]
        _, said_stream = await streamed(gw, request)
        assert saids == ["", ""]
        assert said_stream == ""
        assert upstream_calls(gw) == 3


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        (
            "enabled = true\nmax_bytes = 2048\nmax_entry_bytes = 4096",
            "cache.max_entry_bytes: must be at most max_bytes",
        ),
        ("enabled = true\nttl_s = 0", "cache.ttl_s: must be at least"),
        ("enabled = true\nmax_entries = 0", "cache.max_entries: must be at least 1"),
        ("enabled = true\nttl = 5", "cache.ttl: unknown key (did you mean 'ttl_s'?"),
        ("enabled = 'yes'", "cache.enabled: must be true or false"),
    ],
)
async def test_a_bad_cache_table_stops_the_server_naming_the_key(
    gateway_factory, table: str, problem: str
) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as error:
        async with gateway_factory(f"[cache]\n{table}\n"):
            pass
    assert problem in str(error.value)


async def test_hits_misses_and_bypasses_are_counted_in_the_metrics() -> None:
    async with observed_gateway(CACHE + "\n[providers.mock]\n") as observed:
        gw = observed.running
        request = chat("mock/echo", "count me")
        for headers in ((), (), (("cache-control", "no-cache"),)):
            await unary(gw, request, *headers)
        await streamed(gw, request)
        data = observed.reader.get_metrics_data()
    assert data is not None
    counted = {
        (point.attributes["rpc"], point.attributes["result"]): point.value
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "provider_gateway.cache.lookups"
        for point in metric.data.data_points  # type: ignore[union-attr]
    }
    assert counted == {
        ("Chat", "miss"): 1,
        ("Chat", "hit"): 1,
        ("Chat", "bypass"): 1,
        ("ChatStream", "miss"): 1,
    }
