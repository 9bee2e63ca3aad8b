"""The `provider-gateway` command line against a server running in another process."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from served import CLI, child, read_some, served

TIMEOUT_S = 60


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with served(tmp_path_factory.mktemp("cli")) as address:
        yield address


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=TIMEOUT_S, check=False)


def test_chat_prints_tokens_as_they_arrive(target: str) -> None:
    with child(CLI, "chat", "--target", target, "-m", "mock/slow", "Tell", "me") as proc:
        assert proc.stdout is not None
        first = read_some(proc.stdout.fileno(), TIMEOUT_S).decode()
        # The answer has 20 tokens, 50 ms apart: had the CLI buffered, the first read would hold them all.
        assert first.startswith("Mock")
        assert "Tell me Mock answer: Tell me" not in first
        rest, errors = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 0, errors
    words = ["Mock", "answer:", "Tell", "me"] * 5
    assert first + rest.decode() == " ".join(words) + "\n"


def test_chat_verbose_reports_who_answered(target: str) -> None:
    result = cli("chat", "--target", target, "-v", "--max-tokens", "3", "--system", "be brief", "Hi")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Mock answer: Hi\n"
    assert result.stderr.startswith("[mock/echo FINISH_REASON_LENGTH overhead=")


def test_chat_shows_reasoning_on_stderr_when_asked(target: str) -> None:
    result = cli("chat", "--target", target, "-m", "mock/reasoner", "--show-reasoning", "Why")
    assert result.returncode == 0, result.stderr
    assert result.stderr == "Thinking about the question step by\n"
    assert result.stdout.startswith("Mock answer: Why")


def test_chat_error_is_one_readable_line_and_exit_1(target: str) -> None:
    result = cli("chat", "--target", target, "-m", "mock/gpt-9", "Hi")
    assert result.returncode == 1
    assert result.stderr.startswith("provider-gateway: NOT_FOUND: mock: model 'gpt-9' is not offered")
    assert "Traceback" not in result.stderr


def test_models_lists_provider_slash_model(target: str) -> None:
    result = cli("models", "--target", target)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == [
        "mock/echo",
        "mock/embed",
        "mock/reasoner",
        "mock/slow",
        "mock/tools",
    ]
    assert "mock/reasoner\t128000\tvision,reasoning" in lines
    assert cli("models", "--target", target, "--provider", "mock").stdout == result.stdout


def test_providers_lists_health_and_default(target: str) -> None:
    result = cli("providers", "--target", target)
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    name, kind, health, breaker = line.split("\t")
    assert (name, kind, health) == ("mock", "mock", "SERVING")
    assert breaker.endswith(" (default)")


def test_health(target: str) -> None:
    server = cli("health", "--target", target)
    assert (server.stdout, server.returncode) == ("SERVING\n", 0)
    provider = cli("health", "--target", target, "--service", "provider/mock")
    assert (provider.stdout, provider.returncode) == ("SERVING\n", 0)


def test_client_commands_against_no_server_fail_cleanly() -> None:
    result = cli("providers", "--target", "127.0.0.1:1", "--timeout", "2")
    assert result.returncode == 1
    assert result.stderr.startswith("provider-gateway: UNAVAILABLE") or result.stderr.startswith(
        "provider-gateway: DEADLINE_EXCEEDED"
    )


def test_serve_with_a_bad_config_exits_2_naming_file_key_and_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[providers.mock.models.echo]\nfault = "explode"\n')
    result = cli("serve", "--config", str(bad), "--port", "0")
    assert result.returncode == 2
    assert result.stderr == (
        f"provider-gateway: bad configuration: {bad}: providers.mock.models.echo.fault: "
        "must be one of error_after_tokens, error_before_first_token, hang, none, rate_limit; got 'explode'\n"
    )


def test_serve_with_a_missing_config_exits_2(tmp_path: Path) -> None:
    result = cli("serve", "--config", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert "nope.toml: cannot read the file: No such file or directory" in result.stderr


def test_serve_on_a_port_in_use_exits_1_with_a_message(target: str) -> None:
    port = target.rsplit(":", 1)[1]
    result = cli("serve", "--port", port)
    assert result.returncode == 1
    assert "provider-gateway: cannot listen: Failed to bind to address" in result.stderr
    assert "Traceback" not in result.stderr


def test_readme_starts_with_the_two_commands() -> None:
    root = Path(__file__).resolve().parent.parent
    lines = (root / "README.md").read_text().splitlines()
    assert lines[2] == "```bash"
    assert lines[3].startswith("bash scripts/setup.sh && .venv/bin/provider-gateway serve ")
    assert lines[4].startswith("bash scripts/test.sh ")
    assert (root / "scripts" / "setup.sh").is_file()
    assert (root / "scripts" / "test.sh").is_file()
    assert Path(CLI).name == "provider-gateway"


def test_serve_on_uvloop_without_the_extra_says_how_to_get_it() -> None:
    import importlib.util

    if importlib.util.find_spec("uvloop") is not None:
        pytest.skip("uvloop is installed here")
    done = subprocess.run(
        [CLI, "serve", "--loop", "uvloop", "--port", "0"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "pip install 'provider-gateway-server[uvloop]'" in done.stderr


def test_models_and_providers_as_json_for_scripts(target: str) -> None:
    import json

    models = cli("models", "--target", target, "--json")
    assert models.returncode == 0, models.stderr
    ids = {(m["provider"], m["id"]) for m in json.loads(models.stdout)["models"]}
    assert ("mock", "echo") in ids
    providers = cli("providers", "--target", target, "--json")
    assert providers.returncode == 0, providers.stderr
    listed = json.loads(providers.stdout)
    assert listed["defaultProvider"] == "mock"
    assert [p["name"] for p in listed["providers"]] == ["mock"]


def test_models_show_their_aliases(tmp_path: Path) -> None:
    config = tmp_path / "gw.toml"
    config.write_text('[providers.mock]\nkind = "mock"\n[aliases]\nquick = "mock/echo"\n')
    with served(tmp_path, "--config", str(config)) as aliased:
        result = cli("models", "--target", aliased)
    assert result.returncode == 0, result.stderr
    assert any(
        line.startswith("mock/echo\t") and "(alias: quick)" in line for line in result.stdout.splitlines()
    )
