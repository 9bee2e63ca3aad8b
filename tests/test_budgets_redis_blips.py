"""Budgets in Redis across a blip: a network that drops everything for about a second, so that a
call sent meanwhile never reaches Redis. What the meters add then (a settlement, a check admitted
on the per-process meters) is owed to Redis and reaches the shared budget once it answers again."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
from rpc_util import WAIT_S, chat
from test_budgets import ALICE, PRICED_MOCK, alice_key, bearer, limit_of
from test_redis import REDIS, RedisServer

from provider_gateway.routing.meters import Meter
from provider_gateway.routing.shared_state import RedisCounterStore, RedisMeters
from provider_gateway.v1 import provider_service_pb2 as pb

pytestmark = pytest.mark.skipif(
    REDIS is None, reason="redis-server is not installed (scripts/setup.d/redis.sh installs it)"
)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer(REDIS)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Blip:
    """A TCP proxy to Redis that drops every byte while `dropping`: a network blip, where a call
    sent meanwhile never reaches Redis (a stopped Redis process would still run it once woken)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.dropping = False
        self._writers: list[asyncio.StreamWriter] = []

    async def serve(self) -> asyncio.AbstractServer:
        return await asyncio.start_server(self._relay, "127.0.0.1", 0)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        self._writers += [writer, up_writer]

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await source.read(65536):
                    if not self.dropping:
                        sink.write(data)
                        await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)

    def close(self) -> None:
        for writer in self._writers:
            writer.close()


@contextlib.asynccontextmanager
async def blip_to(server: RedisServer) -> AsyncIterator[tuple[Blip, str]]:
    """A Blip in front of `server`, and the URL that goes through it."""
    blip = Blip(server.port)
    listening = await blip.serve()
    try:
        yield blip, f"redis://127.0.0.1:{listening.sockets[0].getsockname()[1]}/0"
    finally:
        listening.close()
        blip.close()


def blip_config(url: str, lease_ms: int) -> str:
    return (
        PRICED_MOCK
        + f"""
[providers.mock.models.tail]
tokens = 100
token_delay_ms = 20

[redis]
url = "{url}"
prefix = "blip{time.monotonic_ns()}:"
timeout_ms = 200
retry_after_s = 0.5

[auth]
budget_lease_ms = {lease_ms}
"""
        + alice_key("tokens_per_day = 1000000")
    )


async def tokens_spent_today(gw) -> int:  # type: ignore[no-untyped-def]
    spend = await gw.stub.GetSpend(pb.GetSpendRequest(), metadata=bearer(ALICE), timeout=WAIT_S)
    return int(limit_of(spend, pb.SPEND_SCOPE_KEY, pb.SPEND_METRIC_TOKENS, pb.SPEND_WINDOW_DAY).spent)


def tokens_used(messages: list[pb.StreamEvent]) -> int:
    finishes = [m.finish.usage for m in messages if m.HasField("finish")]
    return sum(u.input_tokens + u.output_tokens for u in finishes)


@pytest.mark.parametrize("lease_ms", [0, 1000])
async def test_a_refund_due_while_redis_blips_reaches_the_shared_budget(
    gateway_factory, redis_server: RedisServer, lease_ms: int
) -> None:  # type: ignore[no-untyped-def]
    """A stream reserves its worst case (prompt + max_tokens) in Redis and ends while Redis does
    not answer: its refund of most of it is owed, and once Redis is back the shared budget says
    what the stream used, not the worst case for the rest of the day. Leases do not carry it: a
    lease lives `budget_lease_ms` after its last use, shorter than the stream."""
    async with blip_to(redis_server) as (blip, url), gateway_factory(blip_config(url, lease_ms)) as gw:
        call = gw.stub.ChatStream(chat("mock/tail", max_tokens=50000), metadata=bearer(ALICE), timeout=30)
        messages = [await call.read()]
        await asyncio.sleep(1.6)  # past a lease's lifetime and a half, with no other traffic
        blip.dropping = True  # Redis stops answering as the stream ends (about 2 s in all)
        try:
            while (message := await call.read()) is not grpc.aio.EOF:
                messages.append(message)
            await asyncio.sleep(0.5)  # the settlement was tried (and timed out) during the blip
        finally:
            blip.dropping = False
        used = tokens_used(messages)
        assert 0 < used < 1000
        await asyncio.sleep(1.0)  # past retry_after_s: Redis is used again
        assert await tokens_spent_today(gw) == used


async def test_spend_admitted_while_redis_is_away_reaches_the_shared_budget(
    gateway_factory, redis_server: RedisServer
) -> None:  # type: ignore[no-untyped-def]
    """With `on_redis_down = "open"` a request admitted on the per-process meters during an outage
    is spent all the same: once Redis is back, the shared budget counts what it used (its
    reservation and its refund, both owed, net out), and so every replica sees it."""
    async with blip_to(redis_server) as (blip, url), gateway_factory(blip_config(url, 0)) as gw:
        before = await gw.stub.Chat(
            chat("mock/echo", max_tokens=2000), metadata=bearer(ALICE), timeout=WAIT_S
        )
        # Settled in Redis before the blip (a spend report waits for the settlements under way): a
        # call Redis runs but whose answer the blip drops is owed all the same, and added twice.
        assert await tokens_spent_today(gw) > 0
        blip.dropping = True
        try:
            during = await gw.stub.Chat(
                chat("mock/echo", max_tokens=2000), metadata=bearer(ALICE), timeout=WAIT_S
            )
        finally:
            blip.dropping = False
        await asyncio.sleep(1.0)  # past retry_after_s: Redis is used again
        used = [r.usage.input_tokens + r.usage.output_tokens for r in (before, during)]
        assert all(used)
        assert await tokens_spent_today(gw) == sum(used)


def meters_through(url: str, prefix: str) -> tuple[RedisCounterStore, RedisMeters]:
    store = RedisCounterStore(url, prefix=prefix, timeout_s=0.2, retry_after_s=0.2)
    return store, RedisMeters(store, fail_closed=True)


@pytest.mark.parametrize("settled", [-80, 50], ids=["refund", "charge"])
async def test_a_settlement_redis_misses_is_added_once_it_answers(
    redis_server: RedisServer, settled: int
) -> None:
    """A settlement (a refund, or a charge above the reservation) that Redis misses is added to it
    in the background once it answers again: another replica reading Redis directly sees it, this
    replica having been asked nothing meanwhile. With `on_redis_down = "closed"` too: a settlement
    is never refused."""
    prefix = f"owed{time.monotonic_ns()}:"
    budget = Meter("{key:k}:key:k:tokens:d1", "window", 100, 1000, 600, int(time.time()) + 600)
    async with blip_to(redis_server) as (blip, url):
        store, meters = meters_through(url, prefix)
        other_store, other = meters_through(redis_server.url, prefix)
        assert await meters.meter([budget], check=True) is None
        blip.dropping = True
        try:
            assert await meters.meter([budget._replace(amount=settled)], check=False) is None
            assert not store.using_redis
            assert [r.used for r in await other.read([budget])] == [100]  # missed
        finally:
            blip.dropping = False
        for _ in range(int(WAIT_S / 0.05)):  # paid in the background, within retry_after_s or so
            if (await other.read([budget]))[0].used == 100 + settled:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # no second payment follows
        assert [r.used for r in await other.read([budget])] == [100 + settled]
        await store.aclose()
        await other_store.aclose()


async def test_what_is_owed_is_added_at_shutdown_when_redis_answers_by_then(
    redis_server: RedisServer,
) -> None:
    """A gateway that drains right after a blip, before its outage clock lets it try Redis again,
    still adds what it owes: shutdown tries Redis once more whatever the clock says."""
    prefix = f"last{time.monotonic_ns()}:"
    budget = Meter("{key:k}:key:k:usd_micros:d1", "window", 300, 1000, 600, int(time.time()) + 600)
    async with blip_to(redis_server) as (blip, url):
        store = RedisCounterStore(url, prefix=prefix, timeout_s=0.2, retry_after_s=60)
        meters = RedisMeters(store, fail_closed=False)
        assert await meters.meter([budget], check=True) is None
        blip.dropping = True
        assert await meters.meter([budget._replace(amount=-200)], check=False) is None
        blip.dropping = False
        assert not store.using_redis  # for another minute
        await meters.aclose()
        await store.aclose()
    other_store, other = meters_through(redis_server.url, prefix)
    assert [r.used for r in await other.read([budget])] == [100]
    await other_store.aclose()
