"""Plans: which deployments one request may use, best first, and the deployments' shared state.

The planner owns every deployment the router knows (breaker, limiter, latency estimate): those of
the configured groups, built once, and those of plain `provider/model` routes, kept within a bound.
The two are kept apart: a plain route never finds a group's deployment by its key, whatever the
names (the configuration also refuses a group named like a provider, routing/settings.py).
"""

from __future__ import annotations

import random
from collections import ChainMap, deque
from collections.abc import Callable

from provider_gateway.config import ProviderConfig
from provider_gateway.domain import RateLimits, Route, value
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.providers.base import Provider
from provider_gateway.providers.registry import ProviderRegistry
from provider_gateway.routing.breaker import BreakerState
from provider_gateway.routing.deployments import Deployment, order
from provider_gateway.routing.resolve import RouteResolver
from provider_gateway.routing.settings import DeploymentSpec, RoutingConfig, RoutingSettings

# Plain-route deployments (breaker, limiter, latency estimate) kept per `provider/model` name.
MAX_ROUTE_DEPLOYMENTS = 1024


@value  # built per call: see domain.value
class Plan:
    """The deployments one request may use, best first, and the settings that govern it. A plain
    route's plan is shared by every request naming that route (`Planner.plan`): never changed."""

    name: str
    deployments: list[Deployment]
    settings: RoutingSettings


class Planner:
    def __init__(
        self,
        registry: ProviderRegistry,
        resolver: RouteResolver,
        routing: RoutingConfig,
        build: Callable[[ProviderConfig], Provider],
        clock: Callable[[], float],
        on_breaker_change: Callable[[Deployment, BreakerState], None],
        rng: random.Random,
    ) -> None:
        self.registry = registry
        self.resolver = resolver
        self.routing = routing
        self.build = build
        self.clock = clock
        self.on_breaker_change = on_breaker_change
        self.rng = rng
        self.groups: dict[str, list[Deployment]] = {}
        self.routes: dict[str, Deployment] = {}  # plain-route deployments, least recently used first
        # The plan of each plain route by the names a request gave (model, provider), built once.
        self.plain: dict[tuple[str, str], Plan] = {}
        self.own_providers: list[Provider] = []  # adapters built for deployments with their own credentials
        for group in routing.groups.values():
            self.groups[group.name] = [
                self._deployment(d.key(group.name), d, group.settings) for d in group.deployments
            ]
        in_groups = {d.key: d for members in self.groups.values() for d in members}
        # Every deployment by key, to look at (tests, debugging): routing itself looks a plain
        # route up in `routes` alone, so that it never takes a group's deployment.
        self.deployments: ChainMap[str, Deployment] = ChainMap(self.routes, in_groups)
        self._in_groups = list(in_groups.values())

    def _all(self) -> list[Deployment]:
        """Every deployment, at one moment: the metrics exporter's thread reads them while the
        event loop adds and forgets routes (a dict's copy is made in one step)."""
        return [*self._in_groups, *self.routes.copy().values()]

    def provider(self, route: Route) -> Provider:
        provider = self.registry.get(route.provider)
        if provider is None:  # the resolver checked; this guards a registry changed under us
            raise GatewayError(ErrorKind.NOT_FOUND, f"provider {route.provider!r} is not configured")
        return provider

    def _deployment(self, key: str, spec: DeploymentSpec, settings: RoutingSettings) -> Deployment:
        provider = self.provider(Route(spec.provider, spec.model))
        if spec.provider_config is not None:  # its own credentials: its own adapter instance
            provider = self.build(spec.provider_config)
            self.own_providers.append(provider)
        return Deployment(key, spec, provider, settings, self.clock, self.on_breaker_change)

    def _route_deployment(self, route: Route) -> Deployment:
        """A plain `provider/model` route's deployment, looked up among the routes' alone. Clients
        choose these names, so the idle ones are forgotten beyond a bound (oldest first) rather
        than kept for every name ever asked."""
        key = f"{route.provider}/{route.model}"
        deployment = self.routes.pop(key, None) or self._deployment(
            key, DeploymentSpec(route.provider, route.model), self.routing.defaults
        )
        self.routes[key] = deployment  # most recently used last
        if len(self.routes) > MAX_ROUTE_DEPLOYMENTS:
            self._forget_one(key)
        return deployment

    def _forget_one(self, newest: str) -> None:
        """Forget the least recently used route that nothing needs, other than the one just used: an
        idle one that learned nothing first; else one with nothing in flight and a closed breaker
        though its limiter learned something (names that each met a 429 must not pin every slot);
        else, with every other one busy, the newest."""
        victim = unused = None
        for old_key, old in self.routes.items():
            if old_key == newest:
                continue
            if old.is_idle():
                victim = old_key
                break
            if unused is None and old.is_unused():
                unused = old_key
        del self.routes[victim or unused or newest]
        self.plain.clear()  # a kept plan must not hold a forgotten deployment

    def _plain_plan(self, model: str, provider: str) -> Plan:
        """One plain route's plan (most calls), kept by the names the request gave: resolving them
        and building the plan again was a good part of routing's work per call. Using it touches
        its deployment as `_route_deployment` does, so that the least recently used goes first."""
        plan = self.plain.get((model, provider))
        if plan is not None:
            key = plan.deployments[0].key
            self.routes[key] = self.routes.pop(key)
            return plan
        deployment = self._route_deployment(self.resolver.resolve(model, provider))
        plan = Plan(model, [deployment], self.routing.defaults)
        if self.routes.get(deployment.key) is not deployment:
            return plan  # forgotten as soon as made (every other route holds state): not kept either
        if len(self.plain) >= MAX_ROUTE_DEPLOYMENTS:  # clients choose the names: bounded
            self.plain.clear()
        self.plain[model, provider] = plan
        return plan

    def plan(self, model: str, provider: str = "", fallbacks: list[str] | tuple[str, ...] = ()) -> Plan:
        """The primary's deployments (balanced), then each fallback's (a group or a model)."""
        settings = self.routing.defaults
        if not fallbacks and (provider or model not in self.routing.groups):
            # One plain route (most calls): the same plan, without the walk through fallbacks.
            return self._plain_plan(model, provider)
        deployments: list[Deployment] = []
        # A queue: popping a list's head moves the rest, quadratic in a long list of fallbacks.
        pending = deque([(model, provider), *((f, "") for f in fallbacks)])
        seen: set[str] = set()
        placed: set[Deployment] = set()
        first = True
        while pending:
            name, explicit = pending.popleft()
            if f"{explicit}/{name}" in seen:
                continue
            seen.add(f"{explicit}/{name}")
            group = self.routing.groups.get(name) if not explicit else None
            if group is not None:
                found = order(self.groups[name], group.settings.strategy, self.rng)
                pending.extend((f, "") for f in group.fallbacks)
                settings = group.settings if first else settings
            else:
                found = [self._route_deployment(self.resolver.resolve(name, explicit))]
            for d in found:  # by identity, in a set: a list's `in` is quadratic as well
                if d not in placed:
                    placed.add(d)
                    deployments.append(d)
            first = False
        return Plan(model, deployments, settings)

    def breaker_state(self, provider: str) -> str:
        """`open` while every deployment of the provider is open, `half_open` while some are, else
        closed. A read only (`observed`): the metrics gauges read it on their exporter's thread."""
        states = [d.breaker.observed for d in self._all() if d.spec.provider == provider]
        if states and all(s is BreakerState.OPEN for s in states):
            return BreakerState.OPEN.value
        if any(s is not BreakerState.CLOSED for s in states):
            return BreakerState.HALF_OPEN.value
        return BreakerState.CLOSED.value

    def observed_rate_limits(self, provider: str) -> RateLimits:
        """The budgets the provider last announced (largest over its deployments: each key has its
        own; a request budget over another window than a minute, such as Groq's daily one, is not
        shown as requests per minute), and the concurrency the adaptive limiters of those deployments allow now; zeros for a
        provider that announces nothing."""
        heard = [
            d
            for d in self._all()
            if d.spec.provider == provider and (d.limiter.announced or d.limiter.rate_limited)
        ]
        announced = [d.limiter.announced for d in heard if d.limiter.announced is not None]
        return RateLimits(
            requests_per_minute=max(
                (a.limit_requests or 0 for a in announced if a.requests_window_s == 60.0), default=0
            ),
            tokens_per_minute=max((a.limit_tokens or 0 for a in announced), default=0),
            max_concurrent=sum(int(d.limiter.limit) for d in heard),
        )

    def limiter_capacity(self) -> list[tuple[dict[str, str], float]]:
        """Spare concurrency of the adaptive limiters (limit minus in flight), summed per provider:
        a label per deployment would let clients' model names multiply the series."""
        spare: dict[str, float] = {}
        for d in self._all():
            free = max(d.limiter.limit - d.limiter.in_flight, 0.0)
            spare[d.spec.provider] = spare.get(d.spec.provider, 0.0) + free
        return [({"provider": p, "limit": "concurrency"}, value) for p, value in spare.items()]
