"""The server's own per-method wrappers (telemetry, decode guard, drain, shutdown cut) as one
grpc.aio interceptor, each method's composition built once and kept.

grpc.aio awaits every interceptor on every call, and a wrapper that rebuilds its method handler per
call pays for new closures and a new `RpcMethodHandler` each time. None of these wrappers depends on
the call (what they need of it, metadata included, they read from the call's context), so one
interceptor composes them once per method and hands the kept handler back for as long as the
handler below it is the same object: always, unless an interceptor below rebuilds it per call
(`[auth]` does, for the caller's key), in which case the composition is rebuilt for that call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import grpc

type Handler = grpc.RpcMethodHandler[Any, Any]


class HandlerWrapper(Protocol):
    def wrap(self, method: str, handler: Handler) -> Handler:
        """`handler` with this wrapper's work around it (or `handler` itself where it has none)."""
        ...


class EdgeInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, wrappers: Sequence[HandlerWrapper]) -> None:
        """`wrappers` outermost first, as grpc.aio orders interceptors."""
        self._inside_out = tuple(reversed(wrappers))
        # method -> (the handler from below, its composition); one entry per method the server has.
        self._composed: dict[str, tuple[Handler, Handler]] = {}

    def compose(self, method: str, handler: Handler) -> Handler:
        kept = self._composed.get(method)
        if kept is not None and kept[0] is handler:
            return kept[1]
        wrapped = handler
        for wrapper in self._inside_out:
            wrapped = wrapper.wrap(method, wrapped)
        self._composed[method] = (handler, wrapped)
        return wrapped

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:  # no such method: gRPC answers UNIMPLEMENTED
            return None
        return self.compose(handler_call_details.method, handler)
