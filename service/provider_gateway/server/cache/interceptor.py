"""The cache as a gRPC interceptor, between the edge (telemetry, drain, decode guard) and [auth].

Outside [auth] so that a hit is never metered: no rpm, tpm or budget charge, and GetSpend does not
count it. It is only ever served to the caller that stored it (identity.py), whose permissions are
the configuration's, fixed for the process's life, so the checks it passed then still hold. Each
method is wrapped once and kept, as the edge does, unless the handler below changes per call
([auth] rebuilds it for the caller's key).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import grpc
from google.protobuf.message import Message

from provider_gateway.config import GatewayConfig
from provider_gateway.observability.request import CURRENT
from provider_gateway.server.auth import AuthConfig
from provider_gateway.server.cache.control import HIT, MISS, directives
from provider_gateway.server.cache.identity import Identify, Metadata, anyone, by_key
from provider_gateway.server.cache.keys import HASHED_ON_THE_LOOP_BYTES, answer_bytes, answer_key
from provider_gateway.server.cache.lookups import Lookups, lookup_counter
from provider_gateway.server.cache.replay import keepable, served_again
from provider_gateway.server.cache.settings import CacheSettings
from provider_gateway.server.cache.store import AnswerStore, part_cost
from provider_gateway.server.event_batches import BATCH_BYTES, Batches
from provider_gateway.server.last_message import mark_last
from provider_gateway.server.split_deltas import delta_bytes
from provider_gateway.v1 import provider_service_pb2 as pb

if TYPE_CHECKING:
    from provider_gateway.observability.metrics import GatewayMetrics

SERVICE = "/provider_gateway.v1.ProviderService/"
# The cached methods, each with the message its answer is made of.
ANSWERS: dict[str, type[Message]] = {
    "Chat": pb.ChatResponse,
    "Complete": pb.CompleteResponse,
    "ChatStream": pb.StreamEvent,
    "CompleteStream": pb.StreamEvent,
}
type Handler = grpc.RpcMethodHandler[Any, Any]
type Context = grpc.aio.ServicerContext[Any, Any]
type Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]]


# How many calls may wait for one identical call's answer; past it, a call takes the usual path
# (its key's limits apply), so that one key cannot park calls without bound.
MAX_WAITING_CALLS = 256


class _UnderWay:
    """A unary miss being answered upstream: its answer to be (the serialized message, None when
    it failed or left), and how many identical calls wait for it."""

    __slots__ = ("answer", "waiting")

    def __init__(self, answer: asyncio.Future[bytes | None]) -> None:
        self.answer = answer
        self.waiting = 0


class _Plan(NamedTuple):
    key: bytes
    read: bool
    store: bool
    caller: str  # the key's name, for the access log of a hit ("" without [auth])


def _since_us(started_ns: int) -> int:
    return (time.perf_counter_ns() - started_ns) // 1000


class CacheInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self,
        settings: CacheSettings,
        identify: Identify = anyone,
        lookups: Lookups | None = None,
        clock: Callable[[], float] = time.monotonic,
        batch_bytes: int = BATCH_BYTES,
    ) -> None:
        """`batch_bytes`: the most a hit's batch holds, within the server's send limit as the
        servicer's batches are (server/split_deltas.py `delta_bytes`)."""
        self.store = AnswerStore(settings, clock)
        self.batch_bytes = batch_bytes  # Batches caps it at BATCH_BYTES
        self.identify = identify
        self.lookups = lookups
        # method -> (the handler from below, its wrapped form)
        self._composed: dict[str, tuple[Handler, Handler]] = {}
        # Unary misses under way, by key: identical calls that arrive meanwhile wait for their
        # answer instead of asking upstream again.
        self._answering: dict[bytes, _UnderWay] = {}

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        rpc = method.removeprefix(SERVICE)
        if handler is None or rpc not in ANSWERS or rpc == method:
            return handler
        kept = self._composed.get(method)
        if kept is not None and kept[0] is handler:
            return kept[1]
        kwargs = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_stream is not None:
            wrapped = grpc.unary_stream_rpc_method_handler(self._stream(rpc, handler.unary_stream), **kwargs)
        elif handler.unary_unary is not None:
            wrapped = grpc.unary_unary_rpc_method_handler(self._unary(rpc, handler.unary_unary), **kwargs)
        else:
            return handler
        self._composed[method] = (handler, wrapped)
        return wrapped

    async def _plan(self, rpc: str, request: Message, context: Context, streaming: bool) -> _Plan | None:
        """What this call may do with the cache; None when it has no identity (no valid key)."""
        metadata = cast(Metadata, context.invocation_metadata())  # (key, value) pairs
        caller = self.identify(metadata)
        if caller is None:
            return None
        said = directives(metadata)
        serialized = answer_bytes(request, streaming)
        if len(serialized) <= HASHED_ON_THE_LOOP_BYTES:
            key = answer_key(rpc, caller.digest, serialized)
        else:
            key = await asyncio.to_thread(answer_key, rpc, caller.digest, serialized)
        return _Plan(key, said.read, said.store, caller.name)

    def _looked_up(self, rpc: str, plan: _Plan, request: Any, hit: bool) -> None:
        if hit and (state := CURRENT.get()) is not None:
            # What the servicer tells the request's telemetry on a miss; a hit never reaches it.
            if plan.caller:
                state.key = plan.caller
            if request.metadata:  # part of the key: checked when the answer was stored
                state.tags = dict(request.metadata)
        if self.lookups is not None:
            self.lookups.add(1, rpc, "hit" if hit else "miss" if plan.read else "bypass")

    def _unary(self, rpc: str, behaviour: Any) -> Callable[[Any, Context], Awaitable[Any]]:
        store, answer, answering = self.store, ANSWERS[rpc], self._answering

        async def unary(request: Any, context: Context) -> Any:
            started = time.perf_counter_ns()
            plan = await self._plan(rpc, request, context, streaming=False)
            if plan is None:
                return await behaviour(request, context)
            kept = store.get(plan.key) if plan.read else None
            if kept is not None:
                return await self._hit(rpc, plan, request, context, answer.FromString(kept[0]), started)
            under_way = answering.get(plan.key)
            if plan.read and under_way is not None and under_way.waiting < MAX_WAITING_CALLS:
                # An identical call is being answered: its answer is this one's. One wait only:
                # if it fails or leaves, this call asks upstream at once, beside the others.
                under_way.waiting += 1
                waiting_since = time.perf_counter_ns()
                try:  # shielded: this caller leaving must not cancel the others' wait
                    shared = await asyncio.shield(under_way.answer)
                finally:
                    under_way.waiting -= 1
                if shared is not None:
                    waited_us = _since_us(waiting_since)  # the upstream's time, as this call saw it
                    response = answer.FromString(shared)
                    return await self._hit(rpc, plan, request, context, response, started, waited_us)
            if under_way is not None or not plan.store:
                return self._kept(plan, await self._miss(rpc, plan, request, context, behaviour))
            # Registered before the first await, so that every identical call from now on waits.
            answering[plan.key] = under_way = _UnderWay(asyncio.get_running_loop().create_future())
            shared = None
            try:
                response = await self._miss(rpc, plan, request, context, behaviour)
                if response.HasField("finish") and (under_way.waiting or keepable(response.finish)):
                    # Serialized now: the servicer may reuse its message objects.
                    shared = response.SerializeToString()
                    if keepable(response.finish):
                        store.put(plan.key, (shared,))
                return response
            finally:  # an error or a cancel too: the waiting calls then ask upstream themselves
                del answering[plan.key]
                under_way.answer.set_result(shared)

        return unary

    async def _hit(
        self,
        rpc: str,
        plan: _Plan,
        request: Any,
        context: Context,
        response: Any,
        started: int,
        waited_us: int = 0,
    ) -> Any:
        self._looked_up(rpc, plan, request, hit=True)
        await context.send_initial_metadata(HIT)
        served_again(response.finish, _since_us(started), upstream_us=waited_us)
        return response

    async def _miss(self, rpc: str, plan: _Plan, request: Any, context: Context, behaviour: Any) -> Any:
        self._looked_up(rpc, plan, request, hit=False)
        await context.send_initial_metadata(MISS)
        return await behaviour(request, context)

    def _kept(self, plan: _Plan, response: Any) -> Any:
        """A miss's answer, kept when it may be."""
        if plan.store and response.HasField("finish") and keepable(response.finish):
            self.store.put(plan.key, (response.SerializeToString(),))
        return response

    def _stream(self, rpc: str, behaviour: Any) -> Callable[[Any, Context], AsyncIterator[Any]]:
        store = self.store

        async def stream(request: Any, context: Context) -> AsyncGenerator[Any, None]:
            started = time.perf_counter_ns()
            plan = await self._plan(rpc, request, context, streaming=True)
            if plan is None:
                async with aclosing(behaviour(request, context)) as items:
                    async for item in items:
                        yield item
                return
            if plan.read and (parts := store.get(plan.key)) is not None:
                self._looked_up(rpc, plan, request, hit=True)
                await context.send_initial_metadata(HIT)
                first_us = _since_us(started)
                if request.stream_options.batch_events and len(parts) > 1:  # all in hand: batched
                    events = [pb.StreamEvent.FromString(part) for part in parts]
                    served_again(events[-1].finish, _since_us(started), first_us)
                    batches = Batches(self.batch_bytes)
                    for event in events:
                        batches.add(event)
                    sent = batches.done()
                    mark_last(sent[-1])  # all in hand: the last goes with the status
                    for message in sent:
                        yield message
                    return
                for part in parts[:-1]:
                    yield pb.StreamEvent.FromString(part)
                last = pb.StreamEvent.FromString(parts[-1])
                served_again(last.finish, _since_us(started), first_us)
                mark_last(last)
                yield last
                return
            self._looked_up(rpc, plan, request, hit=False)
            await context.send_initial_metadata(MISS)
            # Kept as sent, serialized at once (the servicer may reuse its message objects).
            # The parts recorded count against max_bytes until the answer is kept or given up
            # (store.reserve), so that concurrent misses cannot hold memory beyond it.
            kept: list[bytes] | None = [] if plan.store else None
            size, reserved = 0, 0
            try:
                async with aclosing(behaviour(request, context)) as events:
                    async for message in events:
                        # A batch (`batch_events`) is kept as its events, each replayed alone.
                        for event in message.batch.events if message.HasField("batch") else (message,):
                            if kept is None:
                                break
                            part = event.SerializeToString()
                            size += len(part)
                            cost = part_cost(part)
                            if store.fits(size) and store.reserve(cost):
                                reserved += cost
                                kept.append(part)
                            else:  # too large to keep, or too much being recorded: served, not kept
                                kept = None
                                store.release(reserved)
                                reserved = 0
                        yield message
            finally:  # (an error or a cancel too)
                store.release(reserved)
            # Only a stream that ended with its Finish: an error or a cancel never gets here.
            if (
                kept
                and (last := pb.StreamEvent.FromString(kept[-1])).HasField("finish")
                and keepable(last.finish)
            ):
                store.put(plan.key, tuple(kept))

        return stream


def from_config(
    config: GatewayConfig, auth: AuthConfig | None, metrics: GatewayMetrics | None
) -> CacheInterceptor | None:
    """The cache `[cache]` asks for, None when it is off (then nothing is added to the call path);
    entries are the caller's key's own when `auth` is configured."""
    settings = CacheSettings.from_section(config.section("cache"))
    if settings is None:
        return None
    return CacheInterceptor(
        settings,
        anyone if auth is None else by_key(auth),
        lookup_counter(metrics),
        batch_bytes=delta_bytes(config.server.max_message_bytes),
    )
