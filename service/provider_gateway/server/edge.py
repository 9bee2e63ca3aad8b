"""The server's own per-call work as one grpc.aio interceptor, each method's composition built once
and kept.

A ProviderService call crosses one frame of ours, not one per concern: the edge's own coroutine runs,
in this order, the call hooks' `begin` (telemetry: the span, the request state, the metrics), the
decode guard (an undecodable request is refused INVALID_ARGUMENT before any other work), the method
inside the shutdown cut's bookkeeping (a stream's messages written by the edge itself), and the
hooks' `end`, innermost first, with what the call raised. A wrapper per concern re-yielded every
message of a stream once more each, about 105k instructions of a 20-token stream (issue 15).
A unary answer is measured against the server's send limit before it is returned (answer_size.py).
A stream is served as a unary response whose frame writes each message itself and returns the last
(its finish), which gRPC sends with the status in one batch (last_message.py).
The other services' methods (health, reflection) get the decode guard and the drain as handler
wrappers: they are not on any request's path.

grpc.aio awaits every interceptor on every call, and a wrapper that rebuilds its method handler per
call pays for new closures and a new `RpcMethodHandler` each time. None of this work depends on the
call (what it needs of it, metadata included, it reads from the call's context), so the interceptor
composes each method once and hands the kept handler back for as long as the handler below it is the
same object: always, unless an interceptor below rebuilds it per call (`[auth]` does, for the
caller's key), in which case the frame is rebuilt for that call (the hooks are kept per method).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Any, Protocol, cast

import grpc

from provider_gateway.server.answer_size import too_large, too_large_message
from provider_gateway.server.decode import DecodeGuard, Undecodable, guarded, refuse
from provider_gateway.server.last_message import forget_mark, is_last
from provider_gateway.server.shutdown_cut import Call, ShutdownCut

log = logging.getLogger("provider_gateway.rpc")
PROVIDER_SERVICE = "/provider_gateway.v1.ProviderService/"
# A stream that ended well without its finish: the router never lets one through (a cut stream is
# an error), so this is a bug of the gateway's, and the client must not take it as a whole answer.
UNFINISHED = "the stream ended without its finish, a bug of the gateway's: the answer may be incomplete"
type Handler = grpc.RpcMethodHandler[Any, Any]
type Context = grpc.aio.ServicerContext[Any, Any]


class CallHook(Protocol):
    """One method's work at the beginning and the end of each of its calls, run in the edge's frame."""

    def begin(self, request: Any, context: Context) -> Any:
        """Before any other work (an undecodable request too); what it returns is `end`'s `begun`."""
        ...

    def end(self, begun: Any, error: BaseException | None, last: Any) -> None:
        """After the call, whatever its ending: `error` is what it raised (None when it ended OK),
        `last` the last message a stream sent or the response of a unary call (None if none)."""
        ...


class CallHooks(Protocol):
    def hook(self, method: str, streaming: bool) -> CallHook | None:
        """This method's hook (made once per method), or None when there is nothing to do for it."""
        ...


class HandlerWrapper(Protocol):
    def wrap(self, method: str, handler: Handler) -> Handler:
        """`handler` with this wrapper's work around it (or `handler` itself where it has none)."""
        ...


class _Nested:
    """Two hooks as one: `outer` begins first and ends last, as two wrappers did."""

    def __init__(self, outer: CallHook, inner: CallHook) -> None:
        self.outer, self.inner = outer, inner

    def begin(self, request: Any, context: Context) -> Any:
        first = self.outer.begin(request, context)
        try:
            return first, self.inner.begin(request, context)
        except BaseException as exc:
            self.outer.end(first, exc, None)
            raise

    def end(self, begun: Any, error: BaseException | None, last: Any) -> None:
        try:
            self.inner.end(begun[1], error, last)
        finally:
            self.outer.end(begun[0], error, last)


def _stream(
    behaviour: Callable[[Any, Context], AsyncGenerator[Any, None]],
    hook: CallHook | None,
    cut: ShutdownCut,
    serialize: Callable[[Any], bytes],
    method: str,
    send_limit: int,
) -> Callable[[Any, Context], Awaitable[Any]]:
    # A coroutine writing each message itself (grpc.aio's reader/writer form), not a generator that
    # gRPC iterates: one generator fewer per message, and a cancel that lands while gRPC writes
    # lands here, in the call's task, so the handler is closed at once and the call counted as
    # cancelled (a generator gRPC drops is closed later by the event loop, in another context).
    # It is served as a unary-response handler: the message the handler below marks as the last
    # (the one with the finish) is held until the handler ends, then returned, and gRPC sends it
    # with the status in one batch (server/last_message.py).
    rpc = method.rsplit("/", 1)[-1]
    limit = send_limit or sys.maxsize

    async def stream(request: Any, context: Context) -> Any:
        begun = None if hook is None else hook.begin(request, context)
        last = error = held = None
        try:
            if isinstance(request, Undecodable):
                await refuse(context, request)
            call = cut.enter()
            try:
                messages = behaviour(request, context)
                try:
                    async for last in messages:
                        if held is not None:  # one marked last was not: it goes first, in order
                            await _written(context, call, cut, held)
                            held = None
                        final = is_last(last)
                        data = serialize(last)  # now: the handler may reuse the object
                        if len(data) > limit:  # refused by us, not after the frame (answer_size.py)
                            await context.abort(
                                grpc.StatusCode.RESOURCE_EXHAUSTED, too_large_message(rpc, len(data), limit)
                            )
                        if final:
                            held = data
                        else:
                            await _written(context, call, cut, data)
                finally:
                    forget_mark()  # a call ended early: nothing closing behind it keeps the message
                    await messages.aclose()  # a cancelled call stops the work behind it now
            except asyncio.CancelledError:
                await cut.ended_by_cancel(call, context)
            finally:
                cut.leave(call)
            if (code := context.code()) is not None and code != grpc.StatusCode.OK:
                # A code set without abort: it ends the call, after the finish if there is one
                # (grpc.aio would send an empty message in place of a returned one).
                if held is not None:
                    await _written(context, call, cut, held)
                await context.abort(code)
            if held is None:  # grpc.aio cannot end a call OK without a message from here
                log.error("%s ended without its finish (a bug): refused INTERNAL", rpc)
                await context.abort(grpc.StatusCode.INTERNAL, UNFINISHED)
        except BaseException as exc:
            error = exc
            raise
        finally:
            if hook is not None:
                hook.end(begun, error, last)
        return held

    return stream


async def _written(context: Context, call: Call, cut: ShutdownCut, message: bytes) -> None:
    """`message` written; a stream the cut came for while gRPC wrote it ends then."""
    call.writing = True
    try:
        await context.write(message)
    finally:  # a write that failed is over too: the cut may take the call
        call.writing = False
    if cut.cutting:
        await cut.end(context)


def _unary(
    behaviour: Callable[[Any, Context], Awaitable[Any]],
    hook: CallHook | None,
    cut: ShutdownCut,
    method: str,
    send_limit: int,
) -> Callable[[Any, Context], Awaitable[Any]]:
    rpc = method.rsplit("/", 1)[-1]

    async def unary(request: Any, context: Context) -> Any:
        begun = None if hook is None else hook.begin(request, context)
        response = error = None
        try:
            if isinstance(request, Undecodable):
                await refuse(context, request)
            call = cut.enter()
            try:
                response = await behaviour(request, context)
            except asyncio.CancelledError:
                await cut.ended_by_cancel(call, context)
            finally:
                cut.leave(call)
            # gRPC would fail to send it after we return, with our hooks none the wiser (answer_size.py).
            if send_limit and response is not None and (size := response.ByteSize()) > send_limit:
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, too_large(rpc, size, send_limit))
            return response
        except BaseException as exc:
            error = exc
            raise
        finally:
            if hook is not None:
                hook.end(begun, error, response)

    return unary


class EdgeInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self,
        hooks: Sequence[CallHooks],
        cut: ShutdownCut,
        wrappers: Sequence[HandlerWrapper] = (),
        send_limit: int = 0,
    ) -> None:
        """`hooks` outermost first (telemetry), for ProviderService calls; `cut` ends them at
        shutdown; `wrappers` (outermost first) wrap the other services' methods, inside the decode
        guard; `send_limit` is the server's largest message ([server] max_message_bytes; 0: none),
        which a unary answer is measured against before it is returned."""
        self._hooks = tuple(hooks)
        self._cut = cut
        self._send_limit = send_limit
        self._inside_out = tuple(reversed((DecodeGuard(), *wrappers)))
        # method -> (the handler from below, its composition); one entry per method the server has.
        self._composed: dict[str, tuple[Handler, Handler]] = {}
        self._method_hooks: dict[str, CallHook | None] = {}

    def _hook(self, method: str, streaming: bool) -> CallHook | None:
        if method not in self._method_hooks:
            found = [h for h in (hooks.hook(method, streaming) for hooks in self._hooks) if h is not None]
            self._method_hooks[method] = functools.reduce(_Nested, found) if found else None
        return self._method_hooks[method]

    def compose(self, method: str, handler: Handler) -> Handler:
        kept = self._composed.get(method)
        if kept is not None and kept[0] is handler:
            return kept[1]
        wrapped = self._own_frame(method, handler)
        if wrapped is None:
            wrapped = handler
            for wrapper in self._inside_out:
                wrapped = wrapper.wrap(method, wrapped)
        self._composed[method] = (handler, wrapped)
        return wrapped

    def _own_frame(self, method: str, handler: Handler) -> Handler | None:
        """A ProviderService method in the edge's one frame (None for every other method)."""
        if not method.startswith(PROVIDER_SERVICE):
            return None
        decode = handler.request_deserializer
        kwargs: dict[str, Any] = {
            "request_deserializer": None if decode is None else guarded(decode),
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_stream is not None:
            # Every ProviderService stream is an async generator (grpc's stubs type it as sync).
            streamed = cast("Callable[[Any, Context], AsyncGenerator[Any, None]]", handler.unary_stream)
            serialize = kwargs.pop("response_serializer")  # the frame sends bytes
            hook = self._hook(method, True)
            stream = _stream(streamed, hook, self._cut, serialize, method, self._send_limit)
            # Served as a unary response: the last message and the status in one batch.
            return grpc.unary_unary_rpc_method_handler(stream, **kwargs)
        if handler.unary_unary is not None:
            answered = cast("Callable[[Any, Context], Awaitable[Any]]", handler.unary_unary)
            unary = _unary(answered, self._hook(method, False), self._cut, method, self._send_limit)
            return grpc.unary_unary_rpc_method_handler(unary, **kwargs)
        return None  # streamed requests (none today): the decode guard alone, as on other services

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:  # no such method: gRPC answers UNIMPLEMENTED
            return None
        return self.compose(handler_call_details.method, handler)
