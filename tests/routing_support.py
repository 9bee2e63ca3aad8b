"""Helpers for the router tests: routers over mock providers, a fake clock, collected streams."""

from __future__ import annotations

import asyncio
import random
import tomllib
from typing import Any

from provider_gateway import config as config_module
from provider_gateway.domain import ChatRequest, Finish, GatewayEvent, Message, Role, TextPart
from provider_gateway.errors import GatewayError
from provider_gateway.providers.mock import MockProvider
from provider_gateway.providers.registry import ProviderRegistry
from provider_gateway.routing.resolve import RouteResolver
from provider_gateway.routing.router import Router
from provider_gateway.routing.settings import RoutingConfig, parse_routing
from provider_gateway.routing.shared_state import MemoryCounterStore, SharedState
from provider_gateway.routing.timing import RequestClock


class FakeClock:
    """A monotonic clock the test moves; `sleep` advances it and records each wait."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.sleeps: list[tuple[float, float]] = []  # (when, how long)

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append((self.now, seconds))
        self.now += seconds


def make_router(
    toml_text: str,
    *,
    clock: Any = None,
    seed: int = 7,
    store: SharedState | None = None,
    routing: RoutingConfig | None = None,
) -> Router:
    """A router over the file's providers; `routing` in place of the file's [routing] and [groups]."""
    config = config_module.parse(tomllib.loads(toml_text), "test.toml")
    registry = ProviderRegistry.from_config(config)
    resolver = RouteResolver(registry.names(), registry.default, config.aliases)
    kwargs: dict[str, Any] = {"rng": random.Random(seed)}
    if clock is not None:
        kwargs["clock"] = clock
    if isinstance(clock, FakeClock):
        kwargs["sleep"] = clock.sleep
    return Router(
        registry,
        resolver,
        routing or parse_routing(config),
        store or MemoryCounterStore(clock or _monotonic()),
        **kwargs,
    )


def _monotonic() -> Any:
    import time

    return time.monotonic


def mock(router: Router, name: str) -> MockProvider:
    provider = router.registry.get(name)
    assert isinstance(provider, MockProvider)
    return provider


def chat(model: str, fallbacks: list[str] | None = None) -> ChatRequest:
    return ChatRequest(model, [Message(Role.USER, (TextPart("hello there"),))], fallbacks=fallbacks or [])


async def run_stream(
    router: Router, request: ChatRequest, clock: RequestClock | None = None
) -> list[GatewayEvent]:
    return [e async for e in router.chat_stream(request, clock or RequestClock())]


def finish_of(events: list[GatewayEvent]) -> Finish:
    assert isinstance(events[-1], Finish)
    return events[-1]


def two_deployments(primary: str, *, routing: str = "", extra: str = "") -> str:
    """Providers `a` (model `m` behaving as `primary`) and `b` (healthy); group `g` prefers a, b is backup."""
    return f"""
[providers.a]
kind = "mock"
[providers.a.models.m]
{primary}
[providers.b]
kind = "mock"
[providers.b.models.m]
tokens = 3
[routing]
{routing}
[groups.g]
deployments = [{{ provider = "a", model = "m", weight = 1 }}, {{ provider = "b", model = "m", weight = 0 }}]
{extra}
"""


async def until(predicate: Any, timeout_s: float = 10.0) -> None:
    """Wait (bounded) for a condition another task makes true."""
    for _ in range(int(timeout_s / 0.002)):
        if predicate():
            return
        await asyncio.sleep(0.002)
    raise AssertionError("condition not reached in time")


async def stream_until_error(router: Router, request: ChatRequest) -> tuple[list[GatewayEvent], GatewayError]:
    """The events a client saw before the stream failed, and the failure."""
    seen: list[GatewayEvent] = []
    try:
        async for event in router.chat_stream(request, RequestClock()):
            seen.append(event)
    except GatewayError as exc:
        return seen, exc
    raise AssertionError(f"the stream ended cleanly after {len(seen)} events")
