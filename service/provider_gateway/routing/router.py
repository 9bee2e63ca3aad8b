"""The router: resolves a model to deployments, balances, retries, fails over, and times the work.

One retry loop for every call, owned here (adapters never retry). Each deployment has a per-request
"not before" time: a retryable failure sets it to now + max(backoff with full jitter, the delay the
provider asked for), and the loop takes the first deployment that is ready, so a long wait on one
deployment sends the request to the next instead of sleeping. It sleeps only when nothing is ready,
never past the request's deadline nor longer than `max_retry_wait_s` (beyond that it fails at once
with a retry delay for the client).

Streams fail over only before their first content event: once a client has seen output, a
failure ends the stream with an error status (an honest error beats a silently spliced answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine
from contextvars import Token
from typing import Any, TypeVar

from provider_gateway.config import ProviderConfig
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
from provider_gateway.providers.base import Provider, accumulate, replay
from provider_gateway.providers.context import ProviderContext
from provider_gateway.providers.registry import ProviderRegistry, build_provider
from provider_gateway.routing.attempt import CURRENT_ATTEMPT, AttemptInfo
from provider_gateway.routing.breaker import BreakerState
from provider_gateway.routing.deployments import Deployment, order
from provider_gateway.routing.limiter import RATE_LIMIT_SINK, RateLimitInfo
from provider_gateway.routing.resolve import RouteResolver
from provider_gateway.routing.settings import DeploymentSpec, RoutingConfig, RoutingSettings
from provider_gateway.routing.shared_state import MemoryCounterStore, SharedState

log = logging.getLogger("provider_gateway.router")
R = TypeVar("R")
Req = TypeVar("Req", ChatRequest, CompletionRequest)
OpenStream = Callable[[Provider, Req], AsyncIterator[StreamEvent]]
RPM_WINDOW_S = 60.0


def _us(ns: int) -> int:
    return ns // 1000


class RequestClock:
    """Timestamps of one request, from its arrival at the gateway (perf_counter_ns).

    `deadline` is the client's deadline on the time.monotonic() scale, or None.
    """

    __slots__ = ("deadline", "downstream_ns", "first_token_ns", "received_ns", "upstream_ns")

    def __init__(self, received_ns: int | None = None, deadline: float | None = None) -> None:
        self.received_ns = received_ns if received_ns is not None else time.perf_counter_ns()
        self.upstream_ns = 0
        # Time a stream spent handing events to the client (gRPC send, flow control): not ours either.
        self.downstream_ns = 0
        self.first_token_ns = 0
        self.deadline = deadline

    def timing(self) -> Timing:
        total = time.perf_counter_ns() - self.received_ns
        ttft = self.first_token_ns - self.received_ns if self.first_token_ns else 0
        return Timing(
            gateway_overhead_us=_us(max(total - self.upstream_ns - self.downstream_ns, 0)),
            time_to_first_token_us=_us(ttft),
            total_us=_us(total),
            upstream_us=_us(self.upstream_ns),
        )


# Plain-route deployments (breaker, limiter, latency estimate) kept per `provider/model` name.
MAX_ROUTE_DEPLOYMENTS = 1024


@dataclasses.dataclass(slots=True)
class Plan:
    """The deployments one request may use, best first, and the settings that govern it."""

    name: str
    deployments: list[Deployment]
    settings: RoutingSettings


class Router:
    def __init__(
        self,
        registry: ProviderRegistry,
        resolver: RouteResolver,
        routing: RoutingConfig | None = None,
        store: SharedState | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        build: Callable[[ProviderConfig], Provider] | None = None,
    ) -> None:
        self.registry = registry
        # Builds the adapter of a deployment with its own credentials (the server passes its shared
        # HTTP pool and instrumentation through this).
        self.build = build or (lambda config: build_provider(config, ProviderContext()))
        self.resolver = resolver
        self.routing = routing or RoutingConfig()
        self.store: SharedState = store or MemoryCounterStore(clock)
        self.clock = clock
        self.rng = rng or random.Random()
        self.sleep: Callable[[float], Awaitable[object]] = asyncio.sleep
        # Called with (provider, aggregated breaker state) whenever a breaker of that provider changes.
        self.on_breaker_change: Callable[[str, str], None] | None = None
        self._deployments: dict[str, Deployment] = {}
        self._groups: dict[str, list[Deployment]] = {}
        self._routes: dict[str, Deployment] = {}  # plain-route deployments, least recently used first
        self._waiters: dict[str, int] = {}
        self._capacity = asyncio.Condition()
        self._tasks: set[asyncio.Task[None]] = set()
        self._own_providers: list[Provider] = []
        for group in self.routing.groups.values():
            self._groups[group.name] = [
                self._deployment(d.key(group.name), d, group.settings) for d in group.deployments
            ]

    # --- deployments and plans -----------------------------------------------------------------

    def provider(self, route: Route) -> Provider:
        provider = self.registry.get(route.provider)
        if provider is None:  # the resolver checked; this guards a registry changed under us
            raise GatewayError(ErrorKind.NOT_FOUND, f"provider {route.provider!r} is not configured")
        return provider

    def _deployment(self, key: str, spec: DeploymentSpec, settings: RoutingSettings) -> Deployment:
        deployment = self._deployments.get(key)
        if deployment is None:
            provider = self.provider(Route(spec.provider, spec.model))
            if spec.provider_config is not None:  # its own credentials: its own adapter instance
                provider = self.build(spec.provider_config)
                self._own_providers.append(provider)
            deployment = Deployment(key, spec, provider, settings, self.clock, self._breaker_changed)
            self._deployments[key] = deployment
        return deployment

    def _route_deployment(self, key: str, spec: DeploymentSpec) -> Deployment:
        """A plain `provider/model` route's deployment. Clients choose these names, so the idle ones
        are forgotten beyond a bound (oldest first) rather than kept for every name ever asked."""
        deployment = self._routes.pop(key, None) or self._deployment(key, spec, self.routing.defaults)
        self._routes[key] = deployment  # most recently used last
        if len(self._routes) > MAX_ROUTE_DEPLOYMENTS:
            for old_key, old in list(self._routes.items()):
                if old.is_idle():
                    del self._routes[old_key], self._deployments[old_key]
                    break
        return deployment

    def plan(self, model: str, provider: str = "", fallbacks: list[str] | tuple[str, ...] = ()) -> Plan:
        """The primary's deployments (balanced), then each fallback's (a group or a model)."""
        settings = self.routing.defaults
        deployments: list[Deployment] = []
        pending = [(model, provider), *((f, "") for f in fallbacks)]
        seen: set[str] = set()
        first = True
        while pending:
            name, explicit = pending.pop(0)
            if f"{explicit}/{name}" in seen:
                continue
            seen.add(f"{explicit}/{name}")
            group = self.routing.groups.get(name) if not explicit else None
            if group is not None:
                found = order(self._groups[name], group.settings.strategy, self.rng)
                pending.extend((f, "") for f in group.fallbacks)
                settings = group.settings if first else settings
            else:
                route = self.resolver.resolve(name, explicit)
                spec = DeploymentSpec(route.provider, route.model)
                found = [self._route_deployment(f"{route.provider}/{route.model}", spec)]
            deployments.extend(d for d in found if d not in deployments)
            first = False
        return Plan(model, deployments, settings)

    def breaker_state(self, provider: str) -> str:
        """`open` while every deployment of the provider is open, `half_open` while some are, else closed."""
        states = [d.breaker.state for d in self._deployments.values() if d.spec.provider == provider]
        if states and all(s is BreakerState.OPEN for s in states):
            return BreakerState.OPEN.value
        if any(s is not BreakerState.CLOSED for s in states):
            return BreakerState.HALF_OPEN.value
        return BreakerState.CLOSED.value

    def limiter_capacity(self) -> list[tuple[dict[str, str], float]]:
        """Spare concurrency of the adaptive limiters (limit minus in flight), summed per provider:
        a label per deployment would let clients' model names multiply the series."""
        spare: dict[str, float] = {}
        for d in list(self._deployments.values()):
            free = max(d.limiter.limit - d.limiter.in_flight, 0.0)
            spare[d.spec.provider] = spare.get(d.spec.provider, 0.0) + free
        return [({"provider": p, "limit": "concurrency"}, value) for p, value in spare.items()]

    def _breaker_changed(self, deployment: Deployment, state: BreakerState) -> None:
        log.warning("breaker of %s is now %s", deployment.key, state.value)
        if state is BreakerState.OPEN:
            # Share the ejection with other replicas, and look again when the cool-down ends so
            # the health service sees the half-open state without waiting for a request.
            cooldown = deployment.settings.breaker.cooldown_s
            self._background(self.store.eject(deployment.key, cooldown))
            asyncio.get_running_loop().call_later(cooldown, lambda: deployment.breaker.state)
        if self.on_breaker_change is not None:
            self.on_breaker_change(deployment.spec.provider, self.breaker_state(deployment.spec.provider))

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- the retry loop ------------------------------------------------------------------------

    async def _stream(
        self,
        plan: Plan,
        request: Req,
        clock: RequestClock,
        open_stream: OpenStream[Req],
        *,
        buffered: bool = False,
    ) -> AsyncGenerator[GatewayEvent, None]:
        """The retry loop. `buffered` (unary calls) holds each attempt's events until it succeeds,
        so that even a failure after some output can fail over: the client has seen nothing yet."""
        settings = plan.settings
        deadline = clock.deadline if clock.deadline is not None else self.clock() + settings.timeout_s
        attempts: list[Attempt] = []
        failures: dict[str, int] = {}
        ready_at = {
            d.key: self.clock() + s
            for d, s in zip(plan.deployments, await self._ejections(plan), strict=True)
        }
        last_error: GatewayError | None = None
        max_attempts = len(plan.deployments) + settings.retries
        while len(attempts) < max_attempts:
            deployment = await self._next_ready(plan, ready_at, deadline, last_error, retrying=bool(attempts))
            if deployment is None:
                continue
            if deployment.spec.rpm:
                wait = await self.store.hit(f"rpm:{deployment.key}", 1, deployment.spec.rpm, RPM_WINDOW_S)
                if wait:
                    ready_at[deployment.key] = self.clock() + wait
                    last_error = GatewayError(
                        ErrorKind.RESOURCE_EXHAUSTED,
                        f"request budget of {deployment.key} ({deployment.spec.rpm}/min) is spent",
                        provider=deployment.spec.provider,
                        retry_after=wait,
                    )
                    continue
            if not deployment.breaker.available():
                continue  # another request took the last half-open probe slot while we waited
            sent_content = False
            held: list[GatewayEvent] = []
            try:
                # aclosing: a client that stops reading closes this attempt (and its upstream) now,
                # not whenever the garbage collector finalizes the generator.
                attempt = self._attempt(
                    deployment, len(attempts) + 1, request, clock, deadline, open_stream, attempts, buffered
                )
                async with contextlib.aclosing(attempt):
                    async for event in attempt:
                        if buffered:
                            held.append(event)
                            continue
                        if isinstance(event, CONTENT_EVENTS):
                            sent_content = True
                        handed = time.perf_counter_ns()
                        yield event
                        clock.downstream_ns += time.perf_counter_ns() - handed
                for event in held:
                    yield event
                return
            except GatewayError as exc:
                if sent_content or not exc.retryable:
                    raise
                last_error = exc
                n = failures.get(deployment.key, 0)
                failures[deployment.key] = n + 1
                delay = max(self._backoff(n, settings), exc.retry_after or 0.0)
                ready_at[deployment.key] = self.clock() + delay
        raise last_error or GatewayError(ErrorKind.UNAVAILABLE, f"no deployment of {plan.name!r} answered")

    async def _ejections(self, plan: Plan) -> list[float]:
        return await self.store.ejections([d.key for d in plan.deployments])

    def _backoff(self, failures: int, settings: RoutingSettings) -> float:
        """Exponential backoff with full jitter (AWS architecture blog): uniform in [0, cap)."""
        cap = min(settings.backoff_max_ms, settings.backoff_base_ms * 2.0**failures) / 1000
        return self.rng.uniform(0, cap)

    async def _next_ready(
        self,
        plan: Plan,
        ready_at: dict[str, float],
        deadline: float,
        last_error: GatewayError | None,
        *,
        retrying: bool,
    ) -> Deployment | None:
        """The first deployment that can take the request now; or wait (bounded) and return None."""
        now = self.clock()
        wait = math.inf
        at_capacity = False
        for deployment in plan.deployments:
            until = max(ready_at[deployment.key], now + deployment.breaker.open_for())
            if until > now:
                wait = min(wait, until - now)
            elif retrying and now + deployment.ewma_ttft_s >= deadline:
                continue  # cannot answer before the deadline: do not start it
            elif not deployment.breaker.available() or not deployment.limiter.has_capacity():
                at_capacity = True  # probe slots or concurrency taken: a release frees it
            else:
                return deployment
        if at_capacity:
            give_up = min(deadline, now + plan.settings.queue_timeout_s)
            await self._wait_for_capacity(plan, min(give_up, now + wait), give_up)
            return None
        if wait > plan.settings.max_retry_wait_s or now + wait >= deadline or wait is math.inf:
            raise _unavailable(plan, last_error, wait)
        await self.sleep(wait)
        return None

    async def _wait_for_capacity(self, plan: Plan, until: float, give_up: float) -> None:
        """Wait in the group's bounded queue until a deployment frees capacity or becomes ready
        (`until`); past `give_up` (the deadline or the queue timeout) the request is refused."""
        waiting = self._waiters.get(plan.name, 0)
        if waiting >= plan.settings.max_queue:
            raise GatewayError(
                ErrorKind.RESOURCE_EXHAUSTED,
                f"{plan.name!r} is at capacity and {waiting} requests are already waiting",
                retry_after=1.0,
            )
        self._waiters[plan.name] = waiting + 1
        try:
            async with self._capacity:
                await asyncio.wait_for(self._capacity.wait(), max(until - self.clock(), 0.0))
        except TimeoutError:
            if until < give_up:
                return  # another deployment's wait is over: look again
            raise GatewayError(
                ErrorKind.RESOURCE_EXHAUSTED,
                f"{plan.name!r} stayed at capacity until the request's deadline",
                retry_after=1.0,
            ) from None
        finally:
            self._waiters[plan.name] -= 1

    async def _notify_capacity(self) -> None:
        async with self._capacity:
            self._capacity.notify_all()

    async def _attempt(
        self,
        deployment: Deployment,
        number: int,
        request: Req,
        clock: RequestClock,
        deadline: float,
        open_stream: OpenStream[Req],
        attempts: list[Attempt],
        unary: bool = False,
    ) -> AsyncGenerator[GatewayEvent, None]:
        """One try of one deployment: its events, then the Finish; failures judged for breaker and limiter.

        A unary call's first event is its whole answer, so only the deadline bounds the wait for it.
        """
        breaker, limiter, settings = deployment.breaker, deployment.limiter, deployment.settings
        state = breaker.state.value
        breaker.acquire()
        limiter.acquire()
        scope = _AttemptScope(
            AttemptInfo(number, deployment.key, state), lambda info: self._rate_limit_info(deployment, info)
        )
        started = time.perf_counter_ns()
        stream: AsyncIterator[StreamEvent] | None = None
        sent_content = False
        finish: ProviderFinish | None = None
        verdict = False
        try:
            with scope:
                stream = open_stream(
                    deployment.provider, dataclasses.replace(request, model=deployment.spec.model)
                )
            while True:
                limit = settings.idle_timeout_s if sent_content else settings.ttft_timeout_s
                limit = (
                    max(deadline - self.clock(), 0.0)
                    if unary
                    else min(limit, max(deadline - self.clock(), 0.0))
                )
                before = time.perf_counter_ns()
                try:
                    async with asyncio.timeout(limit):
                        with scope:
                            event = await anext(stream)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    if self.clock() >= deadline:  # the client's deadline, not the deployment's fault
                        raise GatewayError(
                            ErrorKind.DEADLINE_EXCEEDED, "the request's deadline passed", retryable=False
                        ) from None
                    raise _stalled(deployment, sent_content, limit) from None
                except OSError as exc:  # an adapter let a socket error through: a connection failure
                    raise GatewayError(
                        ErrorKind.UNAVAILABLE,
                        f"{deployment.key}: connection failed ({type(exc).__name__})",
                        provider=deployment.spec.provider,
                        retryable=True,
                    ) from exc
                finally:
                    clock.upstream_ns += time.perf_counter_ns() - before
                if isinstance(event, ProviderFinish):
                    finish = event
                    continue
                if not sent_content and isinstance(event, CONTENT_EVENTS):
                    sent_content = True
                    clock.first_token_ns = time.perf_counter_ns()
                    deployment.record_ttft((clock.first_token_ns - started) / 1e9)
                yield event
        except GatewayError as exc:
            exc.provider = exc.provider or deployment.spec.provider
            verdict = True
            attempts.append(_failed(deployment, exc, started))
            await self._judge(deployment, exc)
            raise
        finally:
            limiter.release()
            if not verdict:  # cancelled or an unexpected exception: neither success nor failure
                breaker.release()
            await _close(stream)
            await self._notify_capacity()
        if not sent_content:
            deployment.record_ttft((time.perf_counter_ns() - started) / 1e9)
        breaker.record_success()
        limiter.on_success()
        attempts.append(
            Attempt(
                deployment.spec.provider,
                deployment.spec.model,
                "ok",
                "",
                _us(time.perf_counter_ns() - started),
            )
        )
        yield _finish(deployment, finish, attempts, clock)

    async def _judge(self, deployment: Deployment, exc: GatewayError) -> None:
        """What a failure says about the deployment: overloaded, broken, or nothing (a bad request)."""
        if exc.kind is ErrorKind.RESOURCE_EXHAUSTED:
            deployment.limiter.on_overload()
            deployment.breaker.release()
            if exc.retry_after:
                await self.store.eject(deployment.key, exc.retry_after)
        elif exc.retryable:
            deployment.breaker.record_failure()
        else:
            deployment.breaker.release()

    def _rate_limit_info(self, deployment: Deployment, info: RateLimitInfo) -> None:
        deployment.limiter.on_rate_limit_info(info)
        if info.headroom() == 0.0 and info.reset_s:
            self._background(self.store.eject(deployment.key, info.reset_s))

    # --- public calls --------------------------------------------------------------------------

    def chat_stream(self, request: ChatRequest, clock: RequestClock) -> AsyncGenerator[GatewayEvent, None]:
        plan = self.plan(request.model, request.provider, request.fallbacks)
        return self._stream(plan, request, clock, lambda p, r: p.chat_stream(r))

    def complete_stream(
        self, request: CompletionRequest, clock: RequestClock
    ) -> AsyncGenerator[GatewayEvent, None]:
        plan = self.plan(request.model, request.provider, request.fallbacks)
        return self._stream(plan, request, clock, lambda p, r: p.complete_stream(r))

    async def chat(self, request: ChatRequest, clock: RequestClock) -> tuple[ChatResponse, Finish]:
        """Unary calls run the same loop as streams (retries, failover, breakers are identical) but
        call the provider's unary endpoint: its whole answer is replayed as one burst of events."""
        plan = self.plan(request.model, request.provider, request.fallbacks)
        return await _collect(self._stream(plan, request, clock, _unary_chat, buffered=True))

    async def complete(
        self, request: CompletionRequest, clock: RequestClock
    ) -> tuple[CompletionResponse, Finish]:
        plan = self.plan(request.model, request.provider, request.fallbacks)
        response, finish = await _collect(self._stream(plan, request, clock, _unary_complete, buffered=True))
        return CompletionResponse(text=response.text, usage=response.usage, finish=response.finish), finish

    async def list_models(self, provider: str = "") -> list[tuple[str, ModelInfo]]:
        names = [self.resolver.check_provider(provider)] if provider else self.registry.names()
        models: list[tuple[str, ModelInfo]] = []
        for name in names:
            models.extend((name, m) for m in await self.provider(Route(name, "")).list_models())
        return models

    async def count_tokens(self, request: CountTokensRequest) -> tuple[Route, TokenCount]:
        async def call(d: Deployment) -> TokenCount:
            return await d.provider.count_tokens(dataclasses.replace(request, model=d.spec.model))

        return await self._simple(self.plan(request.model, request.provider), call)

    async def embed(self, request: EmbedRequest) -> tuple[Route, EmbedResult]:
        async def call(d: Deployment) -> EmbedResult:
            return await d.provider.embed(dataclasses.replace(request, model=d.spec.model))

        return await self._simple(self.plan(request.model, request.provider), call)

    async def _simple(self, plan: Plan, call: Callable[[Deployment], Awaitable[R]]) -> tuple[Route, R]:
        """Cheap calls (counting, embedding): the first available deployment, failover on retryable errors."""
        error: GatewayError | None = None
        candidates = [d for d in plan.deployments if d.breaker.available()] or plan.deployments
        for deployment in candidates:
            try:
                result = await call(deployment)
            except GatewayError as exc:
                exc.provider = exc.provider or deployment.spec.provider
                if not exc.retryable:
                    raise
                error = exc
                continue
            return Route(deployment.spec.provider, deployment.spec.model), result
        assert error is not None
        raise error

    async def aclose(self) -> None:
        for provider in self._own_providers:
            await provider.aclose()
        await self.store.aclose()


class _AttemptScope:
    """Sets the attempt's context variables around each call into the provider.

    Only around calls, never across a `yield`: a generator may be resumed or closed from another
    task (grpc closes a cancelled stream elsewhere), where a token from here could not be reset.
    """

    __slots__ = ("info", "sink", "tokens")

    def __init__(self, info: AttemptInfo, sink: Callable[[RateLimitInfo], None]) -> None:
        self.info, self.sink = info, sink
        self.tokens: list[
            tuple[Token[AttemptInfo | None], Token[Callable[[RateLimitInfo], None] | None]]
        ] = []

    def __enter__(self) -> None:
        self.tokens.append((CURRENT_ATTEMPT.set(self.info), RATE_LIMIT_SINK.set(self.sink)))

    def __exit__(self, *exc: object) -> None:
        attempt, sink = self.tokens.pop()
        CURRENT_ATTEMPT.reset(attempt)
        RATE_LIMIT_SINK.reset(sink)


async def _unary_chat(provider: Provider, request: ChatRequest) -> AsyncIterator[StreamEvent]:
    for event in replay(await provider.chat(request)):
        yield event


async def _unary_complete(provider: Provider, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
    response = await provider.complete(request)
    for event in replay(ChatResponse(text=response.text, usage=response.usage, finish=response.finish)):
        yield event


async def _collect(events: AsyncIterator[GatewayEvent]) -> tuple[ChatResponse, Finish]:
    finish: Finish | None = None

    async def provider_events() -> AsyncIterator[StreamEvent]:
        nonlocal finish
        async for event in events:
            if isinstance(event, Finish):
                finish = event
            else:
                yield event

    response = await accumulate(provider_events())
    assert finish is not None, "the router ends every successful stream with a Finish"
    return response, finish


async def _close(stream: AsyncIterator[StreamEvent] | None) -> None:
    """Close the provider's stream now, so a cancelled request stops its upstream call at once."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


def _stalled(deployment: Deployment, sent_content: bool, limit: float) -> GatewayError:
    what = "no event for" if sent_content else "no first token within"
    return GatewayError(
        ErrorKind.DEADLINE_EXCEEDED,
        f"{deployment.key}: {what} {limit:.3g} s; upstream stalled",
        provider=deployment.spec.provider,
        retryable=True,
    )


def _unavailable(plan: Plan, last_error: GatewayError | None, wait: float) -> GatewayError:
    retry_after = None if wait is math.inf else round(wait, 3)
    if last_error is not None:
        return GatewayError(
            last_error.kind,
            last_error.message,
            provider=last_error.provider,
            retry_after=retry_after or last_error.retry_after,
            retryable=last_error.retryable,
            upstream_status=last_error.upstream_status,
        )
    return GatewayError(
        ErrorKind.UNAVAILABLE,
        f"every deployment of {plan.name!r} is unavailable (circuit open or rate limited)",
        retry_after=retry_after,
    )


def _failed(deployment: Deployment, exc: GatewayError, started: int) -> Attempt:
    return Attempt(
        deployment.spec.provider,
        deployment.spec.model,
        exc.kind.value,
        exc.message,
        _us(time.perf_counter_ns() - started),
    )


def _finish(
    deployment: Deployment, finish: ProviderFinish | None, attempts: list[Attempt], clock: RequestClock
) -> Finish:
    finish = finish or ProviderFinish(FinishReason.STOP)
    return Finish(
        reason=finish.reason,
        raw_reason=finish.raw_reason,
        provider=deployment.spec.provider,
        model=finish.model or deployment.spec.model,
        timing=clock.timing(),
        attempts=tuple(attempts),
        response_id=finish.response_id,
    )
