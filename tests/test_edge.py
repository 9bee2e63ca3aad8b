"""The server edge's one frame per ProviderService call (server/edge.py): telemetry, the decode guard
and the shutdown cut, each ending a call as its own wrapper did.

Through a real server where a client can see it; the frame itself, with recording hooks and a
stand-in context, where only the order of events shows it (a cut that lands while gRPC writes).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from test_metrics_prometheus import points
from test_observability import Observed, next_span, observed_gateway, user

from provider_gateway.server.edge import UNFINISHED, EdgeInterceptor
from provider_gateway.server.last_message import is_last, mark_last
from provider_gateway.server.shutdown_cut import SHUTDOWN_MESSAGE, ShutdownCut
from provider_gateway.v1 import provider_service_pb2 as pb

ENDLESS = """
[providers.mock]
kind = "mock"
[providers.mock.models.endless]
tokens = 100000
token_delay_ms = 10
"""
SERVICE = "/provider_gateway.v1.ProviderService/"


async def rest_of(stream: Any) -> None:
    while await stream.read() is not grpc.aio.EOF:
        pass


def open_streams(gw: Observed) -> int:
    data = gw.reader.get_metrics_data()
    return sum(p.value for p in points(data, "provider_gateway.streams.active"))  # type: ignore[attr-defined]


async def server_status(gw: Observed, rpc: str) -> int:
    span = await next_span(gw, lambda s: s.name == f"provider_gateway.v1.ProviderService/{rpc}")
    return int(span.attributes["rpc.grpc.status_code"])  # type: ignore[index, arg-type]


async def test_calls_cut_at_shutdown_end_unavailable_and_are_counted_so() -> None:
    """The cut the server makes when its drain grace ends (tests/test_shutdown.py runs that whole
    drain), made here directly, so that the telemetry is still running when the calls end."""
    async with observed_gateway(ENDLESS) as gw:
        request = pb.ChatRequest(model="mock/endless", messages=[user("hi")])
        stream = gw.running.stub.ChatStream(request, timeout=30)
        assert (await stream.read()).WhichOneof("event") == "text_delta"
        unary = asyncio.ensure_future(gw.running.stub.Chat(request, timeout=30))
        await asyncio.sleep(0.05)  # the unary call is in flight
        assert open_streams(gw) == 1
        assert gw.running.server.shutdown_cut.cut() == 2
        for call in (unary, rest_of(stream)):
            with pytest.raises(grpc.aio.AioRpcError) as cut:
                await call
            assert (cut.value.code(), cut.value.details()) == (grpc.StatusCode.UNAVAILABLE, SHUTDOWN_MESSAGE)
        unavailable = grpc.StatusCode.UNAVAILABLE.value[0]
        assert await server_status(gw, "ChatStream") == await server_status(gw, "Chat") == unavailable
        assert open_streams(gw) == 0
        assert gw.running.provider("mock").stats.cancelled == 2  # the work behind both was stopped


async def test_a_client_cancel_stays_a_cancel_and_closes_the_stream() -> None:
    async with observed_gateway(ENDLESS) as gw:
        mock = gw.running.provider("mock")
        stream = gw.running.stub.ChatStream(pb.ChatRequest(model="mock/endless", messages=[user("hi")]))
        await stream.read()
        stream.cancel()
        await asyncio.wait_for(mock.stats.cancelled_event.wait(), timeout=10)
        assert await server_status(gw, "ChatStream") == grpc.StatusCode.CANCELLED.value[0]
        assert open_streams(gw) == 0


async def test_an_undecodable_stream_is_counted_and_refused_before_any_work() -> None:
    async with observed_gateway(ENDLESS) as gw:
        call = gw.running.channel.unary_stream(SERVICE + "ChatStream")(b"\x0a\x05ab", timeout=10)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call.read()
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert await server_status(gw, "ChatStream") == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert open_streams(gw) == 0
        assert gw.running.provider("mock").stats.started == 0


# The frame itself: recording hooks, a stand-in for grpc.aio's context.


class Recorder:
    """Hooks that note what the edge tells them, under a name."""

    def __init__(self, name: str, events: list[Any]) -> None:
        self.name, self.events = name, events

    def hook(self, method: str, streaming: bool) -> Recorder:
        return self

    def begin(self, request: Any, context: Any) -> str:
        self.events.append(("begin", self.name))
        return self.name

    def end(self, begun: Any, error: BaseException | None, last: Any) -> None:
        self.events.append(("end", begun, type(error).__name__ if error else None, last))


class Context:
    """grpc.aio's context as the edge uses it: `write` sends a message (held while `writable` is
    clear, as gRPC holds a write until the transport takes it), `abort` ends the call."""

    def __init__(self) -> None:
        self.written: list[Any] = []
        self.writable = asyncio.Event()
        self.writable.set()
        self.aborted: tuple[grpc.StatusCode, str] | None = None

    async def write(self, message: Any) -> None:
        await self.writable.wait()
        self.written.append(message)

    status: grpc.StatusCode | None = None  # what `set_code` would have set

    def code(self) -> grpc.StatusCode | None:
        return self.status

    async def abort(self, code: grpc.StatusCode, details: str = "") -> None:
        self.aborted = (code, details)
        raise grpc.aio.AbortError(details)


def edge(events: list[Any], cut: ShutdownCut, behaviour: Any) -> Any:
    """`behaviour` as ChatStream behind an edge with two recording hooks; returns the edge's frame,
    which grpc.aio serves as a unary response (the stream's last message, sent with the status)."""
    interceptor = EdgeInterceptor([Recorder("outer", events), Recorder("inner", events)], cut)
    below = grpc.unary_stream_rpc_method_handler(
        behaviour, request_deserializer=pb.ChatRequest.FromString, response_serializer=lambda m: m
    )  # messages written as they are, for the stand-in context to record
    handler = interceptor.compose(SERVICE + "ChatStream", below)
    assert handler.unary_stream is None
    assert not handler.response_streaming
    return handler.unary_unary


def a_and_b(closed: asyncio.Event) -> Any:
    """A handler streaming "a" then "b", setting `closed` when it is closed (or ends)."""

    async def stream(request: Any, context: Any) -> AsyncIterator[str]:
        try:
            yield "a"
            yield "b"
        finally:
            closed.set()

    return stream


def a_and_b_marking(last: str, closed: asyncio.Event) -> Any:
    """A handler streaming "a" then "b" that marks `last` as the stream's last message (as the
    servicer marks its finish), setting `closed` when it ends."""

    async def stream(request: Any, context: Any) -> AsyncIterator[str]:
        try:
            for message in ("a", "b"):
                if message == last:
                    mark_last(message)
                yield message
        finally:
            closed.set()

    return stream


async def test_hooks_begin_outermost_first_and_end_innermost_first_with_the_last_message() -> None:
    """The message marked last (the finish) is held until the handler ends, then returned: gRPC
    sends it with the status."""
    events: list[Any] = []
    closed = asyncio.Event()
    context = Context()
    frame = edge(events, ShutdownCut(), a_and_b_marking("b", closed))
    assert await asyncio.ensure_future(frame(pb.ChatRequest(), context)) == "b"
    assert (context.written, context.aborted) == (["a"], None)
    assert closed.is_set()
    assert events == [
        ("begin", "outer"),
        ("begin", "inner"),
        ("end", "inner", None, "b"),
        ("end", "outer", None, "b"),
    ]


async def test_a_stream_that_ends_well_without_its_finish_is_an_error_not_a_whole_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events: list[Any] = []
    context = Context()
    with pytest.raises(grpc.aio.AbortError):
        await asyncio.ensure_future(
            edge(events, ShutdownCut(), a_and_b(asyncio.Event()))(pb.ChatRequest(), context)
        )
    assert context.written == ["a", "b"]
    assert context.aborted == (grpc.StatusCode.INTERNAL, UNFINISHED)
    assert events[-1] == ("end", "outer", "AbortError", "b")
    assert "ChatStream ended without its finish" in caplog.text  # for the operator, with the method


async def test_a_message_after_the_one_marked_last_still_goes_in_order() -> None:
    context = Context()
    frame = edge([], ShutdownCut(), a_and_b_marking("a", asyncio.Event()))
    with pytest.raises(grpc.aio.AbortError):
        await asyncio.ensure_future(frame(pb.ChatRequest(), context))
    assert context.written == ["a", "b"]


async def test_the_marked_message_waits_for_the_handler_to_end_and_an_error_then_wins() -> None:
    """The finish goes with the status, so it is held while the handler finishes its work (the
    router's and the relay's bookkeeping); an error in that work ends the call with the error."""
    events: list[Any] = []
    go_on = asyncio.Event()

    async def finish_then_fail(request: Any, context: Any) -> AsyncIterator[str]:
        yield "a"
        mark_last("finish")
        yield "finish"
        await go_on.wait()
        await context.abort(grpc.StatusCode.UNAVAILABLE, "upstream failed after its end")

    context = Context()
    call = asyncio.ensure_future(edge(events, ShutdownCut(), finish_then_fail)(pb.ChatRequest(), context))
    await asyncio.sleep(0.01)
    assert not call.done()  # held: the handler has not ended
    assert context.written == ["a"]
    go_on.set()
    with pytest.raises(grpc.aio.AbortError):
        await call
    assert context.written == ["a"]  # the finish never went: the call ended with the error
    assert context.aborted == (grpc.StatusCode.UNAVAILABLE, "upstream failed after its end")
    assert events[-1] == ("end", "outer", "AbortError", "finish")


async def test_a_mark_is_read_once_so_a_later_stream_of_the_task_cannot_end_on_it() -> None:
    finish = "finish"

    async def marks(request: Any, context: Any) -> AsyncIterator[str]:
        mark_last(finish)
        yield finish

    async def never_marks(request: Any, context: Any) -> AsyncIterator[str]:
        yield finish  # the same object, not marked this time

    async def both_in_one_task() -> None:
        assert await edge([], ShutdownCut(), marks)(pb.ChatRequest(), Context()) == finish
        context = Context()
        with pytest.raises(grpc.aio.AbortError):
            await edge([], ShutdownCut(), never_marks)(pb.ChatRequest(), context)
        assert context.aborted == (grpc.StatusCode.INTERNAL, UNFINISHED)

    await asyncio.ensure_future(both_in_one_task())


async def test_a_code_set_without_abort_ends_the_stream_after_its_finish() -> None:
    """grpc.aio would send an empty message in place of a unary-form handler's answer."""

    async def sets_a_code(request: Any, context: Any) -> AsyncIterator[str]:
        context.status = grpc.StatusCode.UNAVAILABLE
        mark_last("finish")
        yield "finish"

    context = Context()
    with pytest.raises(grpc.aio.AbortError):
        await asyncio.ensure_future(edge([], ShutdownCut(), sets_a_code)(pb.ChatRequest(), context))
    assert context.written == ["finish"]
    assert context.aborted == (grpc.StatusCode.UNAVAILABLE, "")


async def test_a_code_set_without_abort_and_no_finish_ends_the_stream_with_that_code() -> None:
    async def gives_up(request: Any, context: Any) -> AsyncIterator[str]:
        yield "a"
        context.status = grpc.StatusCode.RESOURCE_EXHAUSTED

    context = Context()
    with pytest.raises(grpc.aio.AbortError):
        await asyncio.ensure_future(edge([], ShutdownCut(), gives_up)(pb.ChatRequest(), context))
    assert context.written == ["a"]
    assert context.aborted == (grpc.StatusCode.RESOURCE_EXHAUSTED, "")  # not INTERNAL


async def test_a_call_cancelled_before_its_marked_message_leaves_no_mark_to_the_work_closing_behind() -> None:
    """The servicer marks a batch's last message before it yields the ones before it: a cancel in
    between must not leave the mark (and the message) to what the handlers start as they close,
    such as a budget's settlement task."""
    seen: list[bool] = []

    async def marks_then_yields(request: Any, context: Any) -> AsyncIterator[str]:
        try:
            mark_last("finish")
            yield "text"
            yield "finish"
        finally:
            seen.append(is_last("finish"))

    context = Context()
    context.writable.clear()
    call = asyncio.ensure_future(edge([], ShutdownCut(), marks_then_yields)(pb.ChatRequest(), context))
    await asyncio.sleep(0)  # the frame waits in gRPC's write of "text"
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert seen == [False]


async def test_a_cut_while_grpc_writes_waits_for_the_write_then_ends_the_stream() -> None:
    events: list[Any] = []
    cut = ShutdownCut()
    produced: list[int] = []

    async def endless(request: Any, context: Any) -> AsyncIterator[str]:
        while True:
            produced.append(len(produced) + 1)
            yield str(produced[-1])

    context = Context()
    context.writable.clear()
    call = asyncio.ensure_future(edge(events, cut, endless)(pb.ChatRequest(), context))
    await asyncio.sleep(0)  # the frame waits in gRPC's write of message 1
    assert cut.cut() == 1  # counted, but not cancelled inside gRPC's write
    context.writable.set()
    with pytest.raises(grpc.aio.AbortError):
        await call  # the write done, the stream ends: message 2 is never written
    assert (context.written, produced) == (["1"], [1])
    assert context.aborted == (grpc.StatusCode.UNAVAILABLE, SHUTDOWN_MESSAGE)
    assert events[-1] == ("end", "outer", "AbortError", "1")
    assert cut.cut() == 0  # the call has left


@pytest.mark.parametrize("cutting", [True, False])
async def test_a_cancel_while_the_handler_works_is_a_cut_only_when_the_server_cuts(cutting: bool) -> None:
    events: list[Any] = []
    cut = ShutdownCut()
    working, closed = asyncio.Event(), asyncio.Event()

    async def waits(request: Any, context: Any) -> AsyncIterator[str]:
        try:
            working.set()
            await asyncio.Event().wait()
            yield "never"
        finally:
            closed.set()

    context = Context()
    call = asyncio.ensure_future(edge(events, cut, waits)(pb.ChatRequest(), context))
    await working.wait()
    if cutting:
        assert cut.cut() == 1
    else:
        call.cancel()  # what grpc.aio does when the client cancels
    expected = grpc.aio.AbortError if cutting else asyncio.CancelledError
    with pytest.raises(expected):
        await call
    assert closed.is_set()
    assert context.aborted == ((grpc.StatusCode.UNAVAILABLE, SHUTDOWN_MESSAGE) if cutting else None)
    assert events[-1] == ("end", "outer", expected.__name__, None)


async def test_a_client_cancel_while_grpc_writes_closes_the_handler_at_once() -> None:
    events: list[Any] = []
    closed = asyncio.Event()
    context = Context()
    context.writable.clear()
    call = asyncio.ensure_future(edge(events, ShutdownCut(), a_and_b(closed))(pb.ChatRequest(), context))
    await asyncio.sleep(0)  # the frame waits in gRPC's write of "a"
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert closed.is_set()  # in the call's own task, not later by the event loop
    assert events[-1] == ("end", "outer", "CancelledError", "a")
