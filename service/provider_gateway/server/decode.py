"""Requests whose bytes do not decode get INVALID_ARGUMENT, like any other bad request.

grpc.aio calls each method's `request_deserializer` itself; when it raises (bad UTF-8 in a string,
a corrupt or truncated message, nesting past protobuf's 100 levels), grpc logs a traceback and the
client gets UNKNOWN "Unexpected <class 'DecodeError'>". Every method's deserializer is guarded so
that a failure becomes an `Undecodable` request, which is answered with INVALID_ARGUMENT before any
other work: the access log writes its one line, nothing else does. The server's edge (server/edge.py)
refuses it in its own frame on ProviderService calls, and through `DecodeGuard` on the others.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc

type Handler = grpc.RpcMethodHandler[Any, Any]
Behaviour = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class Undecodable:
    """A request that did not decode, and the decoder's reason (protobuf's own words)."""

    reason: str


def guarded(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:  # untrusted bytes: any failure to decode them is the client's
            return Undecodable(str(exc) or type(exc).__name__)

    return deserialize


# Protobuf's words for nesting past its 100 levels (upb: "Exceeded upb_DecodeOptions_MaxDepth";
# the pure-Python decoder: "too many levels of nesting") name neither the field nor the limit.
TOO_DEEP = re.compile(r"depth|nesting", re.IGNORECASE)
TOO_DEEP_HINT = (
    "; a Struct field (provider_options, a tool's parameters, response_format.json_schema) nests "
    "too deeply: protobuf decodes at most 33 nested JSON objects (or 48 nested lists), so flatten it"
)


def message(request: Undecodable) -> str:
    hint = TOO_DEEP_HINT if TOO_DEEP.search(request.reason) else ""
    return f"the request does not decode as its message type: {request.reason}{hint}"


async def refuse(context: grpc.aio.ServicerContext[Any, Any], request: Undecodable) -> NoReturn:
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, message(request))


def _unary_request(behaviour: Behaviour) -> Behaviour:
    """Keep the behaviour's kind (coroutine or async generator): grpc.aio decides by it."""
    if inspect.isasyncgenfunction(behaviour):

        async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
            if isinstance(request, Undecodable):
                await refuse(context, request)
            async for item in behaviour(request, context):
                yield item

        return stream

    async def unary(request: Any, context: Any) -> Any:
        if isinstance(request, Undecodable):
            await refuse(context, request)
        return await behaviour(request, context)

    return unary


def _stream_request(behaviour: Behaviour) -> Behaviour:
    """Streamed requests: the first undecodable message ends the call."""

    async def checked(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        async for request in requests:
            if isinstance(request, Undecodable):
                await refuse(context, request)
            yield request

    if inspect.isasyncgenfunction(behaviour):

        async def stream(requests: Any, context: Any) -> AsyncIterator[Any]:
            async for item in behaviour(checked(requests, context), context):
                yield item

        return stream

    async def unary(requests: Any, context: Any) -> Any:
        return await behaviour(checked(requests, context), context)

    return unary


class DecodeGuard:
    """A handler wrapper (server/edge.py composes it once per method, on the methods it does not run
    in its own frame)."""

    def wrap(self, method: str, handler: Handler) -> Handler:
        if handler.request_deserializer is None:
            return handler
        kwargs: dict[str, Any] = {
            "request_deserializer": guarded(handler.request_deserializer),
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(_unary_request(handler.unary_unary), **kwargs)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(_unary_request(handler.unary_stream), **kwargs)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(_stream_request(handler.stream_unary), **kwargs)
        assert handler.stream_stream is not None
        return grpc.stream_stream_rpc_method_handler(_stream_request(handler.stream_stream), **kwargs)
