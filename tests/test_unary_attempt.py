"""A unary call's attempt (issue 15): the provider's whole answer awaited once, not replayed as events,
and judged, timed, bounded and accounted as a stream's attempt is."""

from __future__ import annotations

import asyncio
import logging

import grpc
import pytest
from routing_support import chat, make_router, mock, two_deployments
from rpc_util import WAIT_S, access_line, rpc_error
from rpc_util import chat as pb_chat

from provider_gateway import domain as d
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.providers.base import fold, relayed_answer, replay
from provider_gateway.providers.mock import MockScript
from provider_gateway.routing.timing import RequestClock

SLOW_FIRST_TOKEN = """
[providers.mock.models.late]
tokens = 2
first_token_delay_ms = 400
[routing]
ttft_timeout_s = 0.1
"""


async def test_a_unary_answer_is_bounded_by_the_deadline_not_the_first_token_limit(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    """A unary answer comes whole: its wait is not a stream's wait for a first token."""
    async with gateway_factory(SLOW_FIRST_TOKEN) as gw:
        response = await gw.stub.Chat(pb_chat("mock/late"), timeout=WAIT_S)
        assert response.text == "Mock answer:"
        assert [a.outcome for a in response.finish.attempts] == ["ok"]
        error = await rpc_error(gw.stub.ChatStream(pb_chat("mock/late"), timeout=WAIT_S))
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED  # the stream's first token is late
        assert "no first token within 0.1 s" in error.details()


async def test_the_gateways_own_deadline_ends_a_hanging_unary_call(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    """Without a client deadline, the routing timeout is the call's deadline."""
    text = '[providers.mock.models.stuck]\nfault = "hang"\n[routing]\ntimeout_s = 0.2'
    async with gateway_factory(text) as gw, asyncio.timeout(WAIT_S):
        error = await rpc_error(gw.stub.Chat(pb_chat("mock/stuck")))
        mock_stats = gw.provider("mock").stats
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "the request's deadline passed" in error.details()
    assert mock_stats.cancelled == 1  # the provider's call was stopped, not left running


async def test_a_passed_deadline_on_a_unary_call_is_final_and_blames_no_deployment() -> None:
    router = make_router(two_deployments('fault = "hang"'))
    with pytest.raises(GatewayError) as caught:
        await router.chat(chat("g"), RequestClock(deadline=router.clock() + 0.05))
    assert caught.value.kind is ErrorKind.DEADLINE_EXCEEDED
    assert not caught.value.retryable
    assert mock(router, "b").stats.started == 0
    assert router.planner.deployments["g/a/m"].breaker._consecutive == 0
    assert router.planner.deployments["g/a/m"].limiter.in_flight == 0  # its slot was given back


async def test_a_socket_error_from_a_unary_call_is_a_connection_failure_that_fails_over() -> None:
    router = make_router(two_deployments("tokens = 2"))

    async def refused(request: d.ChatRequest) -> d.ChatResponse:
        raise ConnectionRefusedError(111, "refused")

    mock(router, "a").chat = refused  # type: ignore[method-assign]
    response, finish = await router.chat(chat("g"), RequestClock())
    assert response.text.startswith("Mock answer:")
    assert [(a.provider, a.outcome) for a in finish.attempts] == [("a", "UNAVAILABLE"), ("b", "ok")]
    assert finish.attempts[0].error == "g/a/m: connection failed"


async def test_a_cancelled_unary_call_is_logged_with_its_estimated_usage(
    gateway_factory, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    text = '[providers.mock.models.stuck]\nfault = "hang"'
    async with gateway_factory(text) as gw:
        provider, started = gw.provider("mock"), asyncio.Event()
        hang = provider.chat

        async def noted(request: d.ChatRequest) -> d.ChatResponse:
            started.set()
            return await hang(request)

        provider.chat = noted
        with caplog.at_level(logging.INFO, logger="provider_gateway.access"):
            call = gw.stub.Chat(pb_chat("mock/stuck", "tell me"), timeout=WAIT_S)
            await asyncio.wait_for(started.wait(), WAIT_S)
            call.cancel()
            line = await access_line(caplog)
    assert line.usage_estimated is True  # type: ignore[attr-defined]
    assert line.input_tokens >= 1  # type: ignore[attr-defined]
    assert line.output_tokens == 0  # type: ignore[attr-defined]  # nothing came back


async def test_a_unary_finish_is_timed_as_a_streams(gateway) -> None:  # type: ignore[no-untyped-def]
    response = await gateway.stub.Chat(pb_chat("mock/echo"), timeout=WAIT_S)
    timing = response.finish.timing
    assert 0 < timing.time_to_first_token_us <= timing.total_us
    assert 0 < timing.upstream_us <= timing.total_us
    (attempt,) = response.finish.attempts
    assert attempt.outcome == "ok"
    assert attempt.latency_us > 0


async def test_a_unary_answer_without_content_has_no_first_token(gateway) -> None:  # type: ignore[no-untyped-def]
    """As a stream with no content event: its time to first token stays 0."""
    finished = [d.UsageEvent(d.Usage(3, 0)), d.ProviderFinish(d.FinishReason.STOP)]
    gateway.provider("mock").push(MockScript(events=finished))
    response = await gateway.stub.Chat(pb_chat("mock/echo"), timeout=WAIT_S)
    gateway.provider("mock").push(MockScript(events=finished))
    events = [e async for e in gateway.stub.ChatStream(pb_chat("mock/echo"), timeout=WAIT_S)]
    assert response.text == ""
    assert response.finish.timing.time_to_first_token_us == 0
    assert response.finish.timing.total_us > 0
    assert events[-1].finish.timing.time_to_first_token_us == 0


CALL = d.ToolCall("call_1", "lookup", '{"q": "x"')  # arguments cut short: not JSON
ANSWERS = {
    "text": d.ChatResponse(text="hi", usage=d.Usage(1, 1), finish=d.ProviderFinish(d.FinishReason.STOP)),
    "text and raw content": d.ChatResponse(
        text="hi",
        raw_content=[d.RawContent("reference", {"id": 1})],
        finish=d.ProviderFinish(d.FinishReason.STOP),
    ),
    "a cut tool call": d.ChatResponse(tool_calls=[CALL], finish=d.ProviderFinish(d.FinishReason.TOOL_CALLS)),
    "reasoning without parts": d.ChatResponse(text="ok", reasoning="hm", reasoning_signature="sig"),
    "reasoning blocks without state": d.ChatResponse(
        reasoning_parts=[d.ReasoningPart("a"), d.ReasoningPart("b")], text="ok"
    ),
}


@pytest.mark.parametrize("answer", ANSWERS.values(), ids=ANSWERS.keys())
def test_a_unary_answer_is_handed_on_as_its_replay_folds_back(answer: d.ChatResponse) -> None:
    """The fast path (text alone, passed on as it is) and the round trip give the same answer."""
    assert relayed_answer(answer) == fold(replay(answer))


async def test_a_unary_answer_is_normalised_as_a_stream_is() -> None:
    router = make_router(two_deployments("tokens = 2"))

    async def answer(request: d.ChatRequest) -> d.ChatResponse:
        return ANSWERS["a cut tool call"]

    mock(router, "a").chat = answer  # type: ignore[method-assign]
    response, finish = await router.chat(chat("g"), RequestClock())
    assert [(c.id, c.arguments_json, c.incomplete) for c in response.tool_calls] == [
        ("call_1", '{"q": "x"', True)
    ]
    assert finish.reason is d.FinishReason.TOOL_CALLS
    assert finish.timing.time_to_first_token_us > 0
