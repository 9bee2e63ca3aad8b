"""A provider stream that ends without a finish is an error, never a clean STOP.

Each adapter checks its own vendor's end marker; the router checks that some finish came at all,
so a provider (or an adapter bug) that just stops is told to the client as UNAVAILABLE: retried
while nothing was relayed, reported after output, on Chat, ChatStream, Complete and CompleteStream.
The mock's scripted answers stand in for such a provider.
"""

from __future__ import annotations

import grpc
from rpc_util import chat, collect_until_error, rpc_error

from provider_gateway.domain import TextDelta, Usage, UsageEvent
from provider_gateway.providers.mock import MockScript
from provider_gateway.v1 import provider_service_pb2 as pb

NO_FINISH = "upstream stream ended without a finish"


def unfinished() -> MockScript:
    return MockScript(events=[TextDelta("half an ans"), UsageEvent(Usage(input_tokens=3, output_tokens=2))])


async def test_a_chat_stream_cut_after_output_ends_unavailable(gateway) -> None:
    gateway.provider("mock").push(unfinished())
    events, failure = await collect_until_error(gateway.stub.ChatStream(chat("mock/echo")))
    assert "".join(e.text_delta.text for e in events) == "half an ans"
    assert all(e.WhichOneof("event") != "finish" for e in events)
    assert failure is not None
    assert failure.code() == grpc.StatusCode.UNAVAILABLE
    assert NO_FINISH in failure.details()
    assert gateway.provider("mock").stats.started == 1  # output was relayed: never retried


async def test_a_complete_stream_cut_after_output_ends_unavailable(gateway) -> None:
    gateway.provider("mock").push(unfinished())
    call = gateway.stub.CompleteStream(pb.CompleteRequest(model="mock/echo", prompt="x"))
    events, failure = await collect_until_error(call)
    assert "".join(e.text_delta.text for e in events) == "half an ans"
    assert failure is not None
    assert failure.code() == grpc.StatusCode.UNAVAILABLE
    assert NO_FINISH in failure.details()


async def test_a_stream_without_finish_or_output_is_retried(gateway) -> None:
    gateway.provider("mock").push(MockScript(events=[UsageEvent(Usage(input_tokens=3))]))
    events = [e async for e in gateway.stub.ChatStream(chat("mock/echo"))]
    finish = events[-1].finish
    assert "".join(e.text_delta.text for e in events).startswith("Mock answer: Hi")
    assert finish.reason == pb.FINISH_REASON_STOP
    assert [a.outcome for a in finish.attempts] == ["UNAVAILABLE", "ok"]
    assert NO_FINISH in finish.attempts[0].error


async def test_unary_chat_refuses_an_answer_without_finish(gateway) -> None:
    mock = gateway.provider("mock")
    for _ in range(3):  # every attempt (one and two retries) ends without a finish
        mock.push(unfinished())
    failure = await rpc_error(gateway.stub.Chat(chat("mock/echo")))
    assert failure.code() == grpc.StatusCode.UNAVAILABLE
    assert NO_FINISH in failure.details()
    assert mock.stats.started == 3


async def test_unary_complete_refuses_an_answer_without_finish(gateway) -> None:
    mock = gateway.provider("mock")
    for _ in range(3):
        mock.push(unfinished())
    failure = await rpc_error(gateway.stub.Complete(pb.CompleteRequest(model="mock/echo", prompt="x")))
    assert failure.code() == grpc.StatusCode.UNAVAILABLE
    assert NO_FINISH in failure.details()
    assert mock.stats.started == 3


async def test_unary_chat_retries_an_answer_without_finish(gateway) -> None:
    gateway.provider("mock").push(unfinished())
    response = await gateway.stub.Chat(chat("mock/echo"))
    assert response.text.startswith("Mock answer: Hi")
    assert [a.outcome for a in response.finish.attempts] == ["UNAVAILABLE", "ok"]
