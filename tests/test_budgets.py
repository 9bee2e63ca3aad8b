"""Budgets per key and per team (issue 16.4), through the real gRPC server: money and tokens reserved
at the worst case before dispatch, settled with the real cost after, refused with QuotaFailure and
RetryInfo, reported by GetSpend; and the rolling (GCRA) meters underneath."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from rpc_util import WAIT_S, chat

from provider_gateway.routing.meters import MemoryMeters, Meter, calendar_window
from provider_gateway.server.auth import hash_key
from provider_gateway.v1 import provider_service_pb2 as pb
from provider_gateway_client import GatewayClient

ALICE = "alice-key-0123456789abcdefghijklmnop"
BOB = "bob-key-0123456789abcdefghijklmnopqrst"
# The mock priced like a real model (micro-USD per token), so that money is spent.
PRICED_MOCK = """
[providers.mock.models.slow]
tokens = 400
token_delay_ms = 20

[prices.mock."echo"]
input = 2.0
output = 5.0

[prices.mock."slow"]
input = 2.0
output = 5.0
"""


def alice_key(limits: str) -> str:
    """The [[auth.keys]] block of the key ALICE, named "alice", with `limits` (TOML lines)."""
    return f'\n[[auth.keys]]\nname = "alice"\nsha256 = "{hash_key(ALICE)}"\n{limits}'


def bearer(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


def details(error: grpc.aio.AioRpcError) -> dict[str, Any]:
    """The status's details by type: RetryInfo and QuotaFailure."""
    trailers = dict(error.trailing_metadata() or ())
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    found: dict[str, Any] = {}
    for detail in status.details:
        for kind in (error_details_pb2.RetryInfo, error_details_pb2.QuotaFailure):
            message = kind()
            if detail.Unpack(message):
                found[kind.__name__] = message
    return found


async def until_refused(stub: Any, request: pb.ChatRequest, key: str) -> tuple[int, grpc.aio.AioRpcError]:
    """Send `request` until a team's budget of 40 tokens refuses it: how many passed, the refusal."""
    admitted, refused = 0, None
    while refused is None and admitted < 10:
        try:
            await stub.Chat(request, metadata=bearer(key), timeout=WAIT_S)
            admitted += 1
        except grpc.aio.AioRpcError as error:
            refused = error
    assert refused is not None, "the team's 40 tokens must run out within 10 requests"
    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    return admitted, refused


def limit_of(spend: pb.GetSpendResponse, scope: int, metric: int, window: int) -> pb.SpendLimit:
    (found,) = [s for s in spend.limits if (s.scope, s.metric, s.window) == (scope, metric, window)]
    return found


async def test_a_money_budget_admits_until_spent_then_refuses_with_quota_failure(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    config = PRICED_MOCK + alice_key("usd_micros_per_day = 200")
    async with gateway_factory(config) as gw:
        spent, refused = 0, None
        for _ in range(20):
            try:
                response = await gw.stub.Chat(
                    chat("mock/echo", "hi", max_tokens=3), metadata=bearer(ALICE), timeout=WAIT_S
                )
            except grpc.aio.AioRpcError as error:
                refused = error
                break
            assert response.finish.cost.known
            spent += response.finish.cost.amount_micros
        assert refused is not None, "200 micro-USD must run out within 20 priced requests"
        assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "usd_micros budget per day" in (refused.details() or "")
        found = details(refused)
        (violation,) = found["QuotaFailure"].violations
        assert violation.subject == "key:alice"
        assert "limit 200" in violation.description
        wait = found["RetryInfo"].retry_delay.ToTimedelta().total_seconds()
        assert 0 < wait <= 86400  # until the calendar day ends
        report = await gw.stub.GetSpend(pb.GetSpendRequest(), metadata=bearer(ALICE), timeout=WAIT_S)
    assert report.key == "alice"
    day = limit_of(report, pb.SPEND_SCOPE_KEY, pb.SPEND_METRIC_USD_MICROS, pb.SPEND_WINDOW_DAY)
    assert day.limit == 200
    assert day.spent == spent > 0  # settled to the real costs, the reservations refunded
    assert day.remaining == 200 - spent


async def test_a_team_budget_is_shared_by_its_keys(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    config = (
        PRICED_MOCK
        + f"""
[[auth.teams]]
name = "research"
tokens_per_day = 40

[[auth.keys]]
name = "alice"
sha256 = "{hash_key(ALICE)}"
team = "research"

[[auth.keys]]
name = "bob"
sha256 = "{hash_key(BOB)}"
team = "research"
"""
    )
    async with gateway_factory(config) as gw:
        request = chat("mock/echo", "hi", max_tokens=3)
        await gw.stub.Chat(request, metadata=bearer(ALICE), timeout=WAIT_S)
        _, refused = await until_refused(gw.stub, request, BOB)
        (violation,) = details(refused)["QuotaFailure"].violations
        assert violation.subject == "team:research"
        for key in (ALICE, BOB):  # the same team meter, seen by both keys (through the Python client)
            async with GatewayClient(gw.target, api_key=key) as client:
                report = await client.get_spend()
            assert report.team == "research"
            team = limit_of(report, pb.SPEND_SCOPE_TEAM, pb.SPEND_METRIC_TOKENS, pb.SPEND_WINDOW_DAY)
            assert team.name == "research"
            assert 40 - team.spent < 11  # no room left for another request's worst case


async def test_a_cancelled_streams_usage_is_in_the_keys_spend(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    """The client leaves a stream after some tokens: the key is charged what was relayed
    (estimated: the provider never reported usage) and the rest of its reservation comes back."""
    config = PRICED_MOCK + alice_key("""
tokens_per_day = 100000
usd_micros_per_day = 100000
""")
    async with gateway_factory(config) as gw:
        request = chat("mock/slow", "tell me", max_tokens=400)
        stream = gw.stub.ChatStream(request, metadata=bearer(ALICE), timeout=WAIT_S)
        relayed = ""
        while len(relayed) < 60:  # about fifteen tokens' worth
            relayed += (await stream.read()).text_delta.text
        stream.cancel()
        async with asyncio.timeout(WAIT_S):  # the settlement runs as the cancelled handler unwinds
            while True:
                report = await gw.stub.GetSpend(pb.GetSpendRequest(), metadata=bearer(ALICE), timeout=WAIT_S)
                tokens = limit_of(report, pb.SPEND_SCOPE_KEY, pb.SPEND_METRIC_TOKENS, pb.SPEND_WINDOW_DAY)
                if tokens.spent < 400:  # below the worst case: settled
                    break
                await asyncio.sleep(0.05)
    money = limit_of(report, pb.SPEND_SCOPE_KEY, pb.SPEND_METRIC_USD_MICROS, pb.SPEND_WINDOW_DAY)
    assert tokens.spent >= len(relayed) // 4 + 1  # the relayed output and the prompt
    assert money.spent >= 5 * (len(relayed) // 4)  # priced at 5 micro-USD an output token


async def test_requests_without_a_worst_case_are_refused_clearly(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    config = alice_key("tokens_per_day = 100000")
    async with gateway_factory(config) as gw:
        with pytest.raises(grpc.aio.AioRpcError) as unbounded:
            await gw.stub.Chat(chat("mock/echo", "hi"), metadata=bearer(ALICE), timeout=WAIT_S)
        assert unbounded.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "set max_tokens" in (unbounded.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as too_big:
            await gw.stub.Chat(
                chat("mock/echo", "hi", max_tokens=200000), metadata=bearer(ALICE), timeout=WAIT_S
            )
        assert too_big.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "lower max_tokens" in (too_big.value.details() or "")
        assert "grpc-status-details-bin" not in dict(too_big.value.trailing_metadata() or ())  # no retry
        await gw.stub.Chat(chat("mock/echo", "hi", max_tokens=3), metadata=bearer(ALICE), timeout=WAIT_S)


async def test_get_spend_reports_rolling_quotas_and_needs_auth(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    config = alice_key("requests_per_minute = 10")
    async with gateway_factory(config) as gw:
        for _ in range(3):
            await gw.stub.Chat(chat("mock/echo", "hi"), metadata=bearer(ALICE), timeout=WAIT_S)
        for _ in range(2):  # GetSpend itself is free
            report = await gw.stub.GetSpend(pb.GetSpendRequest(), metadata=bearer(ALICE), timeout=WAIT_S)
        rpm = limit_of(report, pb.SPEND_SCOPE_KEY, pb.SPEND_METRIC_REQUESTS, pb.SPEND_WINDOW_ROLLING_MINUTE)
        assert (rpm.limit, rpm.spent, rpm.remaining) == (10, 3, 7)
        assert 0 < rpm.resets_in_ms <= 18_000  # three requests free up at 6 s each
        with pytest.raises(grpc.aio.AioRpcError) as anonymous:
            await gw.stub.GetSpend(pb.GetSpendRequest(), timeout=WAIT_S)
        assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
    async with gateway_factory("") as gw:
        with pytest.raises(grpc.aio.AioRpcError) as open_gateway:
            await gw.stub.GetSpend(pb.GetSpendRequest(), timeout=WAIT_S)
        assert open_gateway.value.code() == grpc.StatusCode.FAILED_PRECONDITION


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class HeldSettlements(MemoryMeters):
    """In-process meters whose settlements (forced calls) wait until released: a slow Redis."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.waiting: asyncio.Queue[None] = asyncio.Queue()  # one item per settlement started
        self.settled = 0

    async def meter(self, meters: list[Meter], *, check: bool) -> Any:
        if not check:
            self.waiting.put_nowait(None)
            await self.release.wait()
            self.settled += 1
        return await super().meter(meters, check=check)


async def test_the_answer_does_not_wait_for_the_settlement_which_is_never_lost(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    async with gateway_factory(PRICED_MOCK + alice_key("usd_micros_per_day = 100000")) as gw:
        held = HeldSettlements()
        gw.server.auth[0].quotas.budgets.meters = held
        try:
            # Answered while its settlement still waits: the settlement is off the answer's path.
            response = await gw.stub.Chat(
                chat("mock/echo", "hi", max_tokens=50), metadata=bearer(ALICE), timeout=WAIT_S
            )
            stream = gw.stub.ChatStream(chat("mock/slow", "hi", max_tokens=300), metadata=bearer(ALICE))
            await stream.read()
            stream.cancel()  # a cancelled call's settlement is not cancelled with it
            async with asyncio.timeout(WAIT_S):  # the cancel reaches the handler, which unwinds
                for _ in range(2):
                    await held.waiting.get()
            assert held.settled == 0
            # GetSpend waits for this process's settlements under way, so it reports them.
            report = asyncio.ensure_future(
                gw.stub.GetSpend(pb.GetSpendRequest(), metadata=bearer(ALICE), timeout=WAIT_S)
            )
            await asyncio.sleep(0.1)
        finally:
            held.release.set()  # (on failure too: the server's stop waits for settlements)
        spend = await report
    assert held.settled == 2
    day = limit_of(spend, pb.SPEND_SCOPE_KEY, pb.SPEND_METRIC_USD_MICROS, pb.SPEND_WINDOW_DAY)
    # Both charged, and the stream's reservation (300 output tokens: 1500 micro-USD) refunded.
    assert response.finish.cost.amount_micros < day.spent < 1500


async def test_gcra_has_no_doubled_burst_at_a_window_edge() -> None:
    """A fixed window lets 2x the limit through around its edge; GCRA lets the burst through once,
    then one unit every window/limit."""
    clock = FakeClock()
    meters = MemoryMeters(clock)
    rpm = [Meter("k:rpm", "rate", 1, 6, 60)]
    assert [await meters.meter(rpm, check=True) for _ in range(6)] == [None] * 6
    refusal = await meters.meter(rpm, check=True)
    assert refusal is not None
    assert refusal.wait_s == pytest.approx(10)
    clock.now += 59.9  # just before where a fixed window would reset and admit six more
    admitted = [await meters.meter(rpm, check=True) is None for _ in range(6)].count(True)
    assert admitted == 5  # one every ten seconds, not a fresh burst


async def test_a_refused_meter_adds_nothing_and_a_refund_comes_back() -> None:
    clock = FakeClock()
    meters = MemoryMeters(clock)
    name, left = calendar_window("day", clock.now)
    budget = Meter(f"k:usd:{name}", "window", 60, 100, left)
    rpm = Meter("k:rpm", "rate", 1, 100, 60)
    assert await meters.meter([rpm, budget], check=True) is None
    refusal = await meters.meter([rpm, budget], check=True)  # 120 > 100: all or nothing
    assert refusal is not None
    assert refusal.meter == 1
    assert refusal.wait_s == pytest.approx(left)
    used = await meters.read([rpm, budget])
    assert [u.used for u in used] == [1, 60]
    await meters.meter([Meter(budget.key, "window", -45, 100, left)], check=False)  # a refund
    assert (await meters.read([budget]))[0].used == 15


def test_calendar_windows_are_utc_and_end_where_they_should() -> None:
    moment = 1_798_761_599.0  # 2026-12-31 23:59:59 UTC
    assert calendar_window("month", moment) == ("M202612", pytest.approx(1.0))
    assert calendar_window("day", moment) == ("d20261231", pytest.approx(1.0))
    assert calendar_window("hour", moment + 1) == ("h2027010100", pytest.approx(3600.0))
    assert calendar_window("minute", moment + 30) == ("m202701010000", pytest.approx(31.0))


async def test_a_money_budget_reserves_the_dearest_price_of_the_prompts_tier(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    """The worst case prices every prompt token at the dearest of input and cache writes, every
    output token at the dearer of output and reasoning, at the tier the prompt's size selects,
    plus the per-request price: a budget too small for it says how much the request needed."""
    config = """
[prices.mock."echo"]
input = 2.0
output = 5.0
cache_write = 2.5
cache_write_1h = 4.0
reasoning = 6.0
per_request = 0.25
long_context_tokens = 100
long_context_input = 8.0
long_context_output = 9.0
long_context_cache_write = 10.0
""" + alice_key("usd_micros_per_day = 1")
    async with gateway_factory(config) as gw:
        for text, input_price, output_price in (("hi", 4.0, 6.0), ("x" * 1000, 10.0, 9.0)):
            request = chat("mock/echo", text, max_tokens=7)
            prompt = max(1, request.ByteSize() // 4)
            assert (prompt > 100) == (len(text) > 100)  # the long prompt is past the tier's threshold
            worst = math.ceil(prompt * input_price + 7 * output_price + 250_000)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await gw.stub.Chat(request, metadata=bearer(ALICE), timeout=WAIT_S)
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert f"this request needs {worst} against a usd_micros budget per day of 1" in (
                refused.value.details() or ""
            )


@pytest.mark.parametrize(
    ("request_", "refusal"),
    [
        (chat("mock/" + "x" * 1_000_000, "hi", max_tokens=10), "model: at most 256 characters"),
        (chat("mock/echo", "hi", max_tokens=10, fallbacks=["mock/echo"] * 100_000), "fallbacks: at most 16"),
    ],
    ids=["megabyte-model-name", "100k-fallbacks"],
)
async def test_bad_names_are_refused_before_the_budget_plans_or_keeps_them(
    gateway_factory: Any, request_: pb.ChatRequest, refusal: str
) -> None:
    """A budget's worst case plans every deployment a request names and keeps the plan: run before
    the names were checked, it kept megabytes of model name per refused call (40 calls took a
    worker from 81 to 638 MB) and walked 600k fallbacks on the loop for 20 s. The names are now
    refused first: nothing planned or kept, and the key's one request a minute is not spent."""
    config = alice_key("tokens_per_day = 100000000\nrequests_per_minute = 1")
    async with gateway_factory(config) as gw:
        for _ in range(3):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await gw.stub.Chat(request_, metadata=bearer(ALICE), timeout=30)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert refusal in (refused.value.details() or "")
        assert not gw.server.auth[0].quotas.budgets.worst_case._plans
        await gw.stub.Chat(chat("mock/echo", "hi", max_tokens=10), metadata=bearer(ALICE), timeout=WAIT_S)


async def test_the_plans_a_budget_keeps_are_bounded_in_characters(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    """Names within bounds are planned and kept (a quota may refuse the request afterwards), but
    4096 plans of 17 names of 256 characters would hold 18 MB: what is kept is bounded by size too."""
    async with gateway_factory(alice_key("tokens_per_day = 100000000")) as gw:
        worst_case = gw.server.auth[0].quotas.budgets.worst_case
        worst_case.PLANS_MAX_CHARS = 10_000
        for i in range(200):
            worst_case.cards("alice", f"mock/{i:03d}" + "m" * 250, "", ())
        held = sum(len(c) + len(m) + len(p) + sum(map(len, f)) for c, m, p, f in worst_case._plans)
        assert 0 < held <= 10_000
