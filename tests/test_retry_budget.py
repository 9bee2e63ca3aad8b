"""The retry budget ([routing] retry_budget_percent, min_retry_concurrency; routing/retry_budget.py):
under a failing provider, retries in flight stay below max(floor, percent of the requests in
flight), a request held back ends with its last attempt's error saying why, and the counts return
to zero however requests and retries end.

A real gateway over a real channel, against a fake OpenAI-style upstream whose requests are counted:
model `storm` answers each request's first attempt 503 and holds every retry open (so that retries
stay in flight while the others decide), model `down` answers every request 503.
"""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from conftest import RunningGateway, run_gateway
from routing_support import until
from test_metrics_prometheus import sample, scrape
from test_observability import observed_gateway
from upstream_support import chat_stream, user

from provider_gateway import config as config_module
from provider_gateway.config import ConfigError
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.fakes import FakeUpstream, Reply
from provider_gateway.fakes.server import RecordedRequest
from provider_gateway.routing.retry_budget import RetryBudget
from provider_gateway.routing.settings import RoutingSettings, parse_routing
from provider_gateway.v1 import provider_service_pb2 as pb

KEY = "sk-test-0123456789abcdef"
CONCURRENT = 10
# Backoff too short to notice; a breaker that never opens and a limiter that never queues, so that
# only the budget decides. Plain routes: 20% with a floor of 1 (10 requests in flight: 2 retries).
# Group `open`: no budget. Group `none`: no retry at all.
ROUTING = """
[routing]
retries = 2
backoff_base_ms = 1
backoff_max_ms = 1
retry_budget_percent = 20
min_retry_concurrency = 1
[routing.breaker]
consecutive_failures = 1000000
min_calls = 1000000
[groups.open]
retry_budget_percent = 100
deployments = [{ provider = "a", model = "down" }]
[groups.none]
retry_budget_percent = 0
min_retry_concurrency = 0
deployments = [{ provider = "a", model = "down" }]
"""
HELD_BACK = "retry budget held it back"


def unavailable() -> Reply:
    return Reply.error(503, {"error": {"message": "upstream overloaded"}})


class Upstream:
    """The fake's answers: `storm` fails a request's first attempt and holds its retries open."""

    def __init__(self) -> None:
        self.first_seen: set[str] = set()

    def chat(self, request: RecordedRequest) -> Reply:
        body = request.json()
        if body["model"] != "storm":
            return unavailable()
        text = str(body["messages"][-1]["content"])
        if text in self.first_seen:
            return Reply(stall=True)  # a retry: in flight until the gateway leaves
        self.first_seen.add(text)
        return unavailable()


@dataclass
class Env:
    fake: FakeUpstream
    gateway: RunningGateway

    def seen(self, model: str, since: int, what: str = "chat/completions") -> int:
        return sum(
            r.path == f"/a/v1/{what}" and r.json()["model"] == model for r in self.fake.requests[since:]
        )

    def in_flight(self) -> tuple[int, int]:
        budget = self.gateway.server.router.retry_budget
        return budget.requests, budget.retries


@pytest.fixture(scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    key_file = Path(tmp_path_factory.mktemp("keys")) / "key"
    key_file.write_text(KEY)
    upstream = Upstream()
    async with FakeUpstream() as fake:
        fake.on("POST", "/a/v1/chat/completions", upstream.chat)
        fake.on("POST", "/a/v1/embeddings", lambda _: unavailable())
        providers = (
            f'[providers.a]\nkind = "openai"\nbase_url = "{fake.url}/a/v1"\napi_key_file = "{key_file}"\n'
        )
        async with run_gateway(providers + ROUTING) as gateway:
            yield Env(fake, gateway)


def chat(model: str, text: str) -> pb.ChatRequest:
    return pb.ChatRequest(model=model, messages=[user(text)])


async def call(
    env: Env, request: pb.ChatRequest, streaming: bool, timeout_s: float = 20
) -> grpc.aio.AioRpcError:
    """The call's error (each of these calls fails)."""
    if streaming:
        got = await chat_stream(env.gateway.stub, request, timeout_s)
        assert got.error is not None
        return got.error
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await env.gateway.stub.Chat(request, timeout=timeout_s)
    return info.value


@pytest.mark.parametrize("streaming", [True, False], ids=["stream", "unary"])
async def test_a_failing_provider_under_load_gets_only_the_retries_the_budget_allows(
    env: Env, streaming: bool
) -> None:
    since = len(env.fake.requests)
    tag = "stream" if streaming else "unary"
    calls = [
        asyncio.ensure_future(call(env, chat("a/storm", f"{tag}-{i}"), streaming)) for i in range(CONCURRENT)
    ]

    def retries_reached() -> int:
        return env.seen("storm", since) - CONCURRENT

    # Every request either reached the upstream again (its retry is held open there) or was refused.
    await until(lambda: sum(c.done() for c in calls) + retries_reached() == CONCURRENT)
    retried = retries_reached()
    # 20% of at most 10 requests in flight: 2 retries (1, the floor, when few had arrived yet). Without
    # the budget each of the 10 would retry.
    assert 1 <= retried <= 2
    refused = [c.result() for c in calls if c.done()]
    assert len(refused) == CONCURRENT - retried
    for error in refused:  # the error of the last attempt, as with retries = 0, saying why
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        details = error.details() or ""
        assert "upstream overloaded" in details
        assert HELD_BACK in details
        assert "retry_budget_percent" in details
    assert env.in_flight() == (retried, retried)

    for c in calls:  # the clients of the held retries leave: the counts return to zero
        c.cancel()
    await asyncio.gather(*calls, return_exceptions=True)
    await until(lambda: env.in_flight() == (0, 0))


async def test_a_retry_that_ends_by_the_deadline_gives_back_its_count(env: Env) -> None:
    since = len(env.fake.requests)
    error = await call(env, chat("a/storm", "deadline"), streaming=False, timeout_s=1.0)
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert env.seen("storm", since) == 2  # the first attempt and its retry, held until the deadline
    await until(lambda: env.in_flight() == (0, 0))


@pytest.mark.parametrize("streaming", [True, False], ids=["stream", "unary"])
async def test_at_100_percent_every_request_retries_as_before(env: Env, streaming: bool) -> None:
    since = len(env.fake.requests)
    errors = await asyncio.gather(
        *(call(env, chat("open", f"open-{i}"), streaming) for i in range(CONCURRENT))
    )
    assert env.seen("down", since) == CONCURRENT * 3  # each: its attempt and `retries = 2`
    for error in errors:
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert HELD_BACK not in (error.details() or "")
    assert env.in_flight() == (0, 0)


async def test_a_group_without_budget_fails_at_its_first_error(env: Env) -> None:
    since = len(env.fake.requests)
    error = await call(env, chat("none", "none"), streaming=False)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert HELD_BACK in (error.details() or "")
    assert env.seen("down", since) == 1
    assert env.in_flight() == (0, 0)


async def test_an_embedding_spends_the_same_budget(env: Env) -> None:
    since = len(env.fake.requests)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await env.gateway.stub.Embed(pb.EmbedRequest(model="none", inputs=["Hi"]), timeout=20)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert HELD_BACK in (info.value.details() or "")
    assert env.seen("down", since, "embeddings") == 1
    assert env.in_flight() == (0, 0)


async def test_retries_the_budget_refused_are_counted_by_provider() -> None:
    config = """
[providers.p]
kind = "mock"
[providers.p.models.m]
fault = "error_before_first_token"
[routing]
retry_budget_percent = 0
min_retry_concurrency = 0
"""
    async with observed_gateway(config, prometheus_port=0) as gw:
        for _ in range(2):
            with pytest.raises(grpc.aio.AioRpcError):
                await gw.running.stub.Chat(pb.ChatRequest(model="p/m", messages=[user("hi")]), timeout=20)
        prometheus = gw.running.server.telemetry.prometheus
        assert prometheus is not None
        text = await scrape(prometheus.port)
    assert sample(text, "provider_gateway_retries_refused_total", provider="p") == 2


# --- the budget's arithmetic, without a server -------------------------------------------------


def failure() -> GatewayError:
    return GatewayError(ErrorKind.RESOURCE_EXHAUSTED, "slow down", provider="a", retry_after=3.0)


def test_retries_in_flight_stay_below_the_percentage_of_requests() -> None:
    budget = RetryBudget()
    refused: list[str] = []
    budget.on_refused = refused.append
    budget.requests = 10
    settings = RoutingSettings(retry_budget_percent=20, min_retry_concurrency=1)
    budget.take(settings, failure(), "a")
    budget.take(settings, failure(), "a")
    with pytest.raises(GatewayError) as info:
        budget.take(settings, failure(), "b")
    error = info.value
    assert (error.kind, error.provider, error.retry_after) == (ErrorKind.RESOURCE_EXHAUSTED, "a", 3.0)
    assert error.message.startswith("slow down (not retried")
    assert "2 retries in flight for 10 requests" in error.message
    assert (budget.retries, refused) == (2, ["b"])
    budget.retries -= 1  # one ends: the next may start
    budget.take(settings, failure(), "a")
    assert budget.retries == 2


def test_the_floor_lets_retries_through_when_few_requests_are_in_flight() -> None:
    budget = RetryBudget()
    budget.requests = 3
    settings = RoutingSettings()  # Envoy's defaults: 20%, 3
    for _ in range(3):
        budget.take(settings, failure(), "a")
    with pytest.raises(GatewayError):
        budget.take(settings, failure(), "a")


def test_at_100_percent_no_retry_is_refused() -> None:
    budget = RetryBudget()
    budget.requests = 1
    settings = RoutingSettings(retry_budget_percent=100, min_retry_concurrency=0)
    for _ in range(5):  # more than could ever be in flight: still not refused
        budget.take(settings, failure(), "a")
    assert budget.retries == 5


def routing(text: str) -> RoutingSettings:
    return parse_routing(config_module.parse(tomllib.loads(text), "test.toml")).defaults


def test_the_options_default_to_envoys_and_are_checked() -> None:
    defaults = routing("[providers.mock]\nkind = 'mock'\n")
    assert (defaults.retry_budget_percent, defaults.min_retry_concurrency) == (20, 3)
    for bad in ("retry_budget_percent = 101", "retry_budget_percent = -1", "min_retry_concurrency = -1"):
        with pytest.raises(ConfigError):
            routing(f"[providers.mock]\nkind = 'mock'\n[routing]\n{bad}\n")
