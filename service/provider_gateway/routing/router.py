"""The router: resolves a model to deployments, balances, retries, fails over, and times the work.

It wires three parts together: the planner (`plans.py`: which deployments a request may use, and
their breaker, limiter and latency state), the retry loop (`retry.py`: retries, failover, waits for
capacity) and the attempts (`attempts.py`: one try of one deployment, timed and judged). Unary calls
walk the plan as streams do, with the same decisions, but await the provider's whole answer once
(`RetryLoop.call`, `Attempts.call`); counting and embedding walk it with the same bookkeeping of
breakers, limiters and holds, without a stream's stall watch and costs (`quick_calls.py`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine
from typing import Any

from provider_gateway.catalog import Catalog
from provider_gateway.config import ProviderConfig
from provider_gateway.domain import (
    Capabilities,
    ChatRequest,
    ChatResponse,
    CompletionRequest,
    CompletionResponse,
    CountTokensRequest,
    EmbedRequest,
    EmbedResult,
    Finish,
    GatewayEvent,
    ModelInfo,
    RateLimits,
    Route,
    TokenCount,
)
from provider_gateway.pricing import PriceTable
from provider_gateway.providers.base import Provider
from provider_gateway.providers.context import ProviderContext
from provider_gateway.providers.embed_dimensions import check_widths
from provider_gateway.providers.registry import ProviderRegistry, build_provider
from provider_gateway.routing.attempts import Attempts
from provider_gateway.routing.breaker import BreakerState
from provider_gateway.routing.deployments import Deployment
from provider_gateway.routing.listing import list_each
from provider_gateway.routing.plans import Plan, Planner
from provider_gateway.routing.quick_calls import QuickCalls
from provider_gateway.routing.resolve import RouteResolver
from provider_gateway.routing.retry import CapacityQueue, RetryLoop
from provider_gateway.routing.retry_budget import RetryBudget
from provider_gateway.routing.settings import RoutingConfig
from provider_gateway.routing.shared_state import MemoryCounterStore, SharedState
from provider_gateway.routing.timing import RequestClock

log = logging.getLogger("provider_gateway.router")


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
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        prices: PriceTable | None = None,
        catalog: Catalog | None = None,
    ) -> None:
        self.registry = registry
        self.resolver = resolver
        self.routing = routing or RoutingConfig()
        self.store: SharedState = store or MemoryCounterStore(clock)
        self.clock = clock
        # Called with (provider, aggregated breaker state) whenever a breaker of that provider changes.
        self.on_breaker_change: Callable[[str, str], None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # Each open breaker's look at the end of its cool-down (one a deployment), cancelled by aclose.
        self._cooldowns: dict[str, asyncio.TimerHandle] = {}
        rng = rng or random.Random()
        # Builds the adapter of a deployment with its own credentials (the server passes its shared
        # HTTP pool and instrumentation through this).
        build = build or (lambda config: build_provider(config, ProviderContext()))
        self.planner = Planner(registry, resolver, self.routing, build, clock, self._breaker_changed, rng)
        self.capacity = CapacityQueue(clock)
        # Requests and retries in flight in this process; the server feeds its refusals to a metric.
        self.retry_budget = RetryBudget()
        attempts = Attempts(
            clock,
            self.store,
            self.capacity.notify,
            self._background,
            prices or PriceTable.builtin(),
            self.retry_budget,
        )
        self.catalog = catalog or Catalog.builtin()
        self.retry = RetryLoop(clock, rng, sleep, self.store, self.capacity, attempts, self.catalog)
        self.quick = QuickCalls(
            clock, sleep, self.store, self.capacity, self.retry.backoff, self.retry_budget, attempts.watchdog
        )

    def plan(self, model: str, provider: str = "", fallbacks: list[str] | tuple[str, ...] = ()) -> Plan:
        """The primary's deployments (balanced), then each fallback's (a group or a model)."""
        return self.planner.plan(model, provider, fallbacks)

    def breaker_state(self, provider: str) -> str:
        return self.planner.breaker_state(provider)

    def capabilities(self, provider: Provider) -> Capabilities:
        """What `provider` declares, with the rate limits it announced and the concurrency the
        adaptive limiter allows now where the config declares none (0 before any answer)."""
        caps = provider.capabilities()
        declared, observed = caps.rate_limits, self.planner.observed_rate_limits(provider.name)
        return dataclasses.replace(
            caps,
            rate_limits=RateLimits(
                requests_per_minute=declared.requests_per_minute or observed.requests_per_minute,
                tokens_per_minute=declared.tokens_per_minute or observed.tokens_per_minute,
                max_concurrent=declared.max_concurrent or observed.max_concurrent,
            ),
        )

    def limiter_capacity(self) -> list[tuple[dict[str, str], float]]:
        return self.planner.limiter_capacity()

    def _breaker_changed(self, deployment: Deployment, state: BreakerState) -> None:
        log.warning("breaker of %s is now %s", deployment.key, state.value)
        if state is BreakerState.OPEN:
            # Share the ejection with other replicas, and look again when the cool-down ends so
            # the health service sees the half-open state without waiting for a request.
            cooldown = deployment.settings.breaker.cooldown_s
            self._background(self.store.eject(deployment.key, cooldown))
            self._look_after(cooldown, deployment)
        elif state is BreakerState.CLOSED:  # a call succeeded: the ejection it shared is over too
            self._background(self.store.lift(deployment.key))
        if self.on_breaker_change is not None:
            self.on_breaker_change(deployment.spec.provider, self.breaker_state(deployment.spec.provider))

    def _after_cooldown(self, deployment: Deployment) -> None:
        """Move an open breaker to half-open (reading its state does) once its cool-down is over;
        a timer that fired a hair early by the breaker's clock (uvloop counts whole milliseconds)
        looks again, since only this timer and requests move it (reads elsewhere never do)."""
        self._cooldowns.pop(deployment.key, None)
        breaker = deployment.breaker
        if breaker.state is BreakerState.OPEN:
            self._look_after(max(breaker.open_for(), 0.001), deployment)

    def _look_after(self, delay_s: float, deployment: Deployment) -> None:
        if (earlier := self._cooldowns.get(deployment.key)) is not None:
            earlier.cancel()  # the breaker opened again: its new cool-down is the one to wait out
        loop = asyncio.get_running_loop()
        self._cooldowns[deployment.key] = loop.call_later(delay_s, self._after_cooldown, deployment)

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- public calls --------------------------------------------------------------------------

    def chat_stream(self, request: ChatRequest, clock: RequestClock) -> AsyncGenerator[GatewayEvent, None]:
        plan = self.plan(request.model, request.provider, request.fallbacks)
        return self.retry.run(plan, request, clock, lambda p, r: p.chat_stream(r))

    def complete_stream(
        self, request: CompletionRequest, clock: RequestClock
    ) -> AsyncGenerator[GatewayEvent, None]:
        plan = self.plan(request.model, request.provider, request.fallbacks)
        return self.retry.run(plan, request, clock, lambda p, r: p.complete_stream(r))

    async def chat(self, request: ChatRequest, clock: RequestClock) -> tuple[ChatResponse, Finish]:
        """Unary calls take the same plan, retries, failover and breakers as streams, and call the
        provider's unary endpoint: its whole answer is awaited once (`RetryLoop.call`)."""
        plan = self.plan(request.model, request.provider, request.fallbacks)
        return await self.retry.call(plan, request, clock, _chat_answer)

    async def complete(
        self, request: CompletionRequest, clock: RequestClock
    ) -> tuple[CompletionResponse, Finish]:
        plan = self.plan(request.model, request.provider, request.fallbacks)
        response, finish = await self.retry.call(plan, request, clock, _completion_answer)
        return CompletionResponse(text=response.text, usage=response.usage, finish=response.finish), finish

    async def list_models(self, provider: str = "") -> list[tuple[str, ModelInfo]]:
        """The models of `provider`, whose failure is the call's; or of every provider the caller
        may use, asked at once, where one that fails or is slow is left out (routing/listing.py)."""
        if provider:
            adapter = self.planner.provider(Route(self.resolver.check_provider(provider), ""))
            listings = [(adapter, await adapter.list_models())]
        else:
            names = self.resolver.listed_providers()
            listings = await list_each([self.planner.provider(Route(name, "")) for name in names])
        models: list[tuple[str, ModelInfo]] = []
        for adapter, listed in listings:
            for model in listed:
                if not self.lists_model(adapter.name, model.id):
                    continue
                entry = self.catalog.entry(adapter.kind, model.id)  # the provider's own figures win
                models.append((adapter.name, entry.filled(model) if entry else model))
        return models

    def lists_model(self, provider: str, model: str) -> bool:
        """Whether ListModels shows the caller `provider/model`: every one here; behind [auth],
        those its key may use (server/auth.py)."""
        return True

    async def count_tokens(self, request: CountTokensRequest) -> tuple[Route, TokenCount]:
        async def call(d: Deployment) -> TokenCount:
            return await d.provider.count_tokens(dataclasses.replace(request, model=d.spec.model))

        plan = self.plan(request.model, request.provider)
        first = plan.deployments[0]
        if not first.provider.capabilities().exact_token_count:
            # A local estimate (no count endpoint) reaches no provider: no breaker, concurrency
            # slot or hold of its deployment has a say, and none may refuse it.
            return Route(first.spec.provider, first.spec.model), await call(first)
        return await self.quick.call(plan, call)

    async def embed(self, request: EmbedRequest) -> tuple[Route, EmbedResult]:
        async def call(d: Deployment) -> EmbedResult:
            result = await d.provider.embed(dataclasses.replace(request, model=d.spec.model))
            return check_widths(result, request.dimensions, d.spec.provider, d.spec.model)

        return await self.quick.call(self.plan(request.model, request.provider), call)

    async def aclose(self) -> None:
        for timer in self._cooldowns.values():  # a closed router moves no breaker later
            timer.cancel()
        self._cooldowns.clear()
        for provider in self.planner.own_providers:
            await provider.aclose()
        await self.store.aclose()


def _chat_answer(provider: Provider, request: ChatRequest) -> Awaitable[ChatResponse]:
    return provider.chat(request)


async def _completion_answer(provider: Provider, request: CompletionRequest) -> ChatResponse:
    response = await provider.complete(request)
    return ChatResponse(text=response.text, usage=response.usage, finish=response.finish)
