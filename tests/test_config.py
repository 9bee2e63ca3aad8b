"""Configuration: defaults, parsing, and errors that name the file, the key and the problem."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from provider_gateway import config
from provider_gateway.config import ConfigError, Section
from provider_gateway.providers.mock import MockModel, MockProvider
from provider_gateway.providers.registry import ProviderRegistry


def parse(text: str) -> config.GatewayConfig:
    return config.parse(tomllib.loads(text), "gw.toml")


def test_no_file_means_the_mock_alone() -> None:
    loaded = config.load(None)
    assert [(p.name, p.kind) for p in loaded.providers] == [("mock", "mock")]
    assert loaded.server.default_provider == "mock"
    assert (loaded.server.host, loaded.server.port) == ("127.0.0.1", 50051)


def test_a_full_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(
        """
        [server]
        host = "0.0.0.0"
        port = 6000
        grace_period_s = 2.5
        drain_delay_s = 0.5
        default_provider = "b"
        [providers.a]
        kind = "mock"
        [providers.b]
        kind = "mock"
        [aliases]
        fast = "a/echo"
        [routing]
        anything = 1
        """
    )
    loaded = config.load(path)
    assert loaded.source == str(path)
    assert (loaded.server.host, loaded.server.port, loaded.server.grace_period_s) == ("0.0.0.0", 6000, 2.5)
    assert [p.name for p in loaded.providers] == ["a", "b"]
    assert loaded.server.default_provider == "b"
    assert loaded.server.drain_delay_s == 0.5
    assert loaded.aliases == {"fast": "a/echo"}
    assert loaded.section("routing").integer("anything") == 1
    assert loaded.section("telemetry").raw() == {}  # absent feature tables read as empty


def test_first_provider_is_the_default_when_none_is_named() -> None:
    assert parse("[providers.x]\nkind='mock'\n[providers.y]\nkind='mock'").server.default_provider == "x"


def test_provider_kind_defaults_to_its_name() -> None:
    assert parse("[providers.mock]").providers[0].kind == "mock"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour = 1", "gw.toml: colour: unknown key (expected one of: aliases, "),
        (
            "[server]\nprot = 1",
            "gw.toml: server.prot: unknown key (did you mean 'port'? expected one of: coalesce_deltas, ",
        ),
        ("[server]\nport = 'x'", "gw.toml: server.port: must be an integer, got str 'x'"),
        ("[server]\nport = -1", "gw.toml: server.port: must be at least 0, got -1"),
        ("[server]\nport = true", "gw.toml: server.port: must be an integer, got bool True"),
        ("[server]\ngrace_period_s = 'soon'", "gw.toml: server.grace_period_s: must be a number"),
        ("[server]\ndrain_delay_s = -1", "gw.toml: server.drain_delay_s: must be at least 0, got -1"),
        (
            "[server]\ngrace_period_s = nan",
            "gw.toml: server.grace_period_s: must be a finite number, got nan",
        ),
        ("[server]\ndrain_delay_s = inf", "gw.toml: server.drain_delay_s: must be a finite number, got inf"),
        ("server = 3", "gw.toml: server: must be a table, got int 3"),
        (
            "[server]\ndefault_provider = 'openai'",
            "gw.toml: server.default_provider: 'openai' is not configured (have: mock)",
        ),
        (
            "[aliases]\nfast = 'echo'",
            "gw.toml: aliases.fast: must be 'provider/model' with a configured provider",
        ),
        ("[aliases]\nfast = 'nope/echo'", "gw.toml: aliases.fast: must be 'provider/model'"),
        ("[aliases]\nfast = 3", "gw.toml: aliases.fast: must be a string, got int 3"),
        ("[aliases]\nmock = 'mock/echo'", "gw.toml: aliases.mock: an alias may not be a provider's name"),
        (
            '[aliases]\n"mock/fast" = "mock/echo"',
            "gw.toml: aliases.mock/fast: an alias may not be a provider's name",
        ),
    ],
)
def test_bad_core_config_names_file_key_and_problem(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(text)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[providers.x]\nkind = 'openaii'",
            "gw.toml: providers.x.kind: unknown provider kind 'openaii' (known: ",
        ),
        ("[providers.mock]\nhealty = false", "gw.toml: providers.mock.healty: unknown key"),
        ("[providers.mock]\nhealthy = 'no'", "gw.toml: providers.mock.healthy: must be true or false"),
        (
            "[providers.mock.models.m]\ntokens = -3",
            "gw.toml: providers.mock.models.m.tokens: must be at least 0",
        ),
        (
            "[providers.mock.models.m]\nfault = 'explode'",
            "gw.toml: providers.mock.models.m.fault: must be one of",
        ),
        (
            "[providers.mock.models.m]\nfault_status = 'BROKEN'",
            "gw.toml: providers.mock.models.m.fault_status: must be one of ABORTED, CANCELLED",
        ),
        ("[providers.mock.models.m]\ntoken = 3", "gw.toml: providers.mock.models.m.token: unknown key"),
        (
            "[providers.mock.models.m]\ntool_calls = [1]",
            "gw.toml: providers.mock.models.m.tool_calls[0]: must be",
        ),
        (
            "[providers.mock.models.m]\ntoken_delay_ms = 'x'",
            "gw.toml: providers.mock.models.m.token_delay_ms: must be a number",
        ),
    ],
)
def test_bad_provider_config_names_file_key_and_problem(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        ProviderRegistry.from_config(parse(text))
    assert str(info.value).startswith(message)


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        config.load(tmp_path / "missing.toml")
    assert str(info.value) == f"{tmp_path / 'missing.toml'}: cannot read the file: No such file or directory"
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\nport = 1")
    with pytest.raises(ConfigError) as info:
        config.load(bad)
    assert str(info.value).startswith(f"{bad}: not valid TOML: ")


def test_mock_models_from_config_override_and_extend_the_builtins() -> None:
    text = """
    [providers.mock]
    healthy = false
    [providers.mock.models.echo]
    tokens = 2
    [providers.mock.models.planner]
    reasoning_tokens = 3
    tool_calls = [{ name = "plan", arguments = { steps = 2 } }, { name = "noargs" }]
    fault = "rate_limit"
    retry_after_ms = 250
    fault_status = "ABORTED"
    first_token_delay_ms = 5
    token_delay_ms = 1.5
    cache_read_tokens = 4
    cache_write_tokens = 5
    embedding_dimensions = 2
    context_window = 1000
    """
    (provider,) = list(ProviderRegistry.from_config(parse(text)))
    assert isinstance(provider, MockProvider)
    assert not provider.healthy
    assert provider.models["echo"] == MockModel(tokens=2)
    assert provider.models["reasoner"].reasoning_tokens == 6  # built-ins stay
    planner = provider.models["planner"]
    assert planner.tool_calls == (("plan", '{"steps":2}'), ("noargs", "{}"))
    assert (planner.fault, planner.retry_after_ms, planner.fault_status.value) == (
        "rate_limit",
        250,
        "ABORTED",
    )
    assert (planner.token_delay_ms, planner.first_token_delay_ms) == (1.5, 5.0)
    assert (planner.cache_read_tokens, planner.cache_write_tokens) == (4, 5)
    assert (planner.embedding_dimensions, planner.context_window) == (2, 1000)


def test_secrets_come_from_env_or_file_never_the_file_itself(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("GW_TEST_KEY", "sk-from-env")
    key_file = tmp_path / "key"
    key_file.write_text("sk-from-file\n")
    assert (
        Section({"api_key_env": "GW_TEST_KEY"}, "gw.toml", "providers.x").secret("api_key") == "sk-from-env"
    )
    assert Section({}, "gw.toml", "providers.x").secret("api_key", "GW_TEST_KEY") == "sk-from-env"
    from_file = Section({"api_key_file": str(key_file)}, "gw.toml", "providers.x").secret("api_key")
    assert from_file == "sk-from-file"
    with pytest.raises(ConfigError) as info:
        Section({"api_key": "sk-literal"}, "gw.toml", "providers.x").secret("api_key")
    assert str(info.value) == (
        "gw.toml: providers.x.api_key: secrets are not read from the file; set api_key_env or api_key_file"
    )
    assert "sk-literal" not in str(info.value)
    with pytest.raises(ConfigError) as info:
        Section({"api_key_env": "GW_TEST_UNSET"}, "gw.toml", "providers.x").secret("api_key", required=True)
    assert str(info.value) == (
        "gw.toml: providers.x.api_key_env: environment variable GW_TEST_UNSET is not set; export the key there"
    )
    with pytest.MonkeyPatch.context() as patch:  # mounted, but without a value: told apart
        patch.setenv("GW_TEST_EMPTY", "")
        with pytest.raises(ConfigError, match="environment variable GW_TEST_EMPTY is empty"):
            Section({"api_key_env": "GW_TEST_EMPTY"}, "gw.toml", "providers.x").secret(
                "api_key", required=True
            )
    with pytest.raises(ConfigError) as info:
        Section({"api_key_file": str(tmp_path / "none")}, "gw.toml", "p").secret("api_key")
    assert str(info.value).startswith("gw.toml: p.api_key_file: cannot read ")


def test_section_typed_accessors() -> None:
    section = Section({"names": ["a", "b"], "mixed": ["a", 1], "level": "low", "n": 3}, "gw.toml", "t")
    assert section.strings("names") == ["a", "b"]
    assert section.strings("absent") == []
    assert section.choice("level", ["low", "high"], "high") == "low"
    assert section.number("n") == 3.0
    assert "n" in section
    assert "zz" not in section
    assert sorted(section) == ["level", "mixed", "n", "names"]
    with pytest.raises(ConfigError, match=r"^gw.toml: t.mixed: must be a list of strings$"):
        section.strings("mixed")
    with pytest.raises(ConfigError, match=r"t.level: must be one of high, medium; got 'low'"):
        section.choice("level", ["medium", "high"], "high")


def test_the_example_config_loads_and_builds() -> None:
    example = Path(__file__).resolve().parent.parent / "examples" / "gateway.toml"
    loaded = config.load(example)
    providers = {p.name: p for p in ProviderRegistry.from_config(loaded)}
    assert sorted(providers) == ["backup", "mock"]
    assert loaded.aliases == {"fast": "mock/echo", "thinker": "mock/reasoner"}
    mock = providers["mock"]
    assert isinstance(mock, MockProvider)
    assert mock.models["limited"].fault == "rate_limit"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[server]\nport = 70000", "gw.toml: server.port: must be at most 65535, got 70000"),
        (
            "[routing.breaker]\nhalf_open_probes = 0",
            "gw.toml: routing.breaker.half_open_probes: must be at least 1, got 0",
        ),
        (
            "[routing.breaker]\nconsecutive_failures = 0",
            "gw.toml: routing.breaker.consecutive_failures: must be at least 1, got 0",
        ),
        ("[routing.breaker]\nfailure_rate = 1.5", "gw.toml: routing.breaker.failure_rate: must be at most 1"),
        ("[routing.limiter]\nbackoff = 2", "gw.toml: routing.limiter.backoff: must be at most 1"),
        (
            "[routing.limiter]\ninitial = 4096",
            "gw.toml: routing.limiter.initial: must lie between minimum and maximum (minimum 1, initial 4096,",
        ),
        ("[auth]\nkeys = ['abc']", "gw.toml: auth.keys: each entry must be a table"),
        (
            "[aliases]\nfast = 'mock/echo'\n[groups.fast]\ndeployments = [{ provider = 'mock', model = 'echo' }]",
            "gw.toml: groups.fast: 'fast' is also an alias in [aliases]; rename one of them",
        ),
        (
            "[groups.g]\ndeployments = [{ provider = 'mock', model = 'echo' }]\nfallbacks = ['g']",
            "gw.toml: groups.g.fallbacks: names the group 'g' itself",
        ),
        # A group named like a provider hid that provider's models and shared state with its routes.
        (
            "[groups.mock]\ndeployments = [{ provider = 'mock', model = 'echo' }]",
            "gw.toml: groups.mock: a group may not be a provider's name or start with one ('mock'); rename",
        ),
        (
            "[groups.\"mock/fast\"]\ndeployments = [{ provider = 'mock', model = 'echo' }]",
            "gw.toml: groups.mock/fast: a group may not be a provider's name or start with one",
        ),
        (
            '[providers."mock/eu"]\nkind = "mock"',
            "gw.toml: providers.mock/eu: a provider's name may not contain '/'; rename the table",
        ),
        # A time limit of 0 failed every request DEADLINE_EXCEEDED at once: not "no limit".
        *(
            (
                f"[routing]\n{key} = 0",
                f"gw.toml: routing.{key}: must be at least 0.001 s, got 0: every request would fail "
                "DEADLINE_EXCEEDED at once",
            )
            for key in ("ttft_timeout_s", "idle_timeout_s", "timeout_s")
        ),
        (
            "[groups.g]\nidle_timeout_s = 0\ndeployments = [{ provider = 'mock', model = 'echo' }]",
            "gw.toml: groups.g.idle_timeout_s: must be at least 0.001 s",
        ),
    ],
)
def test_values_that_would_break_a_feature_are_refused_at_start(text: str, message: str) -> None:
    """Accepted before, each of these broke the gateway later: a bind error, a breaker that never
    closes again, a limit that grows past its maximum, a crash on a list of strings."""
    from provider_gateway.server.app import GatewayServer

    with pytest.raises(ConfigError) as info:
        GatewayServer(parse(text))  # refused while being built, before anything is started
    assert str(info.value).startswith(message)
