"""Client authentication, per-key permissions and quotas, as a grpc.aio server interceptor.

Keys arrive as `authorization: Bearer <key>` or `x-api-key: <key>` (one key a call: two different
ones are refused) and are stored in the config as SHA-256 digests. A salted slow hash (scrypt, argon2) protects guessable passwords; gateway keys
are long random tokens (`hash-key` refuses short ones), for which a preimage search is hopeless
anyway, and a fast digest keeps authentication off the latency budget of every call. Digests are
compared with `hmac.compare_digest` against every configured key, so timing says nothing.

    [auth]
    open_health = true          # the standard health service needs no key (probes)
    open_reflection = false
    [[auth.keys]]
    name = "billing"
    sha256 = "<hex from `provider-gateway hash-key`>"
    models = ["mock/*"]         # provider/model patterns this key may use (default: all)
    providers = ["mock"]        # providers this key may use (default: all)
    requests_per_minute = 600   # rolling (GCRA), shared by replicas with [redis]
    tokens_per_minute = 200000
    max_concurrent_streams = 8
    team = "research"           # shares the [[auth.teams]] limits of that name
    usd_micros_per_day = 5000000  # budgets: usd_micros_per_minute|hour|day|month, tokens_per_hour|day|month

Budgets and the rolling quotas live in server/budgets.py, on routing/meters.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import hashlib
import hmac
import inspect
import logging
import re
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any

import grpc

from provider_gateway.config import ConfigError, GatewayConfig, Section
from provider_gateway.domain import Route
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.pricing import PriceTable
from provider_gateway.routing.admission import Admission, pending
from provider_gateway.routing.consumption import watching
from provider_gateway.routing.leases import LeasedMeters
from provider_gateway.routing.meters import Meters
from provider_gateway.routing.plans import Plan
from provider_gateway.routing.resolve import RouteResolver
from provider_gateway.routing.router import Router
from provider_gateway.routing.shared_state import RedisMeters, meters_for
from provider_gateway.server import key_scope, validate
from provider_gateway.server.budgets import (
    BUDGET_KEYS,
    TEAM_KEYS,
    Budgets,
    Limits,
    Outcome,
    Ticket,
    WorstCase,
)
from provider_gateway.server.health import ProvidersShown

log = logging.getLogger("provider_gateway.auth")

AUTH_KEYS = (
    "open_health",
    "open_reflection",
    "keys",
    "teams",
    "on_redis_down",
    "budget_lease_ms",
    "budget_lease_requests",
)
KEY_KEYS = (
    "name",
    "sha256",
    "models",
    "providers",
    "requests_per_minute",
    "tokens_per_minute",
    "max_concurrent_streams",
    "team",
    *BUDGET_KEYS,
)
MIN_KEY_LENGTH = 24
PROVIDER_SERVICE = "/provider_gateway.v1.ProviderService/"
HEALTH_SERVICE = "/grpc.health.v1.Health/"
REFLECTION_PREFIX = "/grpc.reflection."
STREAMING_METHODS = frozenset({"ChatStream", "CompleteStream"})
# Methods whose every provider call passes the admission gate (routing/retry.py, RetryLoop.call
# and .run): their check's round trip overlaps the call's own work before dispatch. The others
# (Embed, CountTokens, ListModels) wait for their check before they start.
GATED_METHODS = frozenset({"Chat", "ChatStream", "Complete", "CompleteStream"})
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: the configured key's name and what it may do."""

    name: str
    digest: bytes
    models: tuple[str, ...] = ()
    providers: tuple[str, ...] = ()
    limits: Limits = field(default_factory=Limits)  # rpm, tpm and budgets (server/budgets.py)
    max_concurrent_streams: int = 0
    team: str = ""

    def check_route(self, route: Route) -> None:
        # Behind AuthorizingRouter a provider the key may not use is refused before, NOT_FOUND.
        if self.providers and route.provider not in self.providers:
            raise GatewayError(
                ErrorKind.PERMISSION_DENIED, f"key {self.name!r} may not use provider {route.provider!r}"
            )
        target = f"{route.provider}/{route.model}"
        if self.models and not any(fnmatch.fnmatchcase(target, pattern) for pattern in self.models):
            raise GatewayError(ErrorKind.PERMISSION_DENIED, f"key {self.name!r} may not use model {target!r}")


# The caller of the current RPC; set by the interceptor around each ProviderService call.
current_principal: ContextVar[Principal | None] = ContextVar("current_principal", default=None)


def _check_route(route: Route) -> None:
    principal = current_principal.get()
    if principal is not None:
        principal.check_route(route)


class AuthorizingResolver(RouteResolver):
    """Shows a key only the providers it may use: in listings, in the `available:` of an unknown
    provider's error, and in every answer about a provider it names. To a key, a provider it may
    not use is no provider: named, it is NOT_FOUND in the words an unknown one gets; as a model's
    `provider/` prefix, it is part of the model id, as an unknown prefix is (`as_seen`)."""

    def __init__(self, providers: list[str], default: str, aliases: Mapping[str, str]) -> None:
        super().__init__(providers, default, aliases)
        self._usable_by: dict[str, frozenset[str]] = {}  # key name -> its providers, see `usable`

    def usable(self, key: Principal) -> frozenset[str]:
        """The configured providers `key` may use, worked out once per key: its allow-lists and the
        configuration are fixed for the process's life, and a `models` pattern's test costs about
        15 us a provider (key_scope.may_use_provider), too much for every call's plan."""
        found = self._usable_by.get(key.name)
        if found is None:
            found = frozenset(n for n in super().listed_providers() if key_scope.may_use_provider(key, n))
            self._usable_by[key.name] = found
        return found

    def listed_providers(self) -> list[str]:
        names = super().listed_providers()
        principal = current_principal.get()
        if principal is None:
            return names
        usable = self.usable(principal)
        return [name for name in names if name in usable]

    def check_provider(self, provider: str) -> str:
        principal = current_principal.get()
        if principal is None:
            return super().check_provider(provider)
        # Its `models` count too: a key of "mock/*" may call no model of "other", nor list them.
        if provider not in self.usable(principal):
            raise key_scope.no_such_provider(provider, self.listed_providers())
        return provider

    def as_seen(self, name: str, key: Principal) -> str | None:
        """`name` (a model, an alias or `provider/model`) as `key` sees the configuration: None when
        it reads the same; else the name that resolves, for everyone, as an unknown prefix would
        for it (the whole of `name` on the default provider), when its prefix names a provider the
        key may not use."""
        prefix, _, rest = name.partition("/")
        if not rest or prefix in self.usable(key) or prefix not in self._providers or name in self._aliases:
            return None
        return f"{self._default}/{name}"

    def is_alias(self, name: str) -> bool:
        return name in self._aliases

    @property
    def default_provider(self) -> str:
        return self._default


class AuthorizingRouter(Router):
    """Checks every deployment a request may use (primary, group members, fallbacks, aliases).

    A plan with any forbidden deployment is refused rather than trimmed, so that a key never
    silently gets a different model from the one its caller asked for.
    """

    def plan(self, model: str, provider: str = "", fallbacks: list[str] | tuple[str, ...] = ()) -> Plan:
        principal = current_principal.get()
        resolver = self.resolver
        # A key with no allow-list may use every provider: nothing to hide from it.
        if not (principal and (principal.providers or principal.models)) or not isinstance(
            resolver, AuthorizingResolver
        ):
            plan = super().plan(model, provider, fallbacks)
        else:
            # Names rewritten, not resolved per key: the planner keeps plans by the names it is given.
            if not provider and resolver.as_seen(model, principal) is not None:
                provider = resolver.default_provider  # the whole name, the default's model
            seen = [resolver.as_seen(f, principal) or f for f in fallbacks]
            plan = super().plan(model, provider, seen)
            usable = resolver.usable(principal)
            # A kept plan skips the resolver's checks, and aliases and groups name providers of the
            # configuration's choosing: to the key, a name with a member it may not use is none.
            for deployment in plan.deployments:
                if deployment.spec.provider not in usable:
                    raise self._refusal(resolver, usable, model, provider, seen)
        for deployment in plan.deployments:
            _check_route(Route(deployment.spec.provider, deployment.spec.model))
        return plan

    def _refusal(
        self,
        resolver: AuthorizingResolver,
        usable: frozenset[str],
        model: str,
        provider: str,
        fallbacks: list[str],
    ) -> GatewayError:
        """NOT_FOUND for a plan with a deployment on a provider outside `usable`. The first name
        that brings one in (each planned alone, on this error path only): a plain model's provider
        is the one the caller named or the default, refused as one not configured; an alias or a
        group is refused by its own name, never its member's provider, which the key may not know."""
        for name, named_provider in [(model, provider), *((f, "") for f in fallbacks)]:
            for deployment in super().plan(name, named_provider).deployments:
                if deployment.spec.provider in usable:
                    continue
                if named_provider or not (resolver.is_alias(name) or name in self.planner.routing.groups):
                    return key_scope.no_such_provider(deployment.spec.provider, resolver.listed_providers())
                return key_scope.no_such_model(name)
        return key_scope.no_such_model(model)

    def lists_model(self, provider: str, model: str) -> bool:
        """ListModels shows a key only the models it may use (aliases of those with them)."""
        principal = current_principal.get()
        return principal is None or key_scope.may_use_model(principal, provider, model)


@dataclass(frozen=True, slots=True)
class AuthConfig:
    keys: tuple[Principal, ...]
    open_health: bool = True
    open_reflection: bool = False
    teams: tuple[tuple[str, Limits], ...] = ()
    fail_closed: bool = False  # on_redis_down = "closed": refuse metered calls while Redis is away
    lease_s: float = 1.0  # budget_lease_ms: a budget lease's lifetime (routing/leases.py); 0: none
    lease_requests: int = 8  # budget_lease_requests: a lease's top-up, in the request's amounts

    @classmethod
    def from_config(cls, config: GatewayConfig) -> AuthConfig | None:
        """None when there is no [auth] table: the gateway is open (local development)."""
        if "auth" not in config.sections:
            return None
        section = config.section("auth")
        section.reject_unknown(AUTH_KEYS)
        entries = section.array("keys")
        if not entries:
            raise section.error("keys", "at least one [[auth.keys]] entry is required when [auth] is present")
        if not all(isinstance(e, dict) for e in entries):
            raise section.error(
                "keys", "each entry must be a table: write [[auth.keys]] blocks with name and sha256"
            )
        keys = tuple(_principal(Section(e, section.source, f"auth.keys[{i}]")) for i, e in enumerate(entries))
        names = Counter(k.name for k in keys)
        for name, count in names.items():
            if count > 1:
                raise section.error("keys", f"key name {name!r} is used {count} times")
        teams = _teams(section)
        for key in keys:
            if key.team and key.team not in teams:
                raise section.error(
                    "keys", f"key {key.name!r} names team {key.team!r}, which no [[auth.teams]] defines"
                )
        on_down = section.string("on_redis_down", "open")
        if on_down not in ("open", "closed"):
            raise section.error("on_redis_down", 'must be "open" (per-replica limits) or "closed" (refuse)')
        return cls(
            keys,
            section.flag("open_health", True),
            section.flag("open_reflection", False),
            tuple(teams.items()),
            on_down == "closed",
            section.integer("budget_lease_ms", 1000, minimum=0, maximum=60_000) / 1000,
            section.integer("budget_lease_requests", 8, minimum=1, maximum=1000),
        )

    def find(self, presented: str) -> Principal | None:
        digest = hashlib.sha256(presented.encode()).digest()
        found = None
        for key in self.keys:  # no early exit: the time taken does not depend on which key matched
            if hmac.compare_digest(digest, key.digest):
                found = key
        return found


def _teams(section: Section) -> dict[str, Limits]:
    teams: dict[str, Limits] = {}
    for i, entry in enumerate(section.array("teams")):
        if not isinstance(entry, dict):
            raise section.error(
                "teams", "each entry must be a table: write [[auth.teams]] blocks with a name"
            )
        team = Section(entry, section.source, f"auth.teams[{i}]")
        team.reject_unknown(TEAM_KEYS)
        name = team.string("name")
        if not name or name in teams:
            raise team.error("name", f"every team needs a name of its own ({name!r})")
        teams[name] = Limits.from_section(team)
    return teams


def _principal(section: Section) -> Principal:
    if not isinstance(section.raw(), dict):
        raise ConfigError(section.source, section.path, "must be a table")
    section.reject_unknown(KEY_KEYS)
    name = section.string("name")
    if not name:
        raise section.error("name", "every key needs a name (it appears in logs instead of the key)")
    digest = section.string("sha256").lower()
    if not _HEX64.match(digest):
        raise section.error("sha256", "must be 64 hex digits from `provider-gateway hash-key`")
    return Principal(
        name=name,
        digest=bytes.fromhex(digest),
        models=tuple(section.strings("models")),
        providers=tuple(section.strings("providers")),
        limits=Limits.from_section(section),
        max_concurrent_streams=section.integer("max_concurrent_streams", 0, minimum=0),
        team=section.string("team"),
    )


UNKNOWN_KEY = "missing or unknown API key: send 'authorization: Bearer <key>' or 'x-api-key: <key>'"
TWO_KEYS = (
    "the call presents different API keys (authorization and x-api-key, or one of them twice): "
    "send one key, in 'authorization: Bearer <key>' or 'x-api-key: <key>'"
)


class AmbiguousKey(Exception):
    """The call presents two different keys: which one it meant to act as is not for us to guess."""


def presented_key(metadata: Sequence[tuple[str, str | bytes]] | None) -> str | None:
    """The key the call presents, None without one; the same key sent twice is that key, two
    different ones raise AmbiguousKey (first-wins would let a proxy's key and a client's mix)."""
    found = None
    for name, value in metadata or ():
        if name == "x-api-key":
            key = _text(value).strip()
        elif name == "authorization":
            scheme, _, token = _text(value).partition(" ")
            key = token.strip() if scheme.lower() == "bearer" else ""
        else:
            continue
        if key and found is not None and key != found:
            raise AmbiguousKey
        found = key or found
    return found


def _text(value: str | bytes) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _reset(token: Token[Principal | None]) -> None:
    # A stream closed from another context (garbage collection) cannot reset; nothing leaks then,
    # because every RPC runs in its own task and context.
    with contextlib.suppress(ValueError):
        current_principal.reset(token)


class Quotas:
    """Per-key and per-team rates and budgets (shared meters) and concurrent streams (this process)."""

    def __init__(self, budgets: Budgets) -> None:
        self.budgets = budgets
        self._streams: Counter[str] = Counter()
        self._settling: set[asyncio.Task[None]] = set()
        self._soon = 0  # settlements scheduled for the loop's next turn, not yet run

    async def admit(self, principal: Principal, request: Any, method: str) -> Ticket:
        return await self.budgets.admit(principal.name, principal.limits, principal.team, request, method)

    def send(self, principal: Principal, request: Any, method: str) -> tuple[Ticket, Admission | None]:
        """The request's reservation and its check, sent now: the check's task runs at once until
        it waits for the meters' answer (eager start), so its round trip overlaps whatever the
        caller does next. None when the key has no limit this method meets, or its leases admitted it."""
        ticket, check = self.budgets.reserve(
            principal.name, principal.limits, principal.team, request, method
        )
        if check is None:
            return ticket, None
        return ticket, Admission(asyncio.Task(check, loop=asyncio.get_running_loop(), eager_start=True))

    async def settle(self, ticket: Ticket, outcome: Outcome) -> None:
        try:
            await self.budgets.settle(ticket, outcome)
        except Exception:  # the answer is already sent; a lost charge is logged, never raised
            log.exception("could not settle the spend of a request by %s", ticket.holders[0].name)

    def settle_later(self, ticket: Ticket, outcome: Outcome, admission: Admission | None = None) -> None:
        """Settle off the answer's path: at the loop's next turn, once the answer (or the status
        of a cancelled call) is handed to gRPC, from the leases in process when they take it, else
        in a task of its own. `drain` waits for both, so a charge is never lost, and a cancel of
        the call cannot cancel it. With the request's check (`admission`) still in flight (the
        call ended before its gate: a cancel, a failure before dispatch), the settlement waits for
        its answer: a reservation it made is refunded, a refusal reserved nothing."""
        if not ticket.budget_meters and not ticket.tpm_keys:  # nothing to settle (rpm only)
            if admission is not None:  # its failure seen (never "never retrieved"); kept till done
                admission.check.add_done_callback(_seen)
                if not admission.check.done():  # (drain waits for it)
                    self._settling.add(admission.check)
                    admission.check.add_done_callback(self._settling.discard)
            return
        if admission is None or admission.admitted():
            # At the loop's next turn: after the answer is handed to gRPC, off its latency.
            self._soon += 1
            asyncio.get_running_loop().call_soon(self._settle_soon, ticket, outcome)
        elif not admission.check.done():  # done: refused or failed, nothing was reserved
            self._keep(
                asyncio.get_running_loop().create_task(self._settle_after(admission.check, ticket, outcome))
            )

    def _settle_soon(self, ticket: Ticket, outcome: Outcome) -> None:
        """Settle from the leases in process (the common case with [redis]: no task, no round
        trip), else in a task of its own."""
        self._soon -= 1
        try:
            if self.budgets.settle_in_process(ticket, outcome):
                return
        except Exception:  # as `settle`: logged, never raised; not tried again (never charged twice)
            log.exception("could not settle the spend of a request by %s", ticket.holders[0].name)
            return
        self._keep(asyncio.get_running_loop().create_task(self.settle(ticket, outcome)))

    def _keep(self, task: asyncio.Task[None]) -> None:
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _settle_after(self, check: asyncio.Task[None], ticket: Ticket, outcome: Outcome) -> None:
        try:
            await check  # a task of its own, which nothing else cancels
        except Exception:
            return  # refused, or the meters failed: nothing was reserved
        await self.settle(ticket, outcome)

    async def aclose(self) -> None:
        """At shutdown, after `drain`: the meters' leases returned, their pending charges added."""
        await self.budgets.aclose()

    async def drain(self) -> None:
        """Wait for every settlement under way (before a spend report, and at shutdown). With
        asyncio.wait, not gather: a waiter cancelled (a client leaving GetSpend) cancels none."""
        while self._soon or self._settling:
            if self._settling:
                await asyncio.wait(set(self._settling))
            else:  # scheduled for the loop's next turn
                await asyncio.sleep(0)

    @contextlib.contextmanager
    def stream_slot(self, principal: Principal) -> Any:
        limit = principal.max_concurrent_streams
        if limit and self._streams[principal.name] >= limit:
            raise GatewayError(
                ErrorKind.RESOURCE_EXHAUSTED,
                f"key {principal.name!r} already has {limit} streams open (max_concurrent_streams)",
                retry_after=1.0,
            )
        self._streams[principal.name] += 1
        try:
            yield
        finally:
            self._streams[principal.name] -= 1


Behaviour = Callable[..., Any]
type Handler = grpc.RpcMethodHandler[Any, Any]


def _rebuild(handler: Handler, wrap: Callable[[Behaviour], Behaviour]) -> Handler:
    """The same handler with its behaviour wrapped, whatever its cardinality."""
    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(wrap(handler.unary_unary), **kwargs)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(wrap(handler.unary_stream), **kwargs)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(wrap(handler.stream_unary), **kwargs)
    assert handler.stream_stream is not None
    return grpc.stream_stream_rpc_method_handler(wrap(handler.stream_stream), **kwargs)


def _like(behaviour: Behaviour, before: Callable[[Any, Any], Awaitable[None]]) -> Behaviour:
    """Wrap `behaviour` keeping its kind (coroutine or async generator): grpc.aio decides by it."""
    if inspect.isasyncgenfunction(behaviour):

        async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
            await before(request, context)
            async with contextlib.aclosing(behaviour(request, context)) as items:
                async for item in items:
                    yield item

        return stream

    async def unary(request: Any, context: Any) -> Any:
        await before(request, context)
        return await behaviour(request, context)

    return unary


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, config: AuthConfig, budgets: Budgets | None = None) -> None:
        self.config = config
        self.quotas = Quotas(
            budgets or Budgets(meters_for(None, fail_closed=False), dict(config.teams), None)
        )

    def _is_open(self, method: str) -> bool:
        if method.startswith(HEALTH_SERVICE):
            return self.config.open_health
        if method.startswith(REFLECTION_PREFIX):
            return self.config.open_reflection
        return False

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or self._is_open(method):
            return handler
        try:
            principal = self._authenticate(handler_call_details.invocation_metadata)
        except AmbiguousKey:
            return _rebuild(handler, lambda b: _like(b, _unauthenticated(TWO_KEYS)))
        if principal is None:
            return _rebuild(handler, lambda b: _like(b, _unauthenticated(UNKNOWN_KEY)))
        if method.startswith(PROVIDER_SERVICE):
            return _rebuild(
                handler, lambda b: self._guarded(b, principal, method.removeprefix(PROVIDER_SERVICE))
            )
        return handler

    def _authenticate(self, metadata: Any) -> Principal | None:
        key = presented_key(metadata)
        return self.config.find(key) if key else None

    async def spend(self) -> Any:
        """GetSpend: the calling key's and its team's limits, spent and remaining."""
        principal = current_principal.get()
        assert principal is not None, "GetSpend runs behind the interceptor, which sets the caller"
        await self.quotas.drain()  # this process's own settlements are in the report
        return await self.quotas.budgets.report(principal.name, principal.limits, principal.team)

    def _guarded(self, behaviour: Behaviour, principal: Principal, name: str) -> Behaviour:
        from provider_gateway.server.servicer import abort  # the servicer owns status mapping

        quotas = self.quotas
        gated = name in GATED_METHODS

        async def admitting(request: Any, context: Any) -> tuple[Ticket, Admission | None]:
            """Send the check; wait for its answer now unless the call's gate will (see GATED_METHODS).
            Returns the check still in flight, to be passed to the gate and the settlement."""
            try:
                # Names bounded first (validate's limits): a budget's worst case plans and keeps
                # them, and an unbounded list of fallbacks would hold the loop while planned.
                validate.names(request)
                ticket, admission = quotas.send(principal, request, name)
                if admission is None or (gated and not admission.check.done()):
                    return ticket, admission
                try:
                    await admission.wait()
                except asyncio.CancelledError:  # the client left: refunded once the check answers
                    quotas.settle_later(ticket, Outcome(), admission)
                    raise
                return ticket, None
            except GatewayError as exc:  # a refusal's QuotaFailure goes with it (servicer.abort)
                await abort(context, exc)

        if inspect.isasyncgenfunction(behaviour):

            async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
                token = current_principal.set(principal)
                outcome = Outcome()
                try:
                    with contextlib.ExitStack() as slots:
                        ticket, admission = await admitting(request, context)
                        if admission is not None:
                            slots.callback(_reset_pending, pending.set(admission))
                        if name in STREAMING_METHODS:
                            try:
                                slots.enter_context(quotas.stream_slot(principal))
                            except GatewayError as exc:
                                quotas.settle_later(ticket, outcome, admission)  # nothing ran: all refunded
                                await abort(context, exc)
                        # Closed here, not by the garbage collector: a client cancel must run the
                        # inner stream's cleanup (upstream close, router slots) in this task.
                        try:
                            with watching(outcome.consumed.append):
                                async with contextlib.aclosing(behaviour(request, context)) as items:
                                    async for item in items:
                                        outcome.see(item)
                                        yield item
                        finally:  # a cancelled or cut stream is charged what it consumed too
                            quotas.settle_later(ticket, outcome, admission)
                finally:
                    _reset(token)

            return stream

        async def unary(request: Any, context: Any) -> Any:
            token = current_principal.set(principal)
            outcome = Outcome()
            try:
                ticket, admission = await admitting(request, context)
                gate = None
                if admission is not None:
                    gate = pending.set(admission)
                try:
                    with watching(outcome.consumed.append):
                        response = await behaviour(request, context)
                    outcome.see(response)
                    return response
                finally:
                    quotas.settle_later(ticket, outcome, admission)
                    if gate is not None:
                        _reset_pending(gate)
            finally:
                _reset(token)

        return unary


def _seen(check: asyncio.Task[None]) -> None:
    if not check.cancelled():
        check.exception()


def _reset_pending(token: Token[Admission | None]) -> None:
    with contextlib.suppress(ValueError):  # as _reset: a stream closed from another context
        pending.reset(token)


def _unauthenticated(message: str) -> Callable[[Any, Any], Awaitable[None]]:
    async def reject(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    return reject


def health_listing(config: AuthConfig) -> ProvidersShown:
    """Which `provider/<name>` entries Health.List names to a caller: those its key may use, and
    none without a valid key, even where `open_health` lets it in (its Check of any entry still
    answers: probes name what they check)."""

    def shown(metadata: Sequence[tuple[str, str | bytes]] | None) -> Callable[[str], bool]:
        try:
            key = presented_key(metadata)
        except AmbiguousKey:  # two different keys name no caller: shown as to one without a key
            key = None
        principal = config.find(key) if key else None
        if principal is None:
            return lambda provider: False
        return lambda provider: key_scope.may_use_provider(principal, provider)

    return shown


def interceptors(
    config: GatewayConfig,
    store: object = None,
    router: Router | None = None,
    prices: PriceTable | None = None,
) -> list[AuthInterceptor]:
    """The auth interceptor `[auth]` asks for (none without it), its meters beside `store`, and the
    worst case of requests priced from `router`'s plans (budgets need it)."""
    auth = AuthConfig.from_config(config)
    if auth is None:
        return []
    meters: Meters = meters_for(store, fail_closed=auth.fail_closed)
    if isinstance(meters, RedisMeters) and auth.lease_s > 0:
        meters = LeasedMeters(meters, lifetime_s=auth.lease_s, requests=auth.lease_requests)
    worst_case = WorstCase(router, prices or PriceTable.builtin()) if router is not None else None
    return [AuthInterceptor(auth, Budgets(meters, dict(auth.teams), worst_case))]
