"""The router: picks a provider for each request, fails over before output, and times the work.

Streams fail over only before their first content event: once a client has seen output, a
failure ends the stream with an error status (an honest error beats a silently spliced answer).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from provider_gateway.domain import (
    CONTENT_EVENTS,
    Attempt,
    ChatRequest,
    ChatResponse,
    CompletionRequest,
    CompletionResponse,
    CountTokensRequest,
    EmbedRequest,
    EmbedResult,
    Finish,
    FinishReason,
    GatewayEvent,
    ModelInfo,
    ProviderFinish,
    Route,
    StreamEvent,
    Timing,
    TokenCount,
)
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.providers.base import Provider
from provider_gateway.providers.registry import ProviderRegistry
from provider_gateway.routing.resolve import RouteResolver

R = TypeVar("R")
Req = TypeVar("Req", ChatRequest, CompletionRequest)


def _us(ns: int) -> int:
    return ns // 1000


class RequestClock:
    """Timestamps of one request, from its arrival at the gateway (perf_counter_ns)."""

    __slots__ = ("first_token_ns", "received_ns", "upstream_ns")

    def __init__(self, received_ns: int | None = None) -> None:
        self.received_ns = received_ns if received_ns is not None else time.perf_counter_ns()
        self.upstream_ns = 0
        self.first_token_ns = 0

    def timing(self) -> Timing:
        total = time.perf_counter_ns() - self.received_ns
        ttft = self.first_token_ns - self.received_ns if self.first_token_ns else 0
        return Timing(
            gateway_overhead_us=_us(max(total - self.upstream_ns, 0)),
            time_to_first_token_us=_us(ttft),
            total_us=_us(total),
            upstream_us=_us(self.upstream_ns),
        )


class Router:
    def __init__(self, registry: ProviderRegistry, resolver: RouteResolver) -> None:
        self.registry = registry
        self.resolver = resolver

    def provider(self, route: Route) -> Provider:
        provider = self.registry.get(route.provider)
        if provider is None:  # the resolver checked; this guards a registry changed under us
            raise GatewayError(ErrorKind.NOT_FOUND, f"provider {route.provider!r} is not configured")
        return provider

    # --- streams -------------------------------------------------------------------------------

    def chat_stream(self, request: ChatRequest, clock: RequestClock) -> AsyncIterator[GatewayEvent]:
        routes = self.resolver.candidates(request.model, request.provider, request.fallbacks)
        return self._stream(routes, request, clock, lambda p, r: p.chat_stream(r))

    def complete_stream(self, request: CompletionRequest, clock: RequestClock) -> AsyncIterator[GatewayEvent]:
        routes = self.resolver.candidates(request.model, request.provider, request.fallbacks)
        return self._stream(routes, request, clock, lambda p, r: p.complete_stream(r))

    async def _stream(
        self,
        routes: list[Route],
        request: Req,
        clock: RequestClock,
        open_stream: Callable[[Provider, Req], AsyncIterator[StreamEvent]],
    ) -> AsyncIterator[GatewayEvent]:
        attempts: list[Attempt] = []
        for position, route in enumerate(routes):
            started = time.perf_counter_ns()
            stream: AsyncIterator[StreamEvent] | None = None
            sent_content = False
            finish: ProviderFinish | None = None
            try:
                stream = open_stream(self.provider(route), dataclasses.replace(request, model=route.model))
                while True:
                    before = time.perf_counter_ns()
                    try:
                        event = await anext(stream)
                    except StopAsyncIteration:
                        break
                    finally:
                        clock.upstream_ns += time.perf_counter_ns() - before
                    if isinstance(event, ProviderFinish):
                        finish = event
                        continue
                    if not sent_content and isinstance(event, CONTENT_EVENTS):
                        sent_content = True
                        clock.first_token_ns = time.perf_counter_ns()
                    yield event
            except GatewayError as exc:
                exc.provider = exc.provider or route.provider
                attempts.append(_failed(route, exc, started))
                if sent_content or not exc.retryable or position == len(routes) - 1:
                    raise
                continue
            finally:
                await _close(stream)
            attempts.append(
                Attempt(route.provider, route.model, "ok", "", _us(time.perf_counter_ns() - started))
            )
            yield _finish(route, finish, attempts, clock)
            return

    # --- unary ---------------------------------------------------------------------------------

    async def chat(self, request: ChatRequest, clock: RequestClock) -> tuple[ChatResponse, Finish]:
        routes = self.resolver.candidates(request.model, request.provider, request.fallbacks)
        return await self._unary(routes, request, clock, lambda p, r: p.chat(r))

    async def complete(
        self, request: CompletionRequest, clock: RequestClock
    ) -> tuple[CompletionResponse, Finish]:
        routes = self.resolver.candidates(request.model, request.provider, request.fallbacks)
        return await self._unary(routes, request, clock, lambda p, r: p.complete(r))

    async def _unary(
        self,
        routes: list[Route],
        request: Req,
        clock: RequestClock,
        call: Callable[[Provider, Req], Awaitable[R]],
    ) -> tuple[R, Finish]:
        attempts: list[Attempt] = []
        for position, route in enumerate(routes):
            started = time.perf_counter_ns()
            try:
                response = await call(self.provider(route), dataclasses.replace(request, model=route.model))
            except GatewayError as exc:
                exc.provider = exc.provider or route.provider
                attempts.append(_failed(route, exc, started))
                if not exc.retryable or position == len(routes) - 1:
                    raise
                continue
            finally:
                clock.upstream_ns += time.perf_counter_ns() - started
            attempts.append(
                Attempt(route.provider, route.model, "ok", "", _us(time.perf_counter_ns() - started))
            )
            provider_finish: ProviderFinish | None = getattr(response, "finish", None)
            return response, _finish(route, provider_finish, attempts, clock)
        raise AssertionError("unreachable: the last route either returns or raises")

    async def list_models(self, provider: str = "") -> list[tuple[str, ModelInfo]]:
        names = [self.resolver.check_provider(provider)] if provider else self.registry.names()
        models: list[tuple[str, ModelInfo]] = []
        for name in names:
            models.extend((name, m) for m in await self.provider(Route(name, "")).list_models())
        return models

    async def count_tokens(self, request: CountTokensRequest) -> tuple[Route, TokenCount]:
        route = self.resolver.resolve(request.model, request.provider)
        provider = self.provider(route)
        return route, await provider.count_tokens(dataclasses.replace(request, model=route.model))

    async def embed(self, request: EmbedRequest) -> tuple[Route, EmbedResult]:
        route = self.resolver.resolve(request.model, request.provider)
        provider = self.provider(route)
        return route, await provider.embed(dataclasses.replace(request, model=route.model))


async def _close(stream: AsyncIterator[StreamEvent] | None) -> None:
    """Close the provider's stream now, so a cancelled request stops its upstream call at once."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


def _failed(route: Route, exc: GatewayError, started: int) -> Attempt:
    return Attempt(
        route.provider, route.model, exc.kind.value, exc.message, _us(time.perf_counter_ns() - started)
    )


def _finish(
    route: Route, finish: ProviderFinish | None, attempts: list[Attempt], clock: RequestClock
) -> Finish:
    finish = finish or ProviderFinish(FinishReason.STOP)
    return Finish(
        reason=finish.reason,
        raw_reason=finish.raw_reason,
        provider=route.provider,
        model=finish.model or route.model,
        timing=clock.timing(),
        attempts=tuple(attempts),
        response_id=finish.response_id,
    )
