"""Injected faults of the mock, configured in TOML, as a client of the real gRPC API sees them."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from rpc_util import HANG_DEADLINE_S, WAIT_S, chat, collect_until_error, kinds, rpc_error, runs, wait_for

from provider_gateway.domain import FinishReason, ProviderFinish, TextDelta, Usage, UsageEvent
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.providers.mock import MockScript
from provider_gateway.v1 import provider_service_pb2 as pb

# The router waits out the retry-after on each of its two retries: short, so the tests do not idle.
FAULTS = """
[providers.mock.models.down]
fault = "error_before_first_token"
fault_status = "UNAVAILABLE"
fault_message = "upstream is down for maintenance"
embeddings = true

[providers.mock.models.flaky]
fault = "error_after_tokens"
fault_after_tokens = 3
fault_status = "INTERNAL"
fault_message = "connection reset mid-answer"

[providers.mock.models.short_flaky]
tokens = 2
fault = "error_after_tokens"
fault_after_tokens = 5

[providers.mock.models.stuck]
fault = "hang"
embeddings = true

[providers.mock.models.limited]
fault = "rate_limit"
retry_after_ms = 250
embeddings = true

[providers.mock.models.held]
fault = "rate_limit"
retry_after_ms = 30000

[providers.mock.models.dribble]
tokens = 200
token_delay_ms = 100
"""


@pytest.fixture
async def faulty(gateway_factory):
    async with gateway_factory(FAULTS) as gw:
        yield gw


async def test_error_before_first_token_is_the_configured_status_and_message(faulty) -> None:
    events, error = await collect_until_error(faulty.stub.ChatStream(chat("mock/down")))
    assert events == []
    assert error is not None
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert error.details() == "mock: upstream is down for maintenance"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await faulty.stub.Chat(chat("mock/down"))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_error_after_n_tokens_delivers_n_text_events_then_the_error(faulty) -> None:
    events, error = await collect_until_error(faulty.stub.ChatStream(chat("mock/flaky")))
    # The first three tokens (perhaps in one message), no usage, no finish: it did not end cleanly.
    assert runs(kinds(events)) == ["text_delta"]
    assert "".join(e.text_delta.text for e in events) == "Mock answer: Hi"
    assert error is not None
    assert error.code() == grpc.StatusCode.INTERNAL
    assert "connection reset mid-answer" in error.details()
    # The unary call does not hand back a partial answer.
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await faulty.stub.Complete(pb.CompleteRequest(model="mock/flaky", prompt="x"))
    assert info.value.code() == grpc.StatusCode.INTERNAL


async def test_error_after_more_tokens_than_the_answer_has_still_fails(faulty) -> None:
    events, error = await collect_until_error(faulty.stub.ChatStream(chat("mock/short_flaky")))
    assert runs(kinds(events)) == ["text_delta"]
    assert "".join(e.text_delta.text for e in events) == "Mock answer:"
    assert error is not None
    assert error.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("method", ["ChatStream", "Chat"])
async def test_hang_until_the_client_deadline_then_the_mock_sees_the_cancel(faulty, method) -> None:
    mock = faulty.provider("mock")
    call = getattr(faulty.stub, method)(chat("mock/stuck"), timeout=HANG_DEADLINE_S)
    error = await rpc_error(call)
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await wait_for(mock.stats.cancelled_event)
    assert mock.stats.cancelled == 1
    assert mock.stats.completed == 0


async def test_rate_limit_is_resource_exhausted_with_retry_info(faulty) -> None:
    call = faulty.stub.ChatStream(chat("mock/limited"))
    events, error = await collect_until_error(call)
    assert events == []
    assert error is not None
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "retry after 250 ms" in error.details()
    status = await rpc_status.aio.from_call(call)
    assert status is not None
    retry_info = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(retry_info)
    assert retry_info.retry_delay.ToMilliseconds() == 250
    trailing = dict(await call.trailing_metadata())
    assert trailing["retry-after-ms"] == "250"


async def test_rate_limit_on_a_unary_call_carries_retry_info_too(faulty) -> None:
    call = faulty.stub.Chat(chat("mock/limited"))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    status = await rpc_status.aio.from_call(call)
    retry_info = error_details_pb2.RetryInfo()
    assert status is not None
    assert status.details[0].Unpack(retry_info)
    assert retry_info.retry_delay.ToMilliseconds() == 250


async def test_a_deployment_held_by_a_429_answers_resource_exhausted_not_unavailable(faulty) -> None:
    """After a 429 asking for 30 s, the next request finds nothing that can serve it: a wait, with
    RetryInfo, never UNAVAILABLE (which the bundled clients retry at once: a retry storm)."""
    first = await rpc_error(faulty.stub.Chat(chat("mock/held")))
    assert first.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    unary, stream = faulty.stub.Chat(chat("mock/held")), faulty.stub.ChatStream(chat("mock/held"))
    for call, held in [(unary, await rpc_error(unary)), (stream, (await collect_until_error(stream))[1])]:
        assert held is not None
        assert held.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, held.details()
        assert "rate limit" in held.details()
        status = await rpc_status.aio.from_call(call)
        assert status is not None
        retry_info = error_details_pb2.RetryInfo()
        assert status.details[0].Unpack(retry_info)
        assert 25_000 < retry_info.retry_delay.ToMilliseconds() <= 30_000
    assert faulty.provider("mock").stats.started == 1  # the held deployment was not asked again


async def test_errors_without_retry_after_carry_no_retry_metadata(faulty) -> None:
    call = faulty.stub.ChatStream(chat("mock/down"))
    await collect_until_error(call)
    assert "retry-after-ms" not in dict(await call.trailing_metadata())


@pytest.mark.parametrize("method", ["ChatStream", "CompleteStream"])
async def test_client_cancel_mid_stream_stops_the_provider(faulty, method) -> None:
    mock = faulty.provider("mock")
    if method == "ChatStream":
        call = faulty.stub.ChatStream(chat("mock/dribble"))
    else:
        call = faulty.stub.CompleteStream(pb.CompleteRequest(model="mock/dribble", prompt="x"))
    first = [await call.read(), await call.read()]
    assert kinds(first) == ["text_delta", "text_delta"]
    call.cancel()
    await wait_for(mock.stats.cancelled_event)
    assert mock.stats.cancelled == 1
    assert mock.stats.completed == 0


async def test_scripted_responses_are_served_in_order_then_behaviour_resumes(gateway) -> None:
    mock = gateway.provider("mock")
    mock.push(
        MockScript(
            events=[
                TextDelta("scripted"),
                TextDelta(" one"),
                ProviderFinish(FinishReason.STOP, model="script"),
            ]
        )
    )
    mock.push(
        MockScript(
            events=[
                TextDelta("two"),
                UsageEvent(Usage(input_tokens=7, output_tokens=1)),
                ProviderFinish(FinishReason.STOP),
            ],
        )
    )
    first = await gateway.stub.Chat(chat("mock/echo"))
    second = [e async for e in gateway.stub.ChatStream(chat("mock/echo"))]
    third = await gateway.stub.Chat(chat("mock/echo", "back to normal"))
    assert (first.text, first.finish.model) == ("scripted one", "script")
    assert kinds(second) == ["text_delta", "usage", "finish"]
    assert second[1].usage.input_tokens == 7
    assert third.text.startswith("Mock answer: back to normal")
    assert [r.model for r in mock.stats.requests] == ["echo", "echo", "echo"]


async def test_scripted_error_after_events(gateway) -> None:
    mock = gateway.provider("mock")
    error = GatewayError(ErrorKind.PERMISSION_DENIED, "key lacks access", provider="mock")
    mock.push(MockScript(events=[TextDelta("a"), TextDelta("b"), TextDelta("c")], error=error, error_after=2))
    mock.push(MockScript(events=[TextDelta("only")], error=error, error_after=5))
    events, failure = await collect_until_error(gateway.stub.ChatStream(chat("mock/echo")))
    assert "".join(e.text_delta.text for e in events) == "ab"
    assert failure is not None
    assert failure.code() == grpc.StatusCode.PERMISSION_DENIED
    assert failure.details() == "mock: key lacks access"
    events, failure = await collect_until_error(gateway.stub.ChatStream(chat("mock/echo")))
    assert [e.text_delta.text for e in events] == ["only"]
    assert failure is not None
    assert failure.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_unexpected_provider_errors_are_internal_without_details(gateway) -> None:
    mock = gateway.provider("mock")
    mock.push(MockScript(events=[], error=RuntimeError("secret internals")))  # type: ignore[arg-type]
    events, failure = await collect_until_error(gateway.stub.ChatStream(chat("mock/echo")))
    assert events == []
    assert failure is not None
    assert failure.code() == grpc.StatusCode.INTERNAL
    assert "secret internals" not in failure.details()
    assert "incident" in failure.details()


async def test_slow_model_delays_the_first_token(gateway) -> None:
    call = gateway.stub.ChatStream(chat("mock/slow"))
    loop = asyncio.get_running_loop()
    started = loop.time()
    first = await asyncio.wait_for(call.read(), WAIT_S)
    assert first.WhichOneof("event") == "text_delta"
    assert loop.time() - started >= 0.2  # a lower bound only: never flaky on a slow machine
    call.cancel()


async def test_embed_faults_strike_like_chat_faults(faulty) -> None:
    mock = faulty.provider("mock")
    down = await rpc_error(faulty.stub.Embed(pb.EmbedRequest(model="mock/down", inputs=["x"])))
    assert down.code() == grpc.StatusCode.UNAVAILABLE
    call = faulty.stub.Embed(pb.EmbedRequest(model="mock/limited", inputs=["x"]))
    limited = await rpc_error(call)
    assert limited.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert dict(await call.trailing_metadata())["retry-after-ms"] == "250"
    stuck = await rpc_error(
        faulty.stub.Embed(pb.EmbedRequest(model="mock/stuck", inputs=["x"]), timeout=HANG_DEADLINE_S)
    )
    assert stuck.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await wait_for(mock.stats.cancelled_event)
    assert mock.stats.started == 0  # embeddings are not chat streams
