"""Configuration: one TOML file plus environment variables for secrets.

No file means the embedded mock provider alone. Every mistake is reported at start-up as
`<file>: <dotted.key>: <what is wrong>`, so a person can fix it without reading code.
"""

from __future__ import annotations

import difflib
import math
import os
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

T = TypeVar("T")


def register_secret(secret: str) -> str:
    """Every secret read is redacted from logs, spans and errors (observability's last line of defence)."""
    from provider_gateway.observability import logs

    logs.register_secret(secret)
    return secret


def forget_secret(secret: str) -> None:
    """Stop redacting a secret a newer one replaced (rotated credentials): the set stays bounded."""
    from provider_gateway.observability import logs

    logs.forget_secret(secret)


class ConfigError(Exception):
    """A configuration mistake, located by file and dotted key."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        super().__init__(f"{source}: {key}: {problem}" if key else f"{source}: {problem}")
        self.source, self.key, self.problem = source, key, problem


class MissingSecret(ConfigError):
    """A required secret whose environment variable is empty: the deployment's business (a Secret
    not mounted yet), not a mistake in the file, so the provider is kept and reported unready."""


class Section:
    """A typed view of one table of the config file that knows where it came from."""

    def __init__(self, data: Mapping[str, Any], source: str, path: str = "") -> None:
        self._data = data
        self.source = source
        self.path = path

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def error(self, name: str, problem: str) -> ConfigError:
        return ConfigError(self.source, self.key(name), problem)

    def __contains__(self, name: str) -> bool:
        return name in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def raw(self) -> dict[str, Any]:
        return dict(self._data)

    def _get(self, name: str, default: T, kinds: tuple[type, ...], label: str) -> T:
        value: Any = self._data.get(name, default)
        # bool is an int in Python; a number key must not accept `true`.
        if value is not default and (
            not isinstance(value, kinds) or isinstance(value, bool) != (bool in kinds)
        ):
            raise self.error(name, f"must be {label}, got {type(value).__name__} {value!r}")
        return cast(T, value)

    def string(self, name: str, default: str = "") -> str:
        return self._get(name, default, (str,), "a string")

    def integer(
        self, name: str, default: int = 0, *, minimum: int | None = None, maximum: int | None = None
    ) -> int:
        value = self._get(name, default, (int,), "an integer")
        self._check_range(name, value, minimum, maximum)
        return value

    def number(
        self, name: str, default: float = 0.0, *, minimum: float | None = None, maximum: float | None = None
    ) -> float:
        value = float(self._get(name, default, (int, float), "a number"))
        if not math.isfinite(value):  # TOML has nan and inf: as a time or a limit, neither means anything
            raise self.error(name, f"must be a finite number, got {value}")
        self._check_range(name, value, minimum, maximum)
        return value

    def _check_range(self, name: str, value: float, minimum: float | None, maximum: float | None) -> None:
        if minimum is not None and value < minimum:
            raise self.error(name, f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self.error(name, f"must be at most {maximum}, got {value}")

    def flag(self, name: str, default: bool = False) -> bool:
        return self._get(name, default, (bool,), "true or false")

    def array(self, name: str) -> list[Any]:
        return list(self._get(name, [], (list,), "a list"))

    def strings(self, name: str) -> list[str]:
        value: list[Any] = self._get(name, [], (list,), "a list of strings")
        if not all(isinstance(v, str) for v in value):
            raise self.error(name, "must be a list of strings")
        return list(value)

    def table(self, name: str) -> Section:
        value: dict[str, Any] = self._get(name, {}, (dict,), "a table")
        return Section(value, self.source, self.key(name))

    def choice(self, name: str, options: Iterable[str], default: str) -> str:
        value = self.string(name, default)
        allowed = sorted(options)
        if value not in allowed:
            raise self.error(name, f"must be one of {', '.join(allowed)}; got {value!r}")
        return value

    def secret(self, name: str, default_env: str = "", *, required: bool = False) -> str:
        """Read a secret from `<name>_env` (an environment variable's name) or `<name>_file`.

        Secrets never sit in the file itself: a literal `<name>` key is rejected, so a key cannot
        be committed by accident along with the configuration.
        """
        if name in self._data:
            raise self.error(name, f"secrets are not read from the file; set {name}_env or {name}_file")
        env_name = self.string(f"{name}_env", default_env)
        file_name = self.string(f"{name}_file")
        if file_name:
            try:
                return register_secret(Path(file_name).read_text().strip())
            except OSError as exc:
                raise self.error(f"{name}_file", f"cannot read {file_name}: {exc.strerror}") from exc
        value = os.environ.get(env_name, "") if env_name else ""
        if required and not value:
            # "Not set" (a Secret not mounted, a typo in the name) reads differently from "empty"
            # (mounted, but the key has no value).
            state = "is empty" if env_name and env_name in os.environ else "is not set"
            raise MissingSecret(
                self.source,
                self.key(f"{name}_env"),
                f"environment variable {env_name or '(none named)'} {state}; export the key there",
            )
        return register_secret(value)

    def reject_unknown(self, allowed: Iterable[str]) -> None:
        known = set(allowed)
        for name in self._data:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise self.error(name, f"unknown key ({hint}expected one of: {', '.join(sorted(known))})")


@dataclass(slots=True)
class ProviderConfig:
    name: str
    kind: str
    options: Section


@dataclass(slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 50051
    # Long enough for a long generation (a reasoning model can stream for minutes) to finish.
    grace_period_s: float = 120.0
    # On SIGTERM, keep serving new calls this long after reporting NOT_SERVING, so that balancers and
    # clients that check health move away before the server stops taking calls: grpc core ends the
    # calls that arrived but were not yet dispatched at that moment CANCELLED (grpc/grpc#41785).
    drain_delay_s: float = 0.0
    max_message_bytes: int = 8 * 1024 * 1024
    default_provider: str = "mock"
    # Close each client connection after this long (0 = never) so that clients balancing over DNS
    # re-resolve and find replicas added by a scale-out; streams open at that moment get
    # `max_connection_age_grace_s` to finish, so keep that above the longest stream.
    max_connection_age_s: float = 0.0
    max_connection_age_grace_s: float = 600.0
    # Merge stream deltas already in hand into one message (server/coalesce.py); never delays one.
    coalesce_deltas: bool = True


@dataclass(slots=True)
class GatewayConfig:
    source: str
    server: ServerConfig = field(default_factory=ServerConfig)
    providers: list[ProviderConfig] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)
    # Other top-level tables ([routing], [auth], [tls], [telemetry], ...), each parsed by the module
    # that owns the feature, so that adding a feature does not grow this file.
    sections: dict[str, Section] = field(default_factory=dict)

    def section(self, name: str) -> Section:
        return self.sections.get(name) or Section({}, self.source, name)


DEFAULT_SOURCE = "(built-in defaults)"
CORE_KEYS = ("server", "providers", "aliases")
# Feature tables: parsed by their own modules through `GatewayConfig.section(name)`.
FEATURE_KEYS = (
    "routing", "groups", "auth", "tls", "telemetry", "redis", "limits", "health", "upstream", "prices",
    "catalog", "cache",
)  # fmt: skip
SERVER_KEYS = (
    "host",
    "port",
    "grace_period_s",
    "drain_delay_s",
    "max_message_bytes",
    "default_provider",
    "max_connection_age_s",
    "max_connection_age_grace_s",
    "coalesce_deltas",
)


def mock_only() -> GatewayConfig:
    """What runs with no file: the mock provider, which needs no credentials or network."""
    return GatewayConfig(
        source=DEFAULT_SOURCE,
        providers=[ProviderConfig("mock", "mock", Section({}, DEFAULT_SOURCE, "providers.mock"))],
    )


def load(path: str | os.PathLike[str] | None) -> GatewayConfig:
    if path is None:
        return mock_only()
    source = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(source, "", f"cannot read the file: {exc.strerror}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "", f"not valid TOML: {exc}") from exc
    return parse(data, source)


def parse(data: Mapping[str, Any], source: str) -> GatewayConfig:
    root = Section(data, source)
    root.reject_unknown(CORE_KEYS + FEATURE_KEYS)
    server_section = root.table("server")
    server_section.reject_unknown(SERVER_KEYS)
    server = ServerConfig(
        host=server_section.string("host", "127.0.0.1"),
        port=server_section.integer("port", 50051, minimum=0, maximum=65535),
        grace_period_s=server_section.number("grace_period_s", 120.0, minimum=0),
        drain_delay_s=server_section.number("drain_delay_s", 0.0, minimum=0),
        max_message_bytes=server_section.integer("max_message_bytes", 8 * 1024 * 1024, minimum=1024),
        default_provider=server_section.string("default_provider", ""),
        max_connection_age_s=server_section.number("max_connection_age_s", 0.0, minimum=0),
        max_connection_age_grace_s=server_section.number("max_connection_age_grace_s", 600.0, minimum=0),
        coalesce_deltas=server_section.flag("coalesce_deltas", True),
    )
    providers_section = root.table("providers")
    providers = []
    for name in providers_section:
        if "/" in name:  # requests name a provider's model as "<provider>/<model>": the first "/" ends it
            raise providers_section.error(name, "a provider's name may not contain '/'; rename the table")
        table = providers_section.table(name)
        kind = table.string("kind", name)
        providers.append(ProviderConfig(name, kind, table))
    if not providers:
        providers = mock_only().providers
    names = [p.name for p in providers]
    if not server.default_provider:
        server.default_provider = names[0]
    elif server.default_provider not in names:
        raise server_section.error(
            "default_provider", f"{server.default_provider!r} is not configured (have: {', '.join(names)})"
        )
    aliases_section = root.table("aliases")
    aliases = {alias: aliases_section.string(alias) for alias in aliases_section}
    for alias, target in aliases.items():
        if alias in names or alias.split("/", 1)[0] in names:  # it would hide that provider's models
            raise aliases_section.error(
                alias, f"an alias may not be a provider's name or start with one ({alias!r})"
            )
        provider = target.split("/", 1)[0]
        if "/" not in target or provider not in names:
            raise aliases_section.error(
                alias, f"must be 'provider/model' with a configured provider (have: {', '.join(names)})"
            )
    sections = {name: root.table(name) for name in FEATURE_KEYS if name in root}
    return GatewayConfig(
        source=source, server=server, providers=providers, aliases=aliases, sections=sections
    )
