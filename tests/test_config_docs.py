"""docs/configuration.md stays true: every TOML block loads as the server loads it, and the key tables
name exactly the keys the code accepts. The TOML blocks of docs/vendor-providers.md load the same way.

Each block goes through `config.parse` and then `GatewayServer(config)`, which runs every feature
table's parser (routing, auth, TLS, Redis, limits, health, upstream) and builds the providers, so a
misspelt or unknown key anywhere fails here as it would at start-up. Nothing is started: no port,
no network. Secrets named by `*_env` are set with monkeypatch; `*_file` paths (secrets and TLS files)
are pointed at temporary files, TLS ones at a freshly made certificate. Bedrock, which reads the AWS
environment, gets conftest's fake AWS credentials and no config files.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import functools
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import use_fake_aws_credentials
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from provider_gateway import config as config_module
from provider_gateway.catalog import CATALOG_KEYS
from provider_gateway.config import ConfigError, Section
from provider_gateway.http.pool import UpstreamPool
from provider_gateway.observability.monitor import HEALTH_KEYS
from provider_gateway.observability.telemetry import TELEMETRY_KEYS, Telemetry, TelemetrySettings
from provider_gateway.pricing import PRICE_KEYS
from provider_gateway.providers.anthropic.adapter import KEYS as ANTHROPIC_KEYS
from provider_gateway.providers.cohere.adapter import KEYS as COHERE_KEYS
from provider_gateway.providers.gemini.adapter import KEYS as GEMINI_KEYS
from provider_gateway.providers.ollama.adapter import KEYS as OLLAMA_KEYS
from provider_gateway.providers.openai.adapter import KEYS as OPENAI_KEYS
from provider_gateway.routing.breaker import BreakerSettings
from provider_gateway.routing.limiter import LimiterSettings
from provider_gateway.routing.settings import DEPLOYMENT_KEYS, GROUP_KEYS, ROUTING_KEYS
from provider_gateway.routing.shared_state import REDIS_KEYS
from provider_gateway.server.app import GatewayServer
from provider_gateway.server.auth import AUTH_KEYS, KEY_KEYS
from provider_gateway.server.budgets import TEAM_KEYS
from provider_gateway.server.tls import TLS_KEYS
from provider_gateway.server.validate import LIMIT_KEYS

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
TEXT = DOC.read_text()


def _toml_blocks(text: str) -> list[str]:
    return re.findall(r"^```toml\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


BLOCKS = _toml_blocks(TEXT)
VENDOR_DOC = DOC.parent / "vendor-providers.md"
VENDOR_BLOCKS = _toml_blocks(VENDOR_DOC.read_text())
VENDOR_KINDS = {"anthropic", "gemini", "vertex", "cohere", "bedrock"}
TLS_FILES = ("cert_file", "key_file", "client_ca_file")
REDIS_URL = "redis://127.0.0.1:6379/0"
BOGUS = "bogus_key"

# --- loading a block the way the server does ------------------------------------------------------


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _tables(
    node: Any, path: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], dict[str, Any]]]:
    """Every table of a loaded TOML document with its path, inline tables in arrays included."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _tables(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _tables(value, (*path, i))


def _provide_secrets(data: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Set the variables that `*_env` keys name; point `*_file` keys at files that exist."""
    cert, key = _self_signed(tmp_path)
    for path, table in _tables(data):
        for name, value in list(table.items()):
            if not isinstance(value, str):
                continue
            secret = REDIS_URL if name.startswith("url_") else "doc-test-secret-0123456789abcdef"
            if name.endswith("_env"):
                monkeypatch.setenv(value, secret)
            elif path == ("tls",) and name in TLS_FILES:
                table[name] = str(key if name == "key_file" else cert)
            elif name.endswith("_file"):
                file = tmp_path / f"secret-{len(list(tmp_path.iterdir()))}"
                file.write_text(secret + "\n")
                table[name] = str(file)


async def load_like_the_server(
    data: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    source: str = "docs/configuration.md",
) -> None:
    """Parse and build the server from `data`; raises ConfigError as `serve` would report it."""
    data = copy.deepcopy(data)
    _provide_secrets(data, tmp_path, monkeypatch)
    config = config_module.parse(data, source)
    # [telemetry] is checked in full, but the server is built without exporters or an endpoint.
    settings = TelemetrySettings.from_section(config.section("telemetry"))
    quiet = dataclasses.replace(settings, traces=False, metrics=False, prometheus_port=None)
    server = GatewayServer(config, telemetry=Telemetry(quiet))
    await server.stop(0)


# --- what the document says -----------------------------------------------------------------------


def _normalise(path: tuple[str | int, ...]) -> str:
    """`providers.openai.base_url` -> `providers.<name>.base_url`; list items -> `[]`."""
    out = ""
    for i, part in enumerate(path):
        if isinstance(part, int):
            out += "[]"
            continue
        parent = path[i - 1] if i == 1 else None
        name = {
            "providers": "<name>", "groups": "<name>", "aliases": "<alias>", "prices": "<kind>", "catalog": "<kind>",
        }.get(str(parent), part)  # fmt: skip
        if i == 2 and path[0] in ("prices", "catalog"):
            name = '"<model>"'  # [prices.<kind>."<model>"], [catalog.<kind>."<model>"]
        out += f".{name}" if out else name
    return out


@functools.cache
def loaded_key_paths() -> frozenset[str]:
    """Every key path (normalised) written in some TOML block of the document."""
    paths: set[str] = set()
    for block in BLOCKS:
        for path, table in _tables(tomllib.loads(block)):
            paths.update(_normalise((*path, key)) for key in table)
    return frozenset(paths)


@functools.cache
def documented_keys() -> dict[str, frozenset[str]]:
    """Key tables by the TOML table in their heading: `### \\`[routing.breaker]\\`` -> its rows' keys."""
    tables: dict[str, set[str]] = {}
    current: str | None = None
    for line in TEXT.splitlines():
        if line.startswith("#"):
            found = re.search(r"`(\[\[?)([^`\]]+)\]\]?`", line)
            current = (found[2] + ("[]" if found[1] == "[[" else "")) if found else None
        elif current and line.startswith("|"):
            first = line.split("|")[1].strip()
            if first == "key" or set(first) <= {"-", " "}:
                continue
            tables.setdefault(current, set()).update(re.findall(r"`([a-z0-9_]+)`", first))
    return {table: frozenset(keys) for table, keys in tables.items()}


def _upstream_keys() -> frozenset[str]:
    """The keys `[upstream]` accepts, as `UpstreamPool.from_section` declares them."""
    seen: list[str] = []

    class Recording(Section):
        def reject_unknown(self, allowed: Any) -> None:
            seen.extend(allowed)
            super().reject_unknown(seen)

    UpstreamPool.from_section(Recording({}, "test"))
    return frozenset(seen)


def _fields(settings: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(settings))


# What each documented table must list: the code's own key lists.
CODE_KEYS: dict[str, frozenset[str]] = {
    "server": frozenset(config_module.SERVER_KEYS),
    # The keys every HTTP adapter shares; the rest are documented per vendor.
    "providers.<name>": frozenset(OPENAI_KEYS)
    & frozenset(OLLAMA_KEYS)
    & frozenset(ANTHROPIC_KEYS)
    & frozenset(GEMINI_KEYS)
    & frozenset(COHERE_KEYS),
    "routing": frozenset(ROUTING_KEYS),
    "routing.breaker": _fields(BreakerSettings),
    "routing.limiter": _fields(LimiterSettings),
    "groups.<name>": frozenset(GROUP_KEYS) - frozenset(ROUTING_KEYS),
    "groups.<name>.deployments[]": frozenset(DEPLOYMENT_KEYS),
    "auth": frozenset(AUTH_KEYS),
    "auth.keys[]": frozenset(KEY_KEYS),
    "auth.teams[]": frozenset(TEAM_KEYS),
    "tls": frozenset(TLS_KEYS),
    "redis": frozenset(REDIS_KEYS),
    "limits": frozenset(LIMIT_KEYS),
    "health": frozenset(HEALTH_KEYS),
    "telemetry": frozenset(TELEMETRY_KEYS),
    "upstream": _upstream_keys(),
    'prices.<kind>."<model>"': frozenset(PRICE_KEYS),
    'catalog.<kind>."<model>"': frozenset(CATALOG_KEYS),
}


# --- the tests ------------------------------------------------------------------------------------


def test_the_document_has_a_complete_example_first() -> None:
    assert len(BLOCKS) >= 10
    full = tomllib.loads(BLOCKS[0])
    assert set(full) == set(config_module.CORE_KEYS + config_module.FEATURE_KEYS), (
        "the first TOML block is the complete example: it should use every top-level table"
    )


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
async def test_every_toml_block_loads(block: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    await load_like_the_server(tomllib.loads(block), tmp_path, monkeypatch)


def test_the_vendor_page_has_a_block_for_each_of_its_kinds() -> None:
    kinds = {p["kind"] for block in VENDOR_BLOCKS for p in tomllib.loads(block).get("providers", {}).values()}
    assert kinds == VENDOR_KINDS


@pytest.mark.parametrize("block", VENDOR_BLOCKS, ids=[f"vendor{i}" for i in range(len(VENDOR_BLOCKS))])
async def test_every_toml_block_of_the_vendor_page_loads(
    block: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_fake_aws_credentials(monkeypatch)  # Bedrock resolves region and credentials from the environment
    await load_like_the_server(tomllib.loads(block), tmp_path, monkeypatch, "docs/vendor-providers.md")


async def test_an_unknown_key_is_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"routing\.breaker\.cooldown: unknown key"):
        await load_like_the_server(tomllib.loads("[routing.breaker]\ncooldown = 10"), tmp_path, monkeypatch)


FULL_TABLES = [path for path, _ in _tables(tomllib.loads(BLOCKS[0]))]


@pytest.mark.parametrize("path", FULL_TABLES, ids=[_normalise(p) or "(top)" for p in FULL_TABLES])
async def test_a_misspelt_key_in_any_table_of_the_example_is_rejected(
    path: tuple[str | int, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tomllib.loads(BLOCKS[0])
    table: Any = data
    for part in path:
        table = table[part]
    table[BOGUS] = 1
    with pytest.raises(ConfigError, match=BOGUS):
        await load_like_the_server(data, tmp_path, monkeypatch)


def test_every_top_level_table_has_a_section() -> None:
    headings = set(re.findall(r"^## `\[([a-z]+)", TEXT, flags=re.MULTILINE))
    assert headings == set(config_module.CORE_KEYS + config_module.FEATURE_KEYS)


def test_every_key_in_a_table_appears_in_a_block_that_loads() -> None:
    missing = sorted(
        f"{table}.{key}"
        for table, keys in documented_keys().items()
        for key in keys
        if f"{table}.{key}" not in loaded_key_paths()
    )
    assert not missing, f"documented but in no TOML example: {missing}"


@pytest.mark.parametrize("table", sorted(CODE_KEYS))
def test_each_key_table_lists_exactly_what_the_code_accepts(table: str) -> None:
    documented = documented_keys().get(table, frozenset())
    assert documented == CODE_KEYS[table], (
        f"[{table}]: not in the code: {sorted(documented - CODE_KEYS[table])}; "
        f"undocumented: {sorted(CODE_KEYS[table] - documented)}"
    )
