"""Per-key and per-team limits: rpm/tpm (rolling, GCRA) and budgets in money and tokens (calendar).

A request is checked before dispatch against its worst case: the prompt (about four bytes a token)
plus its max_tokens (else the catalog's largest output for the model), priced with the price table
at the dearest deployment the plan may use (at its priority prices, where the request asks for the
priority tier in provider_options and the row has them). Every limit of the key and its team is checked and
reserved in one atomic call (`routing/meters.py`). When the request ends, however it ends, the
reservation is settled with what it really consumed: the Finish's cost, or the consumption records
of attempts cut short (cancelled, past the deadline, failed), so the difference is refunded.

A key and its team keep their meters under one hash tag (`{team:<name>}`, or `{key:<name>}` for a
key without a team), so one Lua script touches one Redis Cluster slot.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from google.protobuf.message import Message
from google.rpc import error_details_pb2

from provider_gateway.config import Section
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.pricing import PriceTable
from provider_gateway.routing.consumption import Consumed
from provider_gateway.routing.leases import LeasedMeters
from provider_gateway.routing.meters import (
    WINDOWS,
    Batch,
    Meter,
    MeterKind,
    Meters,
    Reading,
    calendar_window_end,
)
from provider_gateway.routing.router import Router
from provider_gateway.routing.shared_state import RedisMeters
from provider_gateway.v1 import provider_service_pb2 as pb

type Metric = Literal["usd_micros", "tokens"]
# Tokens per minute is the rolling quota (tokens_per_minute); budgets count calendar windows.
BUDGET_KEYS = (
    *(f"usd_micros_per_{window}" for window in WINDOWS),
    *(f"tokens_per_{window}" for window in WINDOWS[1:]),
)
RATE_KEYS = ("requests_per_minute", "tokens_per_minute")
TEAM_KEYS = ("name", *RATE_KEYS, *BUDGET_KEYS)
# What each method costs: requests reach a provider (rpm); these make or read tokens (tpm, budgets).
REQUEST_METERED = frozenset(
    {"Chat", "ChatStream", "Complete", "CompleteStream", "Embed", "CountTokens", "ListModels"}
)
TOKEN_METERED = frozenset({"Chat", "ChatStream", "Complete", "CompleteStream", "Embed"})
_WINDOW_PB = {
    "minute": pb.SPEND_WINDOW_MINUTE,
    "hour": pb.SPEND_WINDOW_HOUR,
    "day": pb.SPEND_WINDOW_DAY,
    "month": pb.SPEND_WINDOW_MONTH,
}


@dataclass(frozen=True, slots=True)
class Budget:
    metric: Metric
    window: str  # minute, hour, day or month (calendar, UTC)
    limit: int


@dataclass(frozen=True, slots=True)
class Limits:
    """What one key, or one team together, may spend; 0 or absent means no limit."""

    requests_per_minute: int = 0
    tokens_per_minute: int = 0
    budgets: tuple[Budget, ...] = ()

    @classmethod
    def from_section(cls, section: Section) -> Limits:
        budgets = []
        for name in BUDGET_KEYS:
            if limit := section.integer(name, 0, minimum=0):
                metric, _, window = name.partition("_per_")
                budgets.append(Budget("usd_micros" if metric == "usd_micros" else "tokens", window, limit))
        return cls(
            section.integer("requests_per_minute", 0, minimum=0),
            section.integer("tokens_per_minute", 0, minimum=0),
            tuple(budgets),
        )


@dataclass(frozen=True, slots=True)
class Holder:
    """A key or a team, with its limits, as one request sees it."""

    scope: Literal["key", "team"]
    name: str
    limits: Limits


def _holders(key: str, limits: Limits, team: Holder | None) -> list[Holder]:
    return [Holder("key", key, limits), *([team] if team else [])]


@dataclass(frozen=True, slots=True)
class Label:
    """Which limit a meter stands for, to say so in a refusal and in GetSpend."""

    holder: Holder
    metric: Literal["requests", "tokens", "usd_micros"]
    window: str  # "rolling_minute" or a calendar window
    limit: int

    def violation(self) -> error_details_pb2.QuotaFailure.Violation:
        per = "per rolling minute" if self.window == "rolling_minute" else f"per calendar {self.window} (UTC)"
        return error_details_pb2.QuotaFailure.Violation(
            subject=f"{self.holder.scope}:{self.holder.name}",
            description=f"{self.metric} {per}: limit {self.limit}",
        )


@dataclass(slots=True)
class Ticket:
    """A request's reservation, settled when it ends."""

    holders: list[Holder]
    budget_meters: list[tuple[Meter, Label]] = field(default_factory=list)
    tpm_keys: list[tuple[str, int]] = field(default_factory=list)  # (meter key, limit) per holder
    reserved_prompt: int = 0  # what tpm reserved: the prompt's estimate (bytes / 4)
    reserved_tokens: int = 0
    reserved_micros: int = 0


@dataclass(slots=True)
class Outcome:
    """What a request really consumed, gathered from what it sent and the consumption records."""

    tokens: int = 0  # input and output of every usage the client saw
    output_tokens: int = 0
    finish_cost: Any = None  # the proto Cost of the Finish, when one was sent
    consumed: list[Consumed] = field(default_factory=list)
    usage_seen: bool = False  # a `usage` field or event: a stream's finish then repeats it

    def see(self, message: Any) -> None:
        batch = getattr(message, "batch", None)
        if batch is not None and batch.events:  # events sent together (`batch_events`): each counts
            for event in batch.events:
                self.see(event)
            return
        if hasattr(message, "usage") and message.HasField("usage"):
            self._count(message.usage)
            self.usage_seen = True
        finish = getattr(message, "finish", None)
        if finish is not None:
            if finish.HasField("cost"):
                self.finish_cost = finish.cost
            # A stream asked for `usage_in_finish` sends its usage there only.
            if not self.usage_seen and finish.HasField("usage"):
                self._count(finish.usage)
                self.usage_seen = True

    def _count(self, usage: Any) -> None:
        self.tokens += int(usage.input_tokens) + int(usage.output_tokens)
        self.output_tokens += int(usage.output_tokens)

    def all_tokens(self) -> int:
        return self.tokens + sum(c.usage.input_tokens + c.usage.output_tokens for c in self.consumed)

    def all_output(self) -> int:
        return self.output_tokens + sum(c.usage.output_tokens for c in self.consumed)

    def micros(self) -> int | None:
        """The request's cost; None when unknown (the reservation then stands)."""
        if self.finish_cost is not None:
            return int(self.finish_cost.amount_micros) if self.finish_cost.known else None
        if all(c.cost.known for c in self.consumed) and (self.consumed or not self.tokens):
            return sum(c.cost.amount_micros for c in self.consumed)  # cut short, or never dispatched
        return None


class QuotaExceeded(GatewayError):
    """RESOURCE_EXHAUSTED naming the limit (google.rpc.QuotaFailure) and the wait (RetryInfo)."""

    def __init__(self, label: Label, wait_s: float) -> None:
        super().__init__(
            ErrorKind.RESOURCE_EXHAUSTED,
            f"{label.holder.scope} {label.holder.name!r} is over its {_describe(label)}",
            retry_after=wait_s,
        )
        self.details: tuple[Message, ...] = (error_details_pb2.QuotaFailure(violations=[label.violation()]),)


def _describe(label: Label) -> str:
    if label.window == "rolling_minute":
        return f"{label.metric.replace('_', '-')}-per-minute quota"
    return f"{label.metric} budget per {label.window}"


def estimate_tokens(request: Any) -> int:
    """Input tokens before the call: about four bytes a token, enough for a quota."""
    size = request.ByteSize() if hasattr(request, "ByteSize") else 0
    return max(1, size // 4)


@dataclass(frozen=True, slots=True)
class RateCard:
    """What a deployment's worst case needs: the catalog's largest output (0 when unknown) and,
    when the model has a price, per tier the dearest micro-USD an input and an output token may
    cost, and the per-request price."""

    provider: str  # the deployment's provider and model, as a refusal names them
    kind: str
    model: str
    max_output: int
    priced: bool
    dearest: tuple[float, float] = (0.0, 0.0)  # (input, output) below the long-context threshold
    long_context: tuple[int, tuple[float, float]] | None = None  # (threshold, dearest) past it
    per_call_micros: float = 0.0
    # A service tier's dearest, below and past the threshold (None: that tier's are unknown there).
    tiers: Mapping[str, tuple[tuple[float, float], tuple[float, float] | None]] = field(default_factory=dict)

    def micros(self, prompt: int, output: int, tier: str = "") -> int:
        """The most a call may cost; `tier`: the service tier it asks for, priced where known
        (never below the standard tier's: the provider may serve it on either)."""
        long = self.long_context is not None and prompt > self.long_context[0]
        input_price, output_price = self.long_context[1] if long and self.long_context else self.dearest
        if tier and (prices := self.tiers.get(tier)) and (asked := prices[1] if long else prices[0]):
            input_price, output_price = max(input_price, asked[0]), max(output_price, asked[1])
        return math.ceil(prompt * input_price + output * output_price + self.per_call_micros)


# The words of provider_options that ask for a pricier tier: OpenAI's `service_tier` ("fast" is
# served as priority), Bedrock's `serviceTier: {"type": ...}`, the Gemini API's `serviceTier`.
PRICIER_TIERS = {"priority": "priority", "fast": "priority", "service_tier_priority": "priority"}


def asked_tier(request: Any) -> str:
    """The pricier service tier a request asks for in its provider_options ("" for none), read
    from the Struct as it came: the worst case then prices it."""
    options = getattr(request, "provider_options", None)
    if options is None or not options.fields:
        return ""
    fields = options.fields
    value = fields.get("service_tier")
    if value is None and "serviceTier" in fields:
        value = fields["serviceTier"]
        if value.WhichOneof("kind") == "struct_value":
            inner = value.struct_value.fields
            value = inner.get("type")
    word = value.string_value if value is not None else ""
    return PRICIER_TIERS.get(word.lower(), "")


def _dearest(tier: Any) -> tuple[float, float]:
    # Every prompt token at the dearest of input and cache writes, every output token at the
    # dearer of output and reasoning.
    return (
        max(tier.input, tier.cache_write or 0.0, tier.cache_write_1h or 0.0),
        max(tier.output, tier.reasoning or 0.0),
    )


class WorstCase:
    """The most a request may consume: its prompt and max_tokens, at the dearest deployment it may use."""

    PLANS_MAX = 4096  # callers x the models they name (clients choose names): a bound all the same
    # And in characters of names: the interceptor checks them first (validate.names, 256 characters,
    # 16 fallbacks), but 4096 plans of 17 such names would still hold 18 MB.
    PLANS_MAX_CHARS = 1 << 20

    def __init__(self, router: Router, prices: PriceTable) -> None:
        self.router = router
        self.prices = prices
        self._plans: dict[tuple[str, str, str, tuple[str, ...]], tuple[RateCard, ...]] = {}
        self._plans_chars = 0  # the names' characters in `_plans`

    def cards(
        self, caller: str, model: str, provider: str, fallbacks: tuple[str, ...]
    ) -> tuple[RateCard, ...]:
        """The rate cards of every deployment a request may use. Planned once per caller and
        names, then kept: the configuration, so the plan's deployments, is fixed for the process's
        life, and the router refuses (raises) what the caller may not use before anything is kept."""
        found = self._plans.get((caller, model, provider, fallbacks))
        if found is None:
            plan = self.router.plan(model, provider, fallbacks)
            found = tuple(
                self._card(d.spec.provider, d.provider.kind, d.spec.model) for d in plan.deployments
            )
            chars = len(caller) + len(model) + len(provider) + sum(map(len, fallbacks))
            if len(self._plans) >= self.PLANS_MAX or self._plans_chars + chars > self.PLANS_MAX_CHARS:
                self._plans.clear()
                self._plans_chars = 0
            self._plans[caller, model, provider, fallbacks] = found
            self._plans_chars += chars
        return found

    def _card(self, provider: str, kind: str, model: str) -> RateCard:
        entry = self.router.catalog.entry(kind, model)
        max_output = entry.max_output if entry else 0
        price = self.prices.price(kind, model)
        if price is None:
            return RateCard(provider, kind, model, max_output, priced=False)
        long = price.long_context
        return RateCard(
            provider,
            kind,
            model,
            max_output,
            priced=True,
            dearest=_dearest(price.tokens),
            long_context=None if long is None else (price.long_context_tokens, _dearest(long)),
            per_call_micros=price.per_request * 1_000_000,
            tiers={
                name: (
                    _dearest(tier.tokens),
                    None if tier.long_context is None else _dearest(tier.long_context),
                )
                for name, tier in price.service_tiers.items()
            },
        )

    def of(
        self, request: Any, method: str, *, money: bool, prompt: int = 0, caller: str = ""
    ) -> tuple[int, int]:
        """(tokens, micro-USD); refuses what has no worst case: no price, or no output limit.
        `prompt`: the request's estimated input tokens, when already counted; `caller`: the key."""
        prompt = prompt or estimate_tokens(request)
        named = getattr(request, "fallbacks", None)
        fallbacks = tuple(named) if named else ()
        asked = int(request.max_tokens) if method != "Embed" and request.HasField("max_tokens") else 0
        most_output = most_micros = 0  # the dearest deployment's, over the plan (no lists: per request)
        tier = asked_tier(request) if money else ""
        for card in self.cards(caller, request.model, request.provider, fallbacks):
            output = 0
            if method != "Embed":
                output = asked or card.max_output
                if not output:
                    raise GatewayError(
                        ErrorKind.INVALID_ARGUMENT,
                        f"set max_tokens: this key has a budget, and the largest output of "
                        f"{card.provider}/{card.model} is unknown, so its worst case is too",
                    )
            most_output = max(most_output, output)
            if money:
                if not card.priced:
                    raise GatewayError(
                        ErrorKind.FAILED_PRECONDITION,
                        f"{card.provider}/{card.model} has no price, and this key has a money "
                        f'budget: add a [prices.{card.kind}."{card.model}"] row to the configuration',
                    )
                most_micros = max(most_micros, card.micros(prompt, output, tier))
        return prompt + most_output, most_micros


@dataclass(frozen=True, slots=True)
class Slot:
    """One meter of a key or its team, all but what a request adds to it."""

    key: str  # a calendar meter's key without its window's name
    kind: MeterKind
    limit: int
    label: Label


@dataclass(frozen=True, slots=True)
class Shape:
    """The meters one method of one key (and its team) goes through, built once and kept: a
    check then only prices the request and fills in the amounts of the meters of its second."""

    limits: Limits  # the key's own, to see a changed configuration
    holders: list[Holder]
    rates: list[Slot]
    budgets: list[Slot]
    tpm_keys: list[tuple[str, int]]
    money: bool  # a money budget among them: the worst case needs a price
    labels: tuple[Label, ...]  # the checked meters', in order: rates, then budgets (when checked)
    # What each checked meter adds, as an index into (1, prompt, worst-case tokens, micro-USD),
    # and for each of those four the smallest limit it meets (a larger amount could never pass).
    sources: tuple[int, ...]
    ceilings: tuple[int, int, int, int]
    # The checked meters with their calendar windows named, for one second: [that second, Batch,
    # the budgets' (meter, label) pairs].
    second: list[Any] = field(default_factory=lambda: [-1, None, []])


class Budgets:
    """Checks, reserves and settles the limits of keys and teams on shared meters."""

    SHAPES_MAX = 4096  # keys x methods; a bound all the same

    def __init__(
        self,
        meters: Meters,
        teams: dict[str, Limits],
        worst_case: WorstCase | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.meters = meters
        self.teams = teams
        self.worst_case = worst_case
        self.clock = clock
        self._shapes: dict[tuple[str, str, str], Shape] = {}

    def shape(self, key: str, limits: Limits, team: str, method: str) -> Shape:
        found = self._shapes.get((key, team, method))
        if found is None or found.limits is not limits:
            found = self._build_shape(key, limits, team, method)
            if len(self._shapes) >= self.SHAPES_MAX:
                self._shapes.clear()
            self._shapes[key, team, method] = found
        return found

    def _build_shape(self, key: str, limits: Limits, team: str, method: str) -> Shape:
        holders = _holders(key, limits, Holder("team", team, self.teams[team]) if team else None)
        tag = f"team:{team}" if team else f"key:{key}"
        rates, budgets = [], []
        for h in holders:
            base = f"{{{tag}}}:{h.scope}:{h.name}"
            rpm, tpm = h.limits.requests_per_minute, h.limits.tokens_per_minute
            if rpm and method in REQUEST_METERED:
                rates.append(Slot(f"{base}:rpm", "rate", rpm, Label(h, "requests", "rolling_minute", rpm)))
            if tpm and method in TOKEN_METERED:
                rates.append(Slot(f"{base}:tpm", "rate", tpm, Label(h, "tokens", "rolling_minute", tpm)))
        for h in holders:
            base = f"{{{tag}}}:{h.scope}:{h.name}"
            for b in h.limits.budgets if method in TOKEN_METERED else ():
                label = Label(h, b.metric, b.window, b.limit)
                budgets.append(Slot(f"{base}:{b.metric}", "window", b.limit, label))
        checked = rates + (budgets if self.worst_case is not None else [])
        sources = [_SOURCES[s.kind, s.label.metric] for s in checked]
        ceilings = [_NEVER] * 4
        for slot, source in zip(checked, sources, strict=True):
            ceilings[source] = min(ceilings[source], slot.limit)
        return Shape(
            limits,
            holders,
            rates,
            budgets,
            [(s.key, s.limit) for s in rates if s.label.metric == "tokens"],
            any(s.label.metric == "usd_micros" for s in budgets),
            tuple(s.label for s in checked),
            tuple(sources),
            (ceilings[0], ceilings[1], ceilings[2], ceilings[3]),
        )

    def _of_second(self, shape: Shape) -> tuple[Batch, list[tuple[Meter, Label]]]:
        """The shape's checked meters (amounts 0) with their windows named, made once a second."""
        now = self.clock()
        second, batch, budgets = shape.second
        if second != math.floor(now):
            rates = [Meter(s.key, "rate", 0, s.limit, 60) for s in shape.rates]
            budgets = [(self._named(s, now), s.label) for s in shape.budgets]
            checked = rates + ([m for m, _ in budgets] if self.worst_case is not None else [])
            batch = Batch(tuple(checked), shape.sources)
            shape.second[:] = [math.floor(now), batch, budgets]
        return batch, budgets

    @staticmethod
    def _named(slot: Slot, now: float) -> Meter:
        name, ends = calendar_window_end(slot.label.window, now)
        return Meter(f"{slot.key}:{name}", "window", 0, slot.limit, ends - now, ends)

    async def aclose(self) -> None:
        """Return what the meters hold for this process (leases) and add what they owe Redis, at
        shutdown."""
        if isinstance(self.meters, (LeasedMeters, RedisMeters)):
            await self.meters.aclose()

    async def admit(self, key: str, limits: Limits, team: str, request: Any, method: str) -> Ticket:
        """Check and reserve, waiting for the answer (`reserve` without the overlap)."""
        ticket, check = self.reserve(key, limits, team, request, method)
        if check is not None:
            await check
        return ticket

    def reserve(
        self, key: str, limits: Limits, team: str, request: Any, method: str
    ) -> tuple[Ticket, Coroutine[Any, Any, None] | None]:
        """The request's reservation and, when it has limits, the check that makes it (one atomic
        call to the meters, which raises QuotaExceeded when a limit has no room). What needs no
        round trip (no worst case, a request larger than a limit) raises here, before any call;
        a request this process's leases cover is admitted here (no check: None)."""
        shape = self.shape(key, limits, team, method)
        ticket = Ticket(shape.holders)
        if not shape.labels:
            return ticket, None
        prompt = estimate_tokens(request)
        ticket.tpm_keys = shape.tpm_keys
        ticket.reserved_prompt = prompt
        batch, budgets = self._of_second(shape)
        tokens = micros = 0
        if shape.budgets and self.worst_case is not None:
            tokens, micros = self.worst_case.of(request, method, money=shape.money, prompt=prompt, caller=key)
            ticket.reserved_tokens, ticket.reserved_micros = tokens, micros
            ticket.budget_meters = budgets
        values = (1, prompt, tokens, micros)
        most = shape.ceilings
        if prompt > most[1] or tokens > most[2] or micros > most[3] or most[0] < 1:
            _never_fits(batch, values, shape.labels)
        if isinstance(self.meters, LeasedMeters) and self.meters.take(batch, values):
            return ticket, None  # admitted from this process's leases: nothing to wait for
        return ticket, self._check(batch, values, shape.labels)

    async def _check(self, batch: Batch, values: tuple[int, ...], labels: tuple[Label, ...]) -> None:
        refusal = await self.meters.meter_batch(batch, values, check=True)
        if refusal is not None:
            raise QuotaExceeded(labels[refusal.meter], refusal.wait_s)

    async def settle(self, ticket: Ticket, outcome: Outcome) -> None:
        """Charge what the request really consumed; refund the rest of its reservation."""
        if changes := self._changes(ticket, outcome):
            await self.meters.meter(changes, check=False)

    def settle_in_process(self, ticket: Ticket, outcome: Outcome) -> bool:
        """`settle` done here and now when the meters' leases take all of it (no task, no round
        trip: routing/leases.py); False when nothing was done and `settle` must run."""
        changes = self._changes(ticket, outcome)
        if not changes:
            return True
        return isinstance(self.meters, LeasedMeters) and self.meters.settle_in_process(changes)

    @staticmethod
    def _changes(ticket: Ticket, outcome: Outcome) -> list[Meter]:
        """What settling changes: for tpm the output tokens and the input the provider reported
        beyond the prompt's estimate (an image or a file by URL, a cached document: never a refund,
        the estimate stays charged), each budget's real spend minus its reservation (0 changes
        left out)."""
        rate = 0
        if ticket.tpm_keys:
            output = outcome.all_output()
            rate = output + max(outcome.all_tokens() - output - ticket.reserved_prompt, 0)
        changes = [Meter(key, "rate", rate, limit, 60) for key, limit in ticket.tpm_keys] if rate else []
        if ticket.budget_meters:
            micros = outcome.micros()
            money = 0 if micros is None else micros - ticket.reserved_micros
            tokens = outcome.all_tokens() - ticket.reserved_tokens
            for m, label in ticket.budget_meters:  # their amounts are 0: the reservation is the ticket's
                delta = money if label.metric == "usd_micros" else tokens
                if delta:  # a Meter made whole: cheaper than _replace, on every request
                    changes.append(Meter(m.key, m.kind, delta, m.limit, m.window_s, m.ends_at))
        return changes

    async def report(self, key: str, limits: Limits, team: str) -> pb.GetSpendResponse:
        shape = self.shape(key, limits, team, "Chat")  # Chat goes through every kind of meter
        labelled = [(Meter(s.key, "rate", 0, s.limit, 60), s.label) for s in shape.rates]
        labelled += self._of_second(shape)[1]
        states = await self.meters.read([m for m, _ in labelled]) if labelled else []
        return pb.GetSpendResponse(
            key=key,
            team=team,
            limits=[_spend_limit(label, state) for (_, label), state in zip(labelled, states, strict=True)],
        )


def _never_fits(batch: Batch, values: tuple[int, ...], labels: tuple[Label, ...]) -> None:
    """Refuse a request larger than a limit: it could never pass, so "retry later" would mislead."""
    for meter, amount, label in zip(batch.meters, batch.amounts(values), labels, strict=True):
        if amount > meter.limit:
            raise GatewayError(
                ErrorKind.RESOURCE_EXHAUSTED,
                f"this request needs {amount} against a {_describe(label)} of {meter.limit} "
                f"({label.holder.scope} {label.holder.name!r}): lower max_tokens or the prompt",
            )


# Which of (1, prompt, worst-case tokens, micro-USD) a meter adds, by its kind and metric: a rate
# of tokens adds the prompt (settled later), a budget of tokens the worst case.
_SOURCES = {
    ("rate", "requests"): 0,
    ("rate", "tokens"): 1,
    ("window", "tokens"): 2,
    ("window", "usd_micros"): 3,
}
_NEVER = 2**63  # the ceiling of what no meter adds


def _spend_limit(label: Label, state: Reading) -> pb.SpendLimit:
    return pb.SpendLimit(
        scope=pb.SPEND_SCOPE_KEY if label.holder.scope == "key" else pb.SPEND_SCOPE_TEAM,
        name=label.holder.name,
        metric={
            "requests": pb.SPEND_METRIC_REQUESTS,
            "tokens": pb.SPEND_METRIC_TOKENS,
            "usd_micros": pb.SPEND_METRIC_USD_MICROS,
        }[label.metric],
        window=_WINDOW_PB.get(label.window, pb.SPEND_WINDOW_ROLLING_MINUTE),
        limit=label.limit,
        spent=state.used,
        remaining=max(label.limit - state.used, 0),
        resets_in_ms=math.ceil(state.resets_in_s * 1000),
    )
