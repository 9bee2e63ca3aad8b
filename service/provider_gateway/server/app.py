"""Assembling and running the gRPC server: ProviderService, health, reflection, graceful drain."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from typing import cast

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from provider_gateway.catalog import Catalog
from provider_gateway.config import GatewayConfig
from provider_gateway.http.pool import UpstreamPool
from provider_gateway.observability import Telemetry
from provider_gateway.observability.monitor import HealthMonitor, MonitorSettings
from provider_gateway.pricing import PriceTable
from provider_gateway.providers.context import ProviderContext
from provider_gateway.providers.registry import ProviderRegistry, build_provider
from provider_gateway.routing.settings import parse_routing
from provider_gateway.routing.shared_state import RedisCounterStore, build_counter_store
from provider_gateway.server import auth, reflection, tls, validate
from provider_gateway.server import cache as answer_cache
from provider_gateway.server.auth import AuthorizingResolver, AuthorizingRouter
from provider_gateway.server.coalesce import OneByOne
from provider_gateway.server.drain import DrainInterceptor
from provider_gateway.server.edge import EdgeInterceptor
from provider_gateway.server.health import SERVICE_NAME, ListingHealthServicer, ProviderHealthBook
from provider_gateway.server.registration import GenericOnly
from provider_gateway.server.servicer import ProviderService
from provider_gateway.server.shutdown_cut import ShutdownCut
from provider_gateway.server.split_deltas import delta_bytes
from provider_gateway.v1 import provider_service_pb2 as pb
from provider_gateway.v1 import provider_service_pb2_grpc as pb_grpc

log = logging.getLogger("provider_gateway.server")
# After the grace, the cut calls get this long to send their status before gRPC cancels the rest.
CUT_FLUSH_S = 1.0


def connection_age_options(config: GatewayConfig) -> list[tuple[str, int]]:
    """gRPC options that recycle client connections, so DNS-balancing clients see new replicas."""
    server = config.server
    if not server.max_connection_age_s:
        return []
    return [
        ("grpc.max_connection_age_ms", int(server.max_connection_age_s * 1000)),
        ("grpc.max_connection_age_grace_ms", int(server.max_connection_age_grace_s * 1000)),
    ]


class GatewayServer:
    """One gateway process: owns the providers, the router and the grpc.aio server."""

    def __init__(
        self,
        config: GatewayConfig,
        telemetry: Telemetry | None = None,
        *,
        reuse_port: bool = False,
        worker: int = 0,
    ) -> None:
        """`reuse_port` and `worker`: one of `serve --workers` processes sharing the port (SO_REUSEPORT)."""
        self.config = config
        self.telemetry = telemetry or Telemetry.from_config(config.section("telemetry"), worker)
        # One HTTP client per upstream origin for the server's life; adapters get it via the context.
        self.upstreams = UpstreamPool.from_section(config.section("upstream"))
        self.telemetry.watch_upstreams(self.upstreams)  # traceparent out, connection counters in
        context = ProviderContext(http=self.upstreams, merge_reads=config.server.coalesce_deltas)
        self.registry = ProviderRegistry.from_config(config, context)
        # The authorizing resolver and router check routes against the caller's key (no-op without [auth]).
        self.resolver = AuthorizingResolver(self.registry.names(), self.registry.default, config.aliases)
        self.counters = build_counter_store(config)  # shared by the router and the per-key quotas
        prices = PriceTable.from_config(config.section("prices"))
        self.router = AuthorizingRouter(
            self.telemetry.wrap_registry(self.registry),
            self.resolver,
            parse_routing(config),
            self.counters,
            build=lambda provider: self.telemetry.wrap(build_provider(provider, context)),
            prices=prices,
            catalog=Catalog.from_config(config.section("catalog")),
        )
        self.health_servicer = ListingHealthServicer()
        self.health = ProviderHealthBook(self.health_servicer, self.registry.names())
        self.router.on_breaker_change = self.health.breaker_changed
        if (metrics := self.telemetry.metrics) is not None:
            refused = metrics.retries_refused
            self.router.retry_budget.on_refused = lambda provider: refused.add(1, provider)
        self.monitor = HealthMonitor(
            list(self.registry),
            self.health,
            MonitorSettings.from_section(config.section("health")),
            self.telemetry.gauges,
        )
        self.telemetry.health = self._serving_providers
        names = self.registry.names()
        self.telemetry.gauges.add_breaker_source(lambda: {n: self.router.breaker_state(n) for n in names})
        self.telemetry.gauges.add_limiter_source(self.router.limiter_capacity)
        self.service = ProviderService(self.router, self.health)
        self.auth = auth.interceptors(config, self.counters, self.router, prices)
        if self.auth:
            self.service.spend = self.auth[0].spend
            self.health_servicer.shown = auth.health_listing(self.auth[0].config)
        self.service.limits = validate.Limits.from_config(config)
        if not config.server.coalesce_deltas:
            self.service.relay = OneByOne
        limit = config.server.max_message_bytes
        self.service.delta_bytes = delta_bytes(limit)
        self.drain = DrainInterceptor()
        self.shutdown_cut = ShutdownCut()
        self._hurry = asyncio.Event()  # a second signal: no more waiting before the stop
        self.credentials = tls.server_credentials(config)
        # [cache]: identical requests answered again from memory, outside [auth] so that a hit is
        # never metered (docs/caching.md); None when off, and then nothing is on the call path.
        auth_config = self.auth[0].config if self.auth else None
        self.cache = answer_cache.from_config(config, auth_config, self.telemetry.metrics)
        self.grpc = grpc.aio.server(
            # Telemetry outermost, so refused and unauthenticated calls are traced and counted too;
            # then undecodable requests are refused, before they cost any work or quota. The edge
            # runs all of it in one frame per call, composed once per method (server/edge.py);
            # auth's wrappers depend on the caller.
            interceptors=[
                EdgeInterceptor(self.telemetry.call_hooks(), self.shutdown_cut, [self.drain], limit),
                *([self.cache] if self.cache else []),
                *self.auth,
            ],
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                # Off alone, so a second server on a busy port fails instead of sharing it unseen.
                ("grpc.so_reuseport", int(reuse_port)),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
                *connection_age_options(config),
            ],
        )
        services = GenericOnly(self.grpc)  # one pending call request, not one per method
        pb_grpc.add_ProviderServiceServicer_to_server(self.service, services)  # type: ignore[no-untyped-call]
        # (typed for a server; it calls only the two add_* methods GenericOnly has)
        health_pb2_grpc.add_HealthServicer_to_server(self.health_servicer, cast(grpc.aio.Server, services))
        reflection.enable(
            services,
            (
                pb.DESCRIPTOR.services_by_name["ProviderService"].full_name,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            ),
        )
        self.port = 0

    def _serving_providers(self) -> dict[str, bool]:
        return {n: self.health.get(n).state == pb.PROVIDER_HEALTH_SERVING for n in self.registry.names()}

    async def start(self, host: str | None = None, port: int | None = None) -> int:
        """Bind, probe every provider once, and start serving. Returns the bound port."""
        address = f"{host or self.config.server.host}:{self.config.server.port if port is None else port}"
        if self.credentials is None:
            self.port = self.grpc.add_insecure_port(address)
        else:
            self.port = self.grpc.add_secure_port(address, self.credentials.server_credentials())
        if self.port == 0:
            raise OSError(f"cannot listen on {address}: address in use or not available")
        if isinstance(self.counters, RedisCounterStore):
            await self.counters.probe()  # an unreachable Redis is logged now, not at first use
        await self.health.check_all(list(self.registry))
        await self.telemetry.start()
        await self.grpc.start()
        self.monitor.start()
        log.info(
            "serving %s on port %d with providers: %s",
            SERVICE_NAME,
            self.port,
            ", ".join(self.registry.names()),
        )
        return self.port

    async def stop(self, grace_s: float | None = None, delay_s: float = 0.0) -> None:
        """Drain: report NOT_SERVING, refuse new calls, let in-flight calls finish within the grace.

        Health first, so that probes and watching balancers stop sending before we refuse (for
        `delay_s`, the configured `drain_delay_s` on a signal, new calls are still served while they
        do); health watches then end (they would otherwise hold the stop for the whole grace); calls
        still running when the grace ends are cancelled, which closes their upstream requests.
        """
        grace = self.config.server.grace_period_s if grace_s is None else grace_s
        await self.monitor.stop()
        await self.health.enter_shutdown()
        self.drain.start()
        cut: asyncio.TimerHandle | None = None
        try:
            await self._serve_while_not_serving(delay_s)
            cut = asyncio.get_running_loop().call_later(grace, self._cut)
            # gRPC's own cancel of what is left comes after the cut, as a backstop only.
            await self.grpc.stop(grace + CUT_FLUSH_S)
        finally:
            if cut is None:  # stopped while still serving: gRPC is stopped all the same
                self._cut("stop cancelled")
                await self.grpc.stop(CUT_FLUSH_S)
            else:
                cut.cancel()
            for interceptor in self.auth:  # settlements still under way, before Redis closes
                await interceptor.quotas.drain()
                await interceptor.quotas.aclose()  # leases returned, charges added
            await self.router.aclose()
            await self.registry.aclose()
            await self.upstreams.aclose()
            await self.telemetry.stop()

    async def _serve_while_not_serving(self, delay: float) -> None:
        """Keep taking new calls for `delay` s (a second signal ends it early): balancers that watch
        health leave before grpc core stops taking calls, which ends those still undispatched then
        CANCELLED (grpc/grpc#41785), a status most clients do not retry."""
        if delay > 0:
            log.info("NOT_SERVING reported; still taking new calls for %g s", delay)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._hurry.wait()

    def _cut(self, why: str = "drain grace over") -> None:
        if cut := self.shutdown_cut.cut():
            log.warning("%s: %d call(s) still in flight end UNAVAILABLE (may be retried)", why, cut)

    async def serve_until_signalled(self) -> None:
        """Serve until SIGTERM or SIGINT, then drain gracefully; a second signal stops at once."""
        # What start-up built (modules, protobuf descriptors, the catalog, price tables) lives as
        # long as the process: frozen out of the cycle collector, whose older-generation passes
        # otherwise walk it again and again (a full pass over a fresh server: 13-76 ms on the
        # 2-core VM; a request that lands in one has its p99).
        gc.collect()
        gc.freeze()
        signals = asyncio.Queue[int]()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, signals.put_nowait, sig)
        try:
            received = await signals.get()
            grace = self.config.server.grace_period_s
            log.info("%s received: draining for up to %g s", signal.Signals(received).name, grace)
            drain = asyncio.create_task(self.stop(delay_s=self.config.server.drain_delay_s))
            again = asyncio.create_task(signals.get())
            await asyncio.wait((drain, again), return_when=asyncio.FIRST_COMPLETED)
            if not drain.done():
                log.warning("second signal: cancelling the calls still in flight")
                self._hurry.set()
                self._cut("second signal")
                await self.grpc.stop(CUT_FLUSH_S)
            again.cancel()
            await drain
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        log.info("stopped")
