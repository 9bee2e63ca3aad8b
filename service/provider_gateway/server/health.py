"""Provider health as the standard gRPC health service reports it.

Entries: "" (the whole server), `provider_gateway.v1.ProviderService`, and `provider/<name>` for
each configured provider. The server stays SERVING while at least one provider serves. `Check`
and `Watch` answer for any entry; behind [auth], `List` names only the providers of the key the
caller presents (none without one), so an open health service does not enumerate the providers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer

from provider_gateway.providers.base import Provider
from provider_gateway.v1 import provider_service_pb2 as pb

SERVICE_NAME = "provider_gateway.v1.ProviderService"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
log = logging.getLogger("provider_gateway.health")


PROVIDER_PREFIX = "provider/"


def provider_service_name(provider: str) -> str:
    return f"{PROVIDER_PREFIX}{provider}"


# Which providers' entries `List` shows a caller, from its call's metadata (its key).
type ProvidersShown = Callable[[Sequence[tuple[str, str | bytes]] | None], Callable[[str], bool]]


def _every_provider(metadata: object) -> Callable[[str], bool]:
    return lambda provider: True


class ListingHealthServicer(HealthServicer):
    """grpcio-health-checking's asyncio servicer, plus the protocol's `List`, which it leaves
    unimplemented (a raised NotImplementedError: UNKNOWN, and a traceback in the log)."""

    _server_status: MutableMapping[str, int]  # the base class's statuses, kept by its `set`

    def __init__(self, shown: ProvidersShown = _every_provider) -> None:
        super().__init__()
        self.shown = shown

    async def List(self, request: Any, context: Any) -> Any:
        """Every entry's status now (the protocol's non-atomic snapshot): one per provider the
        caller may see and two more, so never the RESOURCE_EXHAUSTED the protocol allows for too
        many. (The types-grpcio-health-checking stubs predate List: hence Any and the ignore.)"""
        shows = self.shown(context.invocation_metadata())
        statuses = {
            name: health_pb2.HealthCheckResponse(status=s)
            for name, s in self._server_status.items()
            if not name.startswith(PROVIDER_PREFIX) or shows(name.removeprefix(PROVIDER_PREFIX))
        }
        return health_pb2.HealthListResponse(statuses=statuses)  # type: ignore[attr-defined]


@dataclass(slots=True)
class ProviderHealth:
    state: int = pb.PROVIDER_HEALTH_UNSPECIFIED
    message: str = ""


class ProviderHealthBook:
    """Keeps each provider's health and mirrors it into the gRPC health servicer."""

    def __init__(self, servicer: HealthServicer, providers: list[str]) -> None:
        self.servicer = servicer
        self._health = {name: ProviderHealth() for name in providers}
        self.shutting_down = False
        self._breakers_open: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def get(self, provider: str) -> ProviderHealth:
        return self._health.get(provider, ProviderHealth())

    def differs(self, provider: str, healthy: bool, message: str) -> bool:
        """Whether recording this result would change what is kept for the provider."""
        current = self.get(provider)
        state = pb.PROVIDER_HEALTH_SERVING if healthy else pb.PROVIDER_HEALTH_NOT_SERVING
        return current.state != state or current.message != message

    async def set(self, provider: str, healthy: bool, message: str = "") -> None:
        state = pb.PROVIDER_HEALTH_SERVING if healthy else pb.PROVIDER_HEALTH_NOT_SERVING
        previous = self._health.get(provider)
        self._health[provider] = ProviderHealth(state, message)
        if previous is None or previous.state != state:
            log.info("provider %s is %s %s", provider, "serving" if healthy else "not serving", message)
        await self._publish(provider)
        await self._publish_overall()

    async def _publish(self, provider: str) -> None:
        if self.shutting_down:
            return
        serving = self.get(provider).state != pb.PROVIDER_HEALTH_NOT_SERVING
        serving = serving and provider not in self._breakers_open
        await self.servicer.set(provider_service_name(provider), SERVING if serving else NOT_SERVING)

    def breaker_changed(self, provider: str, breaker_state: str) -> None:
        """The router's breakers: NOT_SERVING while every deployment of the provider is open."""
        if breaker_state == "open":
            self._breakers_open.add(provider)
        else:
            self._breakers_open.discard(provider)
        task = asyncio.ensure_future(self._publish(provider))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish_overall(self) -> None:
        if self.shutting_down:
            return
        any_serving = any(h.state != pb.PROVIDER_HEALTH_NOT_SERVING for h in self._health.values())
        overall = SERVING if any_serving else NOT_SERVING
        await self.servicer.set("", overall)
        await self.servicer.set(SERVICE_NAME, overall)

    async def check_all(self, providers: list[Provider], timeout_s: float = 5.0) -> None:
        """Probe every provider once, concurrently; a probe that fails or times out is not serving."""

        async def probe(provider: Provider) -> None:
            try:
                async with asyncio.timeout(timeout_s):
                    status = await provider.health_check()
                await self.set(provider.name, status.healthy, status.message)
            except Exception as exc:
                await self.set(provider.name, False, f"health check failed: {type(exc).__name__}")

        await asyncio.gather(*(probe(p) for p in providers))

    async def enter_shutdown(self) -> None:
        """Report NOT_SERVING everywhere so load balancers stop sending before we stop serving."""
        self.shutting_down = True
        await self.servicer.enter_graceful_shutdown()
