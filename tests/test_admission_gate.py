"""The admission gate (routing/admission.py), through the real gRPC server on in-process meters whose
checks are held until the test releases them: a check in flight for as long as a test needs. A call
does its own work while its check is in flight, and nothing is dispatched before the check admits
it; a call that ends first leaves no reservation behind."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

import grpc
import pytest
from rpc_util import WAIT_S, chat
from test_budgets import ALICE, PRICED_MOCK, alice_key, bearer, details, limit_of

from provider_gateway.fakes import FakeUpstream, Reply
from provider_gateway.routing.meters import Batch, MemoryMeters
from provider_gateway.v1 import provider_service_pb2 as pb


class HeldChecks(MemoryMeters):
    """In-process meters whose checks wait for `release` while `holding`: a slow Redis."""

    def __init__(self) -> None:
        super().__init__()
        self.holding = True
        self.release = asyncio.Event()
        self.held: asyncio.Queue[None] = asyncio.Queue()  # one item per check that waits

    async def meter_batch(self, batch: Batch, values: tuple[int, ...], *, check: bool) -> Any:
        if check and self.holding:
            self.held.put_nowait(None)
            await self.release.wait()
        return await super().meter_batch(batch, values, check=check)


def held_meters(gw: Any) -> HeldChecks:
    held = HeldChecks()
    gw.server.auth[0].quotas.budgets.meters = held
    return held


async def spend(gw: Any) -> dict[tuple[int, int], int]:
    report = await gw.stub.GetSpend(pb.GetSpendRequest(), metadata=bearer(ALICE), timeout=WAIT_S)
    return {(s.metric, s.window): s.spent for s in report.limits}


ONE_A_MINUTE = alice_key("requests_per_minute = 1\nusd_micros_per_day = 100000")


async def burst_spent(gw: Any) -> tuple[HeldChecks, dict[tuple[int, int], int]]:
    """Held meters for the key ONE_A_MINUTE, whose first request has spent its burst of one (not
    held), and its spend then: its next check refuses once released."""
    held = held_meters(gw)
    held.holding = False
    await gw.stub.Chat(chat("mock/echo", "hi", max_tokens=3), metadata=bearer(ALICE), timeout=WAIT_S)
    before = await spend(gw)
    held.holding = True
    return held, before


@pytest.mark.parametrize("method", ["Chat", "ChatStream", "Complete", "CompleteStream"])
async def test_a_call_failing_before_dispatch_answers_at_once_and_is_refunded(
    method: str, gateway_factory
) -> None:  # type: ignore[no-untyped-def]
    """A request the server rejects (no messages, no prompt) gets its status while its check is
    still in flight: it had nothing to wait for. Once the check answers, its reservation is
    refunded: the key's spend is as before."""
    async with gateway_factory(
        PRICED_MOCK + alice_key("tokens_per_day = 100000\nusd_micros_per_day = 100000")
    ) as gw:
        before = await spend(gw)
        held = held_meters(gw)
        if method.startswith("Chat"):
            request: Any = pb.ChatRequest(model="mock/echo", max_tokens=50)
        else:
            request = pb.CompleteRequest(model="mock/echo", max_tokens=50)
        call = getattr(gw.stub, method)(request, metadata=bearer(ALICE), timeout=WAIT_S)
        with pytest.raises(grpc.aio.AioRpcError) as rejected:
            await (call if method in ("Chat", "Complete") else call.read())
        assert rejected.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert held.held.qsize() == 1  # answered while its check is held
        held.release.set()
        after = await spend(gw)  # GetSpend waits for this process's settlements
    assert after == before
    assert after[pb.SPEND_METRIC_TOKENS, pb.SPEND_WINDOW_DAY] == 0


@pytest.mark.parametrize("method", ["Chat", "ChatStream"])
async def test_a_refusal_in_flight_is_the_refusal_the_client_gets(method: str, gateway_factory) -> None:  # type: ignore[no-untyped-def]
    """The request waits at the gate for its check; a refusal then ends it as a refusal before
    the call does: RESOURCE_EXHAUSTED with QuotaFailure and RetryInfo, nothing consumed."""
    config = PRICED_MOCK + ONE_A_MINUTE
    async with gateway_factory(config) as gw:
        held, before = await burst_spent(gw)
        request = chat("mock/echo", "hi", max_tokens=3)
        if method == "Chat":
            call: Any = asyncio.ensure_future(gw.stub.Chat(request, metadata=bearer(ALICE), timeout=WAIT_S))
        else:
            stream = gw.stub.ChatStream(request, metadata=bearer(ALICE), timeout=WAIT_S)
            call = asyncio.ensure_future(stream.read())
        async with asyncio.timeout(WAIT_S):
            await held.held.get()
        held.release.set()
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call
        after = await spend(gw)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    found = details(refused.value)
    (violation,) = found["QuotaFailure"].violations
    assert violation.subject == "key:alice"
    assert 0 < found["RetryInfo"].retry_delay.ToTimedelta().total_seconds() <= 60
    assert after == before  # the refused request reserved and consumed nothing


@pytest.mark.parametrize("limits", ["rpm", "rpm and money"])
async def test_a_client_leaving_during_a_refused_check_leaves_nothing_behind(
    limits: str,
    gateway_factory,
    caplog: pytest.LogCaptureFixture,  # type: ignore[no-untyped-def]
) -> None:
    """The stream is cancelled while its check is in flight, and the check then refuses: nothing
    was reserved, so nothing is settled, and the refusal is not left unread in a task (with a
    budget, the settlement waits for the check; with a rate alone, nothing settles at all)."""
    config = PRICED_MOCK + (
        ONE_A_MINUTE if limits == "rpm and money" else alice_key("requests_per_minute = 1")
    )
    async with gateway_factory(config) as gw:
        held, before = await burst_spent(gw)
        quotas = gw.server.auth[0].quotas
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            stream = gw.stub.ChatStream(chat("mock/slow", "hi", max_tokens=300), metadata=bearer(ALICE))
            reading = asyncio.ensure_future(stream.read())
            async with asyncio.timeout(WAIT_S):
                await held.held.get()
            stream.cancel()
            with pytest.raises(asyncio.CancelledError):
                await reading
            async with asyncio.timeout(WAIT_S):  # the cancelled handler unwinds, leaving the check kept
                while True:
                    if quotas._settling:
                        break
                    await asyncio.sleep(0.01)
            held.release.set()
            after = await spend(gw)
            gc.collect()  # a task whose exception nobody read says so when it is collected
    assert after == before
    assert not [r.getMessage() for r in caplog.records if r.name == "asyncio"]


async def test_methods_outside_the_gate_wait_for_their_check_before_dispatch(
    gateway_factory,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    """Embed's provider call does not pass the retry loop's gate: its check is awaited before the
    call starts, as before the gate, so the upstream hears nothing until the check admits it."""
    monkeypatch.setenv("PG_GATE_KEY", "k")
    async with FakeUpstream() as fake:
        fake.on(
            "POST",
            "/v1/embeddings",
            lambda _: Reply.json(
                {
                    "object": "list",
                    "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 0.25]}],
                    "model": "text-embedding-3-small",
                    "usage": {"prompt_tokens": 2, "total_tokens": 2},
                }
            ),
        )
        config = f'[providers.a]\nkind = "openai"\nbase_url = "{fake.url}/v1"\napi_key_env = "PG_GATE_KEY"\n'
        config += alice_key("requests_per_minute = 100\ntokens_per_minute = 100000")
        async with gateway_factory(config) as gw:
            held = held_meters(gw)
            call = asyncio.ensure_future(
                gw.stub.Embed(
                    pb.EmbedRequest(model="a/text-embedding-3-small", inputs=["hi"]),
                    metadata=bearer(ALICE),
                    timeout=WAIT_S,
                )
            )
            async with asyncio.timeout(WAIT_S):
                await held.held.get()
            await asyncio.sleep(0.2)  # time enough for a dispatch that did not wait to arrive
            assert not [r for r in fake.requests if r.method == "POST"]
            held.release.set()
            response = await call
    assert [round(v, 2) for v in response.embeddings[0].values] == [0.5, 0.25]
    assert [r.path for r in fake.requests if r.method == "POST"] == ["/v1/embeddings"]


async def test_a_gated_call_is_dispatched_once_its_check_admits_it(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    """The in-process mock passes the gate too: a call whose check is held is answered once the
    check admits it, and charged as usual."""
    async with gateway_factory(PRICED_MOCK + alice_key("usd_micros_per_day = 100000")) as gw:
        held = held_meters(gw)
        stream = gw.stub.ChatStream(
            chat("mock/echo", "hi", max_tokens=3), metadata=bearer(ALICE), timeout=WAIT_S
        )
        events = asyncio.ensure_future(_all(stream))
        async with asyncio.timeout(WAIT_S):
            await held.held.get()
        assert not events.done()
        held.release.set()
        finish = (await events)[-1].finish
        report = await gw.stub.GetSpend(pb.GetSpendRequest(), metadata=bearer(ALICE), timeout=WAIT_S)
    money = limit_of(report, pb.SPEND_SCOPE_KEY, pb.SPEND_METRIC_USD_MICROS, pb.SPEND_WINDOW_DAY)
    assert finish.cost.known
    assert money.spent == finish.cost.amount_micros > 0


async def _all(stream: Any) -> list[pb.StreamEvent]:
    return [event async for event in stream]


async def test_a_call_outside_the_gate_that_ends_while_its_check_waits_is_refunded(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    """Embed waits for its check before it starts; its deadline passing during that wait ends the
    call, and what the check reserved once it answers is refunded."""
    async with gateway_factory(PRICED_MOCK + alice_key("tokens_per_day = 100000")) as gw:
        held = held_meters(gw)
        with pytest.raises(grpc.aio.AioRpcError) as late:
            await gw.stub.Embed(
                pb.EmbedRequest(model="mock/embed", inputs=["hello"], dimensions=4),
                metadata=bearer(ALICE),
                timeout=0.3,
            )
        assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert held.held.qsize() == 1  # it never got past its check
        # The check is answered only once the server has cancelled the call (on a loaded machine
        # it sees the deadline after the client does; answered before, the call would go on and
        # be charged what it consumed, rightly, which is not what this test is about).
        quotas = gw.server.auth[0].quotas
        async with asyncio.timeout(WAIT_S):
            while True:
                if quotas._settling:  # the cancelled call's refund, waiting for the check
                    break
                await asyncio.sleep(0.01)
        held.release.set()
        async with asyncio.timeout(WAIT_S):  # the cancelled handler unwinds, then refunds
            while True:
                tokens = (await spend(gw))[pb.SPEND_METRIC_TOKENS, pb.SPEND_WINDOW_DAY]
                if tokens == 0:
                    break
                await asyncio.sleep(0.05)
        response = await gw.stub.Embed(
            pb.EmbedRequest(model="mock/embed", inputs=["hello"], dimensions=4),
            metadata=bearer(ALICE),
            timeout=WAIT_S,
        )
    assert len(response.embeddings[0].values) == 4
