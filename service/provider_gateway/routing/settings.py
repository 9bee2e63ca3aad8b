"""The `[routing]` defaults and the `[groups.<name>]` tables: model groups of weighted deployments.

    [routing]                       # defaults for every group and for plain `provider/model` routes
    strategy = "weighted"           # or "latency": power of two choices over EWMA(TTFT) x in-flight
    retries = 2                     # attempts beyond one per deployment
    retry_budget_percent = 20       # retries in flight below max(min_retry_concurrency = 3, 20% of
                                    # the requests in flight), per process (routing/retry_budget.py)
    [routing.breaker]               # consecutive_failures, failure_rate, window_s, min_calls, cooldown_s,
                                    # half_open_probes
    [routing.limiter]               # initial, minimum, maximum, backoff, low_headroom, decrease_interval_s

    [groups.smart]                  # a request for model "smart" goes to one of these
    strategy = "latency"            # any [routing] key may be overridden per group
    deployments = [
      { provider = "openai", model = "gpt-4o", weight = 3, rpm = 600 },
      { provider = "azure", model = "gpt-4o-prod", weight = 1 },
    ]

A deployment names a configured provider; `options = { api_key_env = "OPENAI_KEY_2" }` lays
other provider options (credentials, base_url, region...) over that provider's for this deployment
alone, and `name` tells apart two deployments of one provider and model. `rpm` is a per-deployment request budget shared by all replicas
when `[redis]` is configured.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from provider_gateway.config import GatewayConfig, ProviderConfig, Section
from provider_gateway.routing.breaker import BreakerSettings
from provider_gateway.routing.limiter import LimiterSettings

STRATEGIES = ("weighted", "latency")
ROUTING_KEYS = (
    "strategy",
    "retries",
    "max_retry_wait_s",
    "backoff_base_ms",
    "backoff_max_ms",
    "ttft_timeout_s",
    "idle_timeout_s",
    "timeout_s",
    "max_queue",
    "queue_timeout_s",
    "retry_budget_percent",
    "min_retry_concurrency",
    "breaker",
    "limiter",
)
GROUP_KEYS = (*ROUTING_KEYS, "deployments", "fallbacks")
DEPLOYMENT_KEYS = ("provider", "model", "weight", "rpm", "name", "options")


@dataclass(slots=True, frozen=True)
class RoutingSettings:
    strategy: str = "weighted"
    retries: int = 2
    max_retry_wait_s: float = 2.0  # longer waits fail fast with a retry delay instead of sleeping
    backoff_base_ms: float = 100.0
    backoff_max_ms: float = 5000.0
    ttft_timeout_s: float = 60.0
    idle_timeout_s: float = 30.0
    timeout_s: float = 600.0  # the deadline when the client sets none
    max_queue: int = 100
    queue_timeout_s: float = 5.0
    # Retries in flight may not reach max(floor, percent of the requests in flight): retry_budget.py.
    retry_budget_percent: float = 20.0  # Envoy's default; 100: no budget
    min_retry_concurrency: int = 3  # Envoy's default
    breaker: BreakerSettings = field(default_factory=BreakerSettings)
    limiter: LimiterSettings = field(default_factory=LimiterSettings)


@dataclass(slots=True, frozen=True)
class DeploymentSpec:
    provider: str
    model: str
    weight: float = 1.0
    rpm: int = 0  # 0: no request budget
    name: str = ""  # tells apart deployments of one provider and model (e.g. two keys)
    # The provider's config with this deployment's `options` laid over it (other credentials,
    # base_url, region...), or None to share the configured provider.
    provider_config: ProviderConfig | None = field(default=None, compare=False)

    def key(self, group: str) -> str:
        return f"{group}/{self.name or f'{self.provider}/{self.model}'}"


@dataclass(slots=True, frozen=True)
class GroupSpec:
    name: str
    deployments: tuple[DeploymentSpec, ...]
    settings: RoutingSettings
    fallbacks: tuple[str, ...] = ()


@dataclass(slots=True)
class RoutingConfig:
    defaults: RoutingSettings = field(default_factory=RoutingSettings)
    groups: dict[str, GroupSpec] = field(default_factory=dict)


# (minimum, maximum) where 0 or unbounded would break the feature: a breaker that opens on no
# failure or never lets a probe through, a "fraction" above 1.
BOUNDS: dict[str, tuple[float, float | None]] = {
    "consecutive_failures": (1, None),
    "half_open_probes": (1, None),
    "failure_rate": (0, 1),
    "backoff": (0, 1),
    "low_headroom": (0, 1),
    "retry_budget_percent": (0, 100),
}
# Limits every request is timed against: 0 would fail each one DEADLINE_EXCEEDED at once rather
# than mean "no limit". The smallest accepted is the HTTP layer's (http/client.py).
TIME_LIMITS = ("ttft_timeout_s", "idle_timeout_s", "timeout_s")
MIN_TIME_LIMIT_S = 0.001


def _numbers(section: Section, base: Any, allowed: tuple[str, ...]) -> dict[str, Any]:
    """Override the fields of a settings dataclass that `section` names, with type and range checks."""
    section.reject_unknown(allowed)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(base):
        if f.name not in section or f.name in ("breaker", "limiter", "strategy"):
            continue
        current = getattr(base, f.name)
        if f.name in TIME_LIMITS:
            values[f.name] = _time_limit(section, f.name, current)
            continue
        low, high = BOUNDS.get(f.name, (0, None))
        if isinstance(current, int) and not isinstance(current, bool):
            top = None if high is None else int(high)
            values[f.name] = section.integer(f.name, current, minimum=int(low), maximum=top)
        else:
            values[f.name] = section.number(f.name, current, minimum=low, maximum=high)
    return values


def _time_limit(section: Section, name: str, default: float) -> float:
    value = section.number(name, default)
    if value < MIN_TIME_LIMIT_S:
        raise section.error(
            name,
            f"must be at least {MIN_TIME_LIMIT_S} s, got {value:g}: every request would fail "
            "DEADLINE_EXCEEDED at once (there is no 'no limit' value; set a long one, e.g. 3600)",
        )
    return value


def parse_settings(
    section: Section, base: RoutingSettings, allowed: tuple[str, ...] = ROUTING_KEYS
) -> RoutingSettings:
    values = _numbers(section, base, allowed)
    values["strategy"] = section.choice("strategy", STRATEGIES, base.strategy)
    breaker = section.table("breaker")
    values["breaker"] = dataclasses.replace(
        base.breaker,
        **_numbers(breaker, base.breaker, tuple(f.name for f in dataclasses.fields(BreakerSettings))),
    )
    limiter = section.table("limiter")
    values["limiter"] = dataclasses.replace(
        base.limiter,
        **_numbers(limiter, base.limiter, tuple(f.name for f in dataclasses.fields(LimiterSettings))),
    )
    bounds = values["limiter"]
    if bounds.minimum < 1:
        raise limiter.error("minimum", "must be at least 1")
    if not bounds.minimum <= bounds.initial <= bounds.maximum:
        raise limiter.error(
            "initial",
            f"must lie between minimum and maximum (minimum {bounds.minimum}, "
            f"initial {bounds.initial}, maximum {bounds.maximum})",
        )
    return dataclasses.replace(base, **values)


def parse_routing(config: GatewayConfig) -> RoutingConfig:
    defaults = parse_settings(config.section("routing"), RoutingSettings())
    provider_configs = {p.name: p for p in config.providers}
    providers = list(provider_configs)
    groups_section = config.section("groups")
    groups: dict[str, GroupSpec] = {}
    for name in groups_section:
        table = groups_section.table(name)
        if name in config.aliases:  # a request for `name` would silently reach only one of them
            raise groups_section.error(name, f"{name!r} is also an alias in [aliases]; rename one of them")
        if name in providers or name.split("/", 1)[0] in providers:
            # It would hide that provider's models, and its deployments' keys ("<group>/...") could
            # be a plain route's ("<provider>/<model>"), sharing breaker and ejections with it.
            raise groups_section.error(
                name, f"a group may not be a provider's name or start with one ({name!r}); rename the group"
            )
        settings = parse_settings(table, defaults, GROUP_KEYS)
        deployments: list[DeploymentSpec] = []
        for i, raw in enumerate(table.array("deployments")):
            where = f"deployments[{i}]"
            if not isinstance(raw, dict):
                raise table.error(where, 'must be a table like { provider = "mock", model = "echo" }')
            entry = Section(raw, table.source, table.key(where))
            entry.reject_unknown(DEPLOYMENT_KEYS)
            provider = entry.string("provider")
            if provider not in providers:
                raise entry.error(
                    "provider", f"{provider!r} is not configured (have: {', '.join(providers)})"
                )
            model = entry.string("model")
            if not model:
                raise entry.error("model", "is required")
            weight = entry.number("weight", 1.0, minimum=0)
            overrides = entry.table("options")
            provider_config = None
            if overrides.raw():
                base = provider_configs[provider]
                merged = Section({**base.options.raw(), **overrides.raw()}, overrides.source, overrides.path)
                provider_config = ProviderConfig(provider, base.kind, merged)
            spec = DeploymentSpec(
                provider,
                model,
                weight,
                entry.integer("rpm", 0, minimum=0),
                entry.string("name"),
                provider_config,
            )
            if any(d.key(name) == spec.key(name) for d in deployments):
                raise entry.error(
                    "name", f"{spec.key(name)!r} appears twice; give each deployment a distinct name"
                )
            deployments.append(spec)
        if not deployments:
            raise table.error("deployments", "must list at least one { provider, model }")
        if not any(d.weight > 0 for d in deployments):
            raise table.error("deployments", "at least one deployment needs a weight above 0")
        fallbacks = tuple(table.strings("fallbacks"))
        if name in fallbacks:
            raise table.error("fallbacks", f"names the group {name!r} itself")
        groups[name] = GroupSpec(name, tuple(deployments), settings, fallbacks)
    return RoutingConfig(defaults, groups)
