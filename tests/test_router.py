"""The router's retry loop: which failures fail over, Retry-After, backoff and deadlines, stalls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from routing_support import (
    FakeClock,
    chat,
    finish_of,
    make_router,
    mock,
    run_stream,
    stream_until_error,
    two_deployments,
)

from provider_gateway import config as config_module
from provider_gateway.domain import Capabilities, TextDelta
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.providers.mock import MockModel, MockScript
from provider_gateway.routing.attempt import CURRENT_ATTEMPT, AttemptInfo
from provider_gateway.routing.breaker import BreakerState
from provider_gateway.routing.settings import RoutingSettings
from provider_gateway.routing.shared_state import MemoryCounterStore
from provider_gateway.routing.timing import RequestClock
from provider_gateway.v1 import provider_service_pb2 as pb

RETRYABLE = ["UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED", "RESOURCE_EXHAUSTED"]
FINAL = ["INVALID_ARGUMENT", "NOT_FOUND", "UNAUTHENTICATED", "PERMISSION_DENIED", "FAILED_PRECONDITION"]


@pytest.mark.parametrize("kind", RETRYABLE)
async def test_retryable_failure_before_first_token_fails_over(kind: str) -> None:
    router = make_router(two_deployments(f'fault = "error_before_first_token"\nfault_status = "{kind}"'))
    events = await run_stream(router, chat("g"))
    finish = finish_of(events)
    assert finish.provider == "b"
    assert [(a.provider, a.outcome) for a in finish.attempts] == [("a", kind), ("b", "ok")]
    assert "".join(e.text for e in events if isinstance(e, TextDelta))


@pytest.mark.parametrize("kind", FINAL)
async def test_final_failure_is_returned_without_failover(kind: str) -> None:
    router = make_router(two_deployments(f'fault = "error_before_first_token"\nfault_status = "{kind}"'))
    with pytest.raises(GatewayError) as caught:
        await run_stream(router, chat("g"))
    assert caught.value.kind is ErrorKind(kind)
    assert mock(router, "b").stats.started == 0


async def test_failure_after_first_token_is_an_error_not_a_failover() -> None:
    router = make_router(two_deployments('fault = "error_after_tokens"\nfault_after_tokens = 2'))
    seen, error = await stream_until_error(router, chat("g"))
    assert error.kind is ErrorKind.UNAVAILABLE
    assert len([e for e in seen if isinstance(e, TextDelta)]) == 2
    assert mock(router, "b").stats.started == 0


async def test_request_fallbacks_are_tried_in_order() -> None:
    text = two_deployments('fault = "error_before_first_token"')
    router = make_router(text)
    finish = finish_of(await run_stream(router, chat("a/m", fallbacks=["b/m"])))
    assert [a.provider for a in finish.attempts] == ["a", "b"]


async def test_unary_chat_uses_the_same_failover_and_reports_attempts() -> None:
    router = make_router(two_deployments('fault = "error_before_first_token"'))
    response, finish = await router.chat(chat("g"), RequestClock())
    assert response.text
    assert finish.provider == "b"
    assert [a.outcome for a in finish.attempts] == ["UNAVAILABLE", "ok"]


async def test_retry_after_is_honoured_before_retrying_the_same_deployment() -> None:
    clock = FakeClock()
    router = make_router('[providers.a]\nkind = "mock"', clock=clock)
    a = mock(router, "a")
    a.push(MockScript(error=GatewayError(ErrorKind.RESOURCE_EXHAUSTED, "slow down", retry_after=0.75)))
    finish = finish_of(await run_stream(router, chat("a/echo")))
    assert [x.outcome for x in finish.attempts] == ["RESOURCE_EXHAUSTED", "ok"]
    assert len(clock.sleeps) == 1
    assert clock.sleeps[0][1] >= 0.75


async def test_a_long_retry_after_fails_fast_with_the_delay_for_the_client() -> None:
    clock = FakeClock()
    router = make_router('[providers.a]\nkind = "mock"', clock=clock)
    mock(router, "a").push(
        MockScript(error=GatewayError(ErrorKind.RESOURCE_EXHAUSTED, "quota", retry_after=30))
    )
    with pytest.raises(GatewayError) as caught:
        await run_stream(router, chat("a/echo"))
    assert caught.value.kind is ErrorKind.RESOURCE_EXHAUSTED
    assert caught.value.retry_after == pytest.approx(30, abs=0.01)
    assert clock.sleeps == []


async def test_a_long_wait_on_one_deployment_moves_to_the_next_without_sleeping() -> None:
    clock = FakeClock()
    router = make_router(two_deployments('fault = "rate_limit"\nretry_after_ms = 30000'), clock=clock)
    finish = finish_of(await run_stream(router, chat("g")))
    assert [a.outcome for a in finish.attempts] == ["RESOURCE_EXHAUSTED", "ok"]
    assert clock.sleeps == []


async def test_backoff_never_sleeps_past_the_deadline() -> None:
    clock = FakeClock()
    routing = "retries = 10\nbackoff_base_ms = 50\nmax_retry_wait_s = 5"
    router = make_router(
        '[providers.a]\nkind = "mock"\n[providers.a.models.m]\nfault = "error_before_first_token"\n'
        f"[routing]\n{routing}",
        clock=clock,
    )
    deadline = clock.now + 0.4
    with pytest.raises(GatewayError) as caught:
        await run_stream(router, chat("a/m"), RequestClock(deadline=deadline))
    assert caught.value.kind is ErrorKind.UNAVAILABLE
    assert clock.sleeps, "a short backoff within the deadline is taken"
    assert all(when + wait < deadline for when, wait in clock.sleeps)
    assert clock.now < deadline


def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    router = make_router('[providers.a]\nkind = "mock"', seed=1)
    settings = RoutingSettings(backoff_base_ms=100, backoff_max_ms=1000)
    for failures, cap in [(0, 0.1), (1, 0.2), (3, 0.8), (6, 1.0)]:
        samples = [router.retry.backoff(failures, settings) for _ in range(400)]
        assert all(0 <= s <= cap for s in samples)
        assert max(samples) > cap * 0.9  # full jitter spans the whole range
        assert min(samples) < cap * 0.1


async def test_no_first_token_within_the_ttft_timeout_fails_over() -> None:
    router = make_router(two_deployments('fault = "hang"', routing="ttft_timeout_s = 0.05"))
    finish = finish_of(await run_stream(router, chat("g")))
    assert [a.outcome for a in finish.attempts] == ["DEADLINE_EXCEEDED", "ok"]
    assert "no first token" in finish.attempts[0].error
    await asyncio.wait_for(mock(router, "a").stats.cancelled_event.wait(), 5)


async def test_a_stream_that_stalls_after_output_ends_with_an_error() -> None:
    router = make_router(
        two_deployments("tokens = 5\ntoken_delay_ms = 60000", routing="idle_timeout_s = 0.05")
    )
    seen, error = await stream_until_error(router, chat("g"))
    assert error.kind is ErrorKind.DEADLINE_EXCEEDED
    assert "no event for" in error.message
    assert len(seen) == 1
    await asyncio.wait_for(mock(router, "a").stats.cancelled_event.wait(), 5)


async def test_a_steady_stream_longer_than_the_idle_limit_is_never_cut() -> None:
    """The idle limit bounds each wait for an event, not the stream: tokens every 20 ms for well
    over the 0.3 s limit all arrive, from the first deployment, without a failover."""
    router = make_router(two_deployments("tokens = 40\ntoken_delay_ms = 20", routing="idle_timeout_s = 0.3"))
    events = await run_stream(router, chat("g"))
    assert sum(isinstance(e, TextDelta) for e in events) == 40
    assert [a.provider for a in finish_of(events).attempts] == ["a"]


async def test_every_attempt_is_visible_to_provider_wrappers() -> None:
    router = make_router(two_deployments('fault = "error_before_first_token"'))
    seen: list[AttemptInfo | None] = []
    for name in ("a", "b"):
        provider = mock(router, name)
        original = provider.chat_stream

        def spy(request, original=original):  # type: ignore[no-untyped-def]
            seen.append(CURRENT_ATTEMPT.get())
            return original(request)

        provider.chat_stream = spy  # type: ignore[method-assign]
        router.planner.deployments[f"g/{name}/m"].provider = provider
    await run_stream(router, chat("g"))
    assert seen == [AttemptInfo(1, "g/a/m", "closed"), AttemptInfo(2, "g/b/m", "closed")]
    assert CURRENT_ATTEMPT.get() is None


def test_weighted_random_follows_the_weights() -> None:
    router = make_router(
        '[providers.a]\nkind = "mock"\n[providers.b]\nkind = "mock"\n[groups.g]\n'
        'deployments = [{ provider = "a", model = "echo", weight = 3 }, { provider = "b", model = "echo", weight = 1 }]'
    )
    firsts = [router.plan("g").deployments[0].spec.provider for _ in range(4000)]
    assert firsts.count("a") / len(firsts) == pytest.approx(0.75, abs=0.03)
    assert {len(router.plan("g").deployments)} == {2}  # the other stays as failover


def test_latency_strategy_prefers_the_faster_deployment() -> None:
    router = make_router(
        '[providers.a]\nkind = "mock"\n[providers.b]\nkind = "mock"\n[groups.g]\nstrategy = "latency"\n'
        'deployments = [{ provider = "a", model = "echo" }, { provider = "b", model = "echo" }]'
    )
    router.planner.deployments["g/a/echo"].record_ttft(0.5)
    router.planner.deployments["g/b/echo"].record_ttft(0.05)
    firsts = [router.plan("g").deployments[0].spec.provider for _ in range(200)]
    assert firsts.count("b") == 200  # two choices out of two: the faster always wins
    router.planner.deployments["g/b/echo"].limiter.in_flight = 20  # ...unless it is crowded
    assert router.plan("g").deployments[0].spec.provider == "a"


async def test_count_tokens_and_embed_resolve_groups() -> None:
    from provider_gateway.domain import CountTokensRequest, EmbedRequest

    router = make_router(two_deployments("tokens = 2").replace('model = "m"', 'model = "embed"'))
    route, result = await router.embed(EmbedRequest("g", ["x"]))
    assert route.provider == "a"
    assert len(result.vectors) == 1
    route, count = await router.count_tokens(CountTokensRequest("a/echo", text="hello"))
    assert route.provider == "a"
    assert count.input_tokens > 0


async def test_unary_calls_fail_over_even_after_partial_output() -> None:
    router = make_router(two_deployments('fault = "error_after_tokens"\nfault_after_tokens = 2'))
    response, finish = await router.chat(chat("g"), RequestClock())
    assert finish.provider == "b"
    assert response.text.count("Mock") == 1  # only b's answer: a's partial output was discarded
    assert [a.outcome for a in finish.attempts] == ["UNAVAILABLE", "ok"]


@pytest.mark.parametrize(
    ("primary", "outcome"),
    [
        ('fault = "error_before_first_token"', "UNAVAILABLE"),
        ('fault = "rate_limit"\nretry_after_ms = 30000', "RESOURCE_EXHAUSTED"),
        ('fault = "hang"', "DEADLINE_EXCEEDED"),
    ],
)
async def test_clients_over_grpc_get_the_fallbacks_answer_when_the_primary_fails_early(
    gateway_factory,  # type: ignore[no-untyped-def]
    primary: str,
    outcome: str,
) -> None:
    async with gateway_factory(two_deployments(primary, routing="ttft_timeout_s = 0.1")) as gw:
        events = [e async for e in gw.stub.ChatStream(_pb_chat("g"))]
        finish = events[-1].finish
        assert finish.provider == "b"
        assert [(a.provider, a.outcome) for a in finish.attempts] == [("a", outcome), ("b", "ok")]


async def test_clients_over_grpc_get_an_error_status_when_the_primary_fails_mid_stream(
    gateway_factory,
) -> None:  # type: ignore[no-untyped-def]
    async with gateway_factory(two_deployments('fault = "error_after_tokens"\nfault_after_tokens = 2')) as gw:
        texts = []
        with pytest.raises(grpc.aio.AioRpcError) as caught:  # noqa: PT012 - the stream fails while read
            async for event in gw.stub.ChatStream(_pb_chat("g")):
                texts.append(event.text_delta.text)
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
        assert "".join(texts) == "Mock answer:"  # the two tokens sent (perhaps as one message)
        assert gw.provider("b").stats.started == 0


def _pb_chat(model: str) -> pb.ChatRequest:
    return pb.ChatRequest(
        model=model, messages=[pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text="hi")])]
    )


async def test_a_passed_client_deadline_is_final_and_does_not_count_against_the_deployment() -> None:
    router = make_router(two_deployments('fault = "hang"', routing="ttft_timeout_s = 30"))
    with pytest.raises(GatewayError) as caught:
        await run_stream(router, chat("g"), RequestClock(deadline=router.clock() + 0.05))
    assert caught.value.kind is ErrorKind.DEADLINE_EXCEEDED
    assert not caught.value.retryable
    assert mock(router, "b").stats.started == 0
    assert router.planner.deployments["g/a/m"].breaker._consecutive == 0


async def test_a_socket_error_from_an_adapter_is_a_retryable_connection_failure() -> None:
    router = make_router(two_deployments("tokens = 2"))

    async def refused(request):  # type: ignore[no-untyped-def]
        raise ConnectionRefusedError(111, "refused")
        yield  # an async generator

    router.planner.deployments["g/a/m"].provider = type(
        "Refusing",
        (),
        {"chat_stream": staticmethod(refused), "kind": "mock", "capabilities": staticmethod(Capabilities)},
    )()  # type: ignore[assignment]
    finish = finish_of(await run_stream(router, chat("g")))
    assert [(a.provider, a.outcome) for a in finish.attempts] == [("a", "UNAVAILABLE"), ("b", "ok")]
    assert finish.attempts[0].error == "g/a/m: connection failed"  # the class name stays in the log


def test_a_deployment_may_override_provider_options_and_needs_a_distinct_name() -> None:
    base = '[providers.a]\nkind = "mock"\n[providers.a.models.m]\ntokens = 1\n[groups.g]\ndeployments = ['
    router = make_router(
        base + '{ provider = "a", model = "echo" },'
        ' { provider = "a", model = "echo", name = "sick", options = { healthy = false } }]'
    )
    shared, own = router.planner.groups["g"]
    assert shared.provider is router.registry.get("a")
    assert own.key == "g/sick"
    assert own.provider is not shared.provider
    assert own.provider.healthy is False  # type: ignore[attr-defined]
    assert "m" in own.provider.models  # type: ignore[attr-defined]  # the provider's own options still apply
    with pytest.raises(config_module.ConfigError, match="appears twice"):
        make_router(base + '{ provider = "a", model = "echo" }, { provider = "a", model = "echo" }]')
    with pytest.raises(config_module.ConfigError, match=r"groups\.g\.deployments\[0\]\.provider"):
        make_router(base + '{ provider = "nope", model = "echo" }]')


async def test_a_plain_route_never_takes_a_groups_deployment() -> None:
    """A group's deployment is known as "<group>/<provider>/<model>", a plain route's as
    "<provider>/<model>". With a group named like a provider (refused by the configuration,
    tests/test_config.py; built by hand here), a request for provider a's model "b/echo" (a vendor
    model id with a slash, as OpenRouter's) was answered by group a's deployment on provider b, and
    shared its breaker. It is provider a's to answer: a has no such model."""
    from provider_gateway.routing.settings import DeploymentSpec, GroupSpec, RoutingConfig

    group = GroupSpec("a", (DeploymentSpec("b", "echo"),), RoutingSettings())
    router = make_router(
        '[providers.a]\nkind = "mock"\n[providers.b]\nkind = "mock"\n',
        routing=RoutingConfig(groups={"a": group}),
    )
    with pytest.raises(GatewayError) as caught:
        await run_stream(router, chat("a/b/echo"))
    assert (caught.value.kind, caught.value.provider) == (ErrorKind.NOT_FOUND, "a")
    assert mock(router, "b").stats.started == 0
    assert router.plan("a/b/echo").deployments[0] is not router.planner.groups["a"][0]
    finish = finish_of(await run_stream(router, chat("a")))  # the group itself still serves
    assert (finish.provider, finish.model) == ("b", "echo")


async def test_routes_to_ever_new_model_names_keep_a_bounded_state() -> None:
    """Clients choose `provider/model` names: a client cycling through random ones must not grow
    the router's memory (breaker, limiter and latency state per name) without bound."""
    from provider_gateway.routing.plans import MAX_ROUTE_DEPLOYMENTS

    router = make_router('[providers.mock]\nkind = "mock"\n')
    for i in range(MAX_ROUTE_DEPLOYMENTS + 200):
        router.plan(f"mock/model-{i}")
    response, finish = await router.chat(chat("mock/echo"), RequestClock())
    assert finish.model == "echo"
    assert "hello there" in response.text
    assert len(router.limiter_capacity()) == 1  # one series per provider, not per name
    states = router.planner.deployments
    assert MAX_ROUTE_DEPLOYMENTS <= len(states) <= MAX_ROUTE_DEPLOYMENTS + 1
    assert "mock/model-0" not in states
    assert f"mock/model-{MAX_ROUTE_DEPLOYMENTS + 199}" in states
    await router.aclose()


async def test_a_route_in_use_keeps_its_state_while_new_names_come_and_a_forgotten_one_starts_anew() -> None:
    """A plain route's plan is kept between requests; using it still counts as use, so a route in
    steady use is never the one forgotten, and a forgotten route's next request gets the state
    the router keeps (not a kept plan's copy nobody else sees)."""
    from provider_gateway.routing.plans import MAX_ROUTE_DEPLOYMENTS

    router = make_router('[providers.mock]\nkind = "mock"\n')
    hot = router.plan("mock/echo").deployments[0]
    first = router.plan("mock/model-0").deployments[0]
    for i in range(1, MAX_ROUTE_DEPLOYMENTS + 200):
        # (with a fallback: these plans are walked, not kept, so model-0's kept plan stays until
        # its deployment is forgotten)
        router.plan(f"mock/model-{i}", fallbacks=[f"mock/backup-{i}"])
        if i % 100 == 0:
            assert router.plan("mock/echo").deployments[0] is hot
    states = router.planner.deployments
    assert states["mock/echo"] is hot
    assert "mock/model-0" not in states
    again = router.plan("mock/model-0").deployments[0]
    assert again is not first
    assert states["mock/model-0"] is again
    _, finish = await router.chat(chat("mock/echo"), RequestClock())
    assert finish.model == "echo"
    assert finish.attempts[0].outcome == "ok"
    await router.aclose()


async def test_a_new_route_forgotten_at_once_still_answers_on_its_next_request() -> None:
    """With every other plain route holding state (here: their breakers open, as when a provider
    is down and a client cycles model names), a new name's deployment is the only idle one and is
    forgotten as soon as it is made. Its next request must still be routed (a new deployment, as
    before plans were kept), not fail on a kept plan whose deployment the router no longer has."""
    from provider_gateway.routing.breaker import BreakerState
    from provider_gateway.routing.plans import MAX_ROUTE_DEPLOYMENTS

    router = make_router('[providers.mock]\nkind = "mock"\n')
    for i in range(MAX_ROUTE_DEPLOYMENTS):
        breaker = router.plan(f"mock/down-{i}").deployments[0].breaker
        while breaker.state is BreakerState.CLOSED:
            breaker.record_failure(breaker.acquire())
    for _ in range(3):
        response, finish = await router.chat(chat("mock/echo"), RequestClock())
        assert "hello there" in response.text
        assert finish.attempts[-1].outcome == "ok"
    assert len(router.planner.routes) <= MAX_ROUTE_DEPLOYMENTS + 1
    await router.aclose()


async def test_made_up_model_names_do_not_reset_what_a_deployments_limiter_learned() -> None:
    """A caller sending more made-up model names than routes are kept (each a quick NOT_FOUND) must
    not make the router forget the concurrency a real model's 429s taught it: its next requests
    would start again at `initial` (256) concurrent calls and pay for the lesson once more."""
    from provider_gateway.routing.plans import MAX_ROUTE_DEPLOYMENTS

    router = make_router('[providers.a]\nkind = "mock"\n[routing.limiter]\ndecrease_interval_s = 0\n')
    await run_stream(router, chat("a/echo"))
    deployment = router.planner.deployments["a/echo"]
    for _ in range(6):
        deployment.limiter.on_rate_limited(0.0)  # the provider answered 429 six times (no wait named)
    learned = deployment.limiter.limit
    assert learned < 8
    for i in range(MAX_ROUTE_DEPLOYMENTS + 1):
        with pytest.raises(GatewayError):
            await run_stream(router, chat(f"a/no-such-model-{i}"))
    await run_stream(router, chat("a/echo"))
    assert router.planner.deployments["a/echo"].limiter.limit <= learned + 1
    assert len(router.planner.routes) <= MAX_ROUTE_DEPLOYMENTS + 1  # the made-up names still go
    await router.aclose()


class SlowEjectStore(MemoryCounterStore):
    """A shared store whose ejections take a Redis round trip under load."""

    async def eject(self, key: str, seconds: float) -> None:
        await asyncio.sleep(0.2)
        await super().eject(key, seconds)


async def test_a_429_judged_as_the_read_limit_passes_still_fails_over() -> None:
    """The 429 ends the read 60 ms into a 100 ms time-to-first-token limit; judging it waits 200 ms
    on the store. That wait is not a read: the limit must not cancel it, and the request fails
    over to the backup with the 429 in its attempts (it once escaped as a bare CancelledError)."""
    store = SlowEjectStore(time.monotonic)
    router = make_router(two_deployments("tokens = 2", routing="ttft_timeout_s = 0.1"), store=store)

    async def rate_limited(request: Any) -> AsyncIterator[Any]:
        await asyncio.sleep(0.06)
        raise GatewayError(ErrorKind.RESOURCE_EXHAUSTED, "slow down", retry_after=5, retryable=True)
        yield  # an async generator, as a provider's stream is

    router.planner.deployments["g/a/m"].provider = SimpleNamespace(
        chat_stream=rate_limited, kind="mock", capabilities=Capabilities
    )
    events = await run_stream(router, chat("g"))
    assert [(a.provider, a.outcome) for a in finish_of(events).attempts] == [
        ("a", "RESOURCE_EXHAUSTED"),
        ("b", "ok"),
    ]


async def test_an_ejection_in_the_memory_store_lasts_its_time_and_then_holds_nothing() -> None:
    """Nothing ejected answers zeros without reading the clock; an ejection counts down on it and,
    once over, is gone as if it never was (for every key asked, ejected or not)."""
    clock = FakeClock()
    store = MemoryCounterStore(clock)
    assert await store.ejections(["a", "b"]) == [0.0, 0.0]
    await store.eject("a", 5.0)
    await store.eject("b", 1.0)
    assert await store.ejections(["a", "b", "c"]) == [5.0, 1.0, 0.0]
    clock.now += 3.0
    assert await store.ejections(["a", "b", "c"]) == [2.0, 0.0, 0.0]
    await store.eject("a", 1.0)  # a shorter ejection never shortens one in force
    assert await store.ejections(["a"]) == [2.0]
    clock.now += 2.0
    assert await store.ejections(["a", "b", "c"]) == [0.0, 0.0, 0.0]
    await store.eject("b", 4.0)
    assert await store.ejections(["b", "a"]) == [4.0, 0.0]


async def test_a_kept_plan_lets_no_key_use_a_provider_it_may_not(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    """Plain routes' plans are kept across callers; the keys' permissions are not: a key allowed one
    provider is refused the route another key just used (by an explicit provider, by a prefix, by
    the default provider), as it was before any plan was kept."""
    from provider_gateway.server.auth import hash_key

    allowed, restricted = "route-key-allowed-0123456789abcdefghij", "route-key-restricted-0123456789abcde"
    config = (
        '[server]\ndefault_provider = "other"\n[providers.mock]\nkind = "mock"\n[providers.other]\n'
        'kind = "mock"\n[auth]\n[[auth.keys]]\nname = "all"\n'
        f'sha256 = "{hash_key(allowed)}"\n[[auth.keys]]\nname = "mine"\nsha256 = "{hash_key(restricted)}"\n'
        'providers = ["mock"]\n'
    )
    explicit = _pb_chat("echo")
    explicit.provider = "other"
    async with gateway_factory(config) as gw:
        for request in (explicit, _pb_chat("other/echo"), _pb_chat("echo")):
            for _ in range(2):  # the second time from the kept plan
                reply = await gw.stub.Chat(
                    request, metadata=(("authorization", f"Bearer {allowed}"),), timeout=10
                )
                assert reply.finish.provider == "other"
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await gw.stub.Chat(
                        request, metadata=(("authorization", f"Bearer {restricted}"),), timeout=10
                    )
                # As a provider not configured is (tests/test_unseen_providers.py).
                assert caught.value.code() is grpc.StatusCode.NOT_FOUND
                assert "no provider 'other' for this key" in (caught.value.details() or "")
        allowed_reply = await gw.stub.Chat(
            _pb_chat("mock/echo"), metadata=(("authorization", f"Bearer {restricted}"),), timeout=10
        )
        assert allowed_reply.finish.provider == "mock"


async def test_a_stream_read_on_in_another_task_still_names_its_attempt_there() -> None:
    """The attempt's context variables are set per task, not per event: a stream whose reading
    moves to another task (grpc resumes or closes streams from its own) still shows the provider
    its attempt on every read, and leaves nothing set behind."""
    router = make_router('[providers.mock]\nkind = "mock"\n')
    provider = mock(router, "mock")
    original = provider.chat_stream
    seen: list[AttemptInfo | None] = []

    async def spy(request):  # type: ignore[no-untyped-def]
        async for event in original(request):
            seen.append(CURRENT_ATTEMPT.get())
            yield event

    provider.chat_stream = spy  # type: ignore[method-assign]
    stream = router.chat_stream(chat("mock/echo"), RequestClock())

    async def first() -> Any:
        return await anext(stream)

    async def rest() -> list[Any]:
        return [event async for event in stream]

    assert isinstance(await asyncio.ensure_future(first()), TextDelta)
    events = await asyncio.ensure_future(rest())
    assert finish_of(events).attempts[0].outcome == "ok"
    assert len(seen) >= 3
    assert seen == [AttemptInfo(1, "mock/echo", "closed")] * len(seen)
    assert CURRENT_ATTEMPT.get() is None


async def test_routes_whose_limiter_learned_from_one_429_cannot_pin_every_slot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Made-up names that each met one 429 (an account-wide rate limit) keep what their limiters
    learned; once they fill every plain-route slot, the least recently used of them goes rather
    than a new route's deployment, whose breaker must still open."""
    from provider_gateway.routing import plans

    monkeypatch.setattr(plans, "MAX_ROUTE_DEPLOYMENTS", 8)
    clock = FakeClock()
    router = make_router(
        '[providers.a]\nkind = "mock"\n[routing]\nretries = 0\nmax_retry_wait_s = 0\n'
        "[routing.breaker]\nconsecutive_failures = 1\ncooldown_s = 30\n",
        clock=clock,
    )
    a = mock(router, "a")
    for i in range(9):
        a.set_model(f"made-up-{i}", MockModel(fault="rate_limit", retry_after_ms=1000))
        with pytest.raises(GatewayError):
            await run_stream(router, chat(f"a/made-up-{i}"))
    clock.now += 3600
    assert all(d.limiter.learned() for d in router.planner.routes.values())
    a.set_model("real", MockModel(fault="error_before_first_token"))
    with pytest.raises(GatewayError):
        await run_stream(router, chat("a/real"))  # opens its breaker
    kept = router.planner.routes.get("a/real")
    assert kept is not None
    assert kept.breaker.state is BreakerState.OPEN
    assert len(router.planner.routes) <= 8
    await router.aclose()
