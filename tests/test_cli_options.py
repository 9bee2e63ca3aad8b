"""The CLI's connection and output options through a real server (issue 19.4): the certificate name
(`--server-name`), the target and TLS files from the clients' environment variables, the API key
file's failures, and `--json` for `chat` and `health` (models and providers: tests/test_cli.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import run_gateway
from processes import run_process
from served import CLI
from test_tls import Issued, issue, make_ca, tls_config, write_server_files

from provider_gateway.server.auth import hash_key

CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("PROVIDER_GATEWAY_")}


def make_pki() -> dict[str, Issued]:
    """A server certificate (for localhost and 127.0.0.1) and a client one, from two CAs."""
    server_ca, client_ca = make_ca("server-ca"), make_ca("client-ca")
    return {
        "server_ca": server_ca[0],
        "client_ca": client_ca[0],
        "server": issue(server_ca, "gateway", server=True),
        "client": issue(client_ca, "billing", server=False),
    }


@pytest.fixture(scope="module")
def pki() -> dict[str, Issued]:
    return make_pki()


def trust_files(tmp_path: Path, pki: dict[str, Issued]) -> dict[str, str]:
    (tmp_path / "server-ca.crt").write_bytes(pki["server_ca"].cert)
    (tmp_path / "client.crt").write_bytes(pki["client"].cert)
    (tmp_path / "client.key").write_bytes(pki["client"].key)
    return {name: str(tmp_path / name) for name in ("server-ca.crt", "client.crt", "client.key")}


async def test_server_name_is_the_name_the_certificate_is_checked_against(
    tmp_path: Path, pki: dict[str, Issued]
) -> None:
    files = trust_files(tmp_path, pki)
    trust = ("--ca-file", files["server-ca.crt"])
    async with run_gateway(tls_config(write_server_files(tmp_path, pki), require_client_cert=False)) as gw:
        # The certificate names localhost and 127.0.0.1: connecting by address, the name to check is given.
        named = ("--server-name", "localhost")
        code, out, err = await run_process(CLI, "health", "--target", gw.target, *trust, *named, cwd=tmp_path)
        assert (code, out.strip()) == (0, "SERVING"), err
        wrong = ("--server-name", "gateway.example.com")
        code, out, err = await run_process(
            CLI, "health", "--target", gw.target, *trust, *wrong, cwd=tmp_path, timeout_s=60
        )
        assert code == 1
        assert out == ""
        assert "UNAVAILABLE" in err  # the handshake refused a certificate not made for that name


async def test_target_and_mutual_tls_files_from_the_environment(
    tmp_path: Path, pki: dict[str, Issued]
) -> None:
    files = trust_files(tmp_path, pki)
    async with run_gateway(tls_config(write_server_files(tmp_path, pki), require_client_cert=True)) as gw:
        env = {
            **CLEAN_ENV,
            "PROVIDER_GATEWAY_TARGET": gw.target,
            "PROVIDER_GATEWAY_CA_FILE": files["server-ca.crt"],
            "PROVIDER_GATEWAY_CERT_FILE": files["client.crt"],
            "PROVIDER_GATEWAY_KEY_FILE": files["client.key"],
        }
        code, out, err = await run_process(CLI, "chat", "--max-tokens", "3", "hi", cwd=tmp_path, env=env)
        assert (code, out.strip()) == (0, "Mock answer: hi"), err
        # The same without the client certificate: mutual TLS refuses it, so the variables were used.
        del env["PROVIDER_GATEWAY_CERT_FILE"], env["PROVIDER_GATEWAY_KEY_FILE"]
        refused, _, _ = await run_process(CLI, "health", cwd=tmp_path, env=env, timeout_s=60)
        assert refused != 0


async def test_tls_from_the_environment_refuses_a_plaintext_gateway(gateway, tmp_path: Path) -> None:
    env = {**CLEAN_ENV, "PROVIDER_GATEWAY_TARGET": gateway.target, "PROVIDER_GATEWAY_TLS": "1"}
    code, _, err = await run_process(CLI, "health", "--timeout", "5", cwd=tmp_path, env=env, timeout_s=60)
    assert code == 1
    assert "UNAVAILABLE" in err or "DEADLINE_EXCEEDED" in err
    env["PROVIDER_GATEWAY_TLS"] = "0"
    code, out, err = await run_process(CLI, "health", cwd=tmp_path, env=env)
    assert (code, out.strip()) == (0, "SERVING"), err
    # The variable is a default: --no-tls overrides it for one command, as --tls does the other way.
    env["PROVIDER_GATEWAY_TLS"] = "1"
    code, out, err = await run_process(CLI, "health", "--no-tls", cwd=tmp_path, env=env)
    assert (code, out.strip()) == (0, "SERVING"), err


KEY = "cli-key-0123456789abcdefghijklmnopqrstu"
AUTH = f'[auth]\n[[auth.keys]]\nname = "cli"\nsha256 = "{hash_key(KEY)}"\n'


async def test_the_api_key_file_from_the_environment_and_its_failures(tmp_path: Path) -> None:
    (tmp_path / "key").write_text(KEY + "\n")
    (tmp_path / "empty").write_text("\n")
    async with run_gateway(AUTH) as gw:
        env = {**CLEAN_ENV, "PROVIDER_GATEWAY_TARGET": gw.target}
        code, out, err = await run_process(
            CLI, "models", cwd=tmp_path, env={**env, "PROVIDER_GATEWAY_API_KEY_FILE": str(tmp_path / "key")}
        )
        assert code == 0, err  # without the key: UNAUTHENTICATED
        assert "mock/echo" in out
        code, out, err = await run_process(
            CLI, "models", "--api-key-file", str(tmp_path / "empty"), cwd=tmp_path, env=env
        )
        assert (code, out) == (1, "")
        assert "API key file" in err
        assert "is empty" in err
        code, out, err = await run_process(
            CLI, "models", "--api-key-file", str(tmp_path / "missing"), cwd=tmp_path, env=env
        )
        assert (code, out) == (1, "")
        assert "cannot read" in err
        assert "missing" in err
        assert "Traceback" not in err


async def test_chat_json_prints_one_event_a_line(gateway, tmp_path: Path) -> None:
    code, out, err = await run_process(
        CLI, "chat", "--target", gateway.target, "--json", "--max-tokens", "4", "hello", "json", cwd=tmp_path
    )
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    kinds = [next(iter(event)) for event in events]
    assert kinds[-1] == "finish"
    assert "usage" in kinds
    assert "".join(e["textDelta"]["text"] for e in events if "textDelta" in e) == "Mock answer: hello json"
    assert events[-1]["finish"]["reason"] == "FINISH_REASON_LENGTH"
    assert (events[-1]["finish"]["provider"], events[-1]["finish"]["model"]) == ("mock", "echo")


async def test_chat_json_of_reasoning_and_health_json(gateway, tmp_path: Path) -> None:
    code, out, err = await run_process(
        CLI,
        "chat",
        "--target",
        gateway.target,
        "--json",
        "-m",
        "mock/reasoner",
        "--max-tokens",
        "3",
        "Why?",
        cwd=tmp_path,
    )
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    reasoning = "".join(e["reasoningDelta"]["text"] for e in events if "reasoningDelta" in e)
    assert reasoning.startswith("Thinking")  # in the JSON too, where the text output hides it
    code, out, err = await run_process(CLI, "health", "--target", gateway.target, "--json", cwd=tmp_path)
    assert code == 0, err
    assert json.loads(out) == {"status": "SERVING"}


async def test_models_json_carries_the_aliases(tmp_path: Path) -> None:
    async with run_gateway('[providers.mock]\nkind = "mock"\n[aliases]\nquick = "mock/echo"\n') as gw:
        code, out, err = await run_process(CLI, "models", "--target", gw.target, "--json", cwd=tmp_path)
    assert code == 0, err
    echo = next(m for m in json.loads(out)["models"] if m["id"] == "echo")
    assert echo["aliases"] == ["quick"]


async def test_an_api_key_given_wins_over_a_key_file_from_the_environment(tmp_path: Path) -> None:
    """The clients' order (clients/python config.py): an argument beats a variable, and the key beats
    the key file; a key given on the command line is never silently replaced by a stale mounted one."""
    (tmp_path / "stale").write_text("pgw_stale_key_0000\n")
    (tmp_path / "key").write_text(KEY + "\n")
    async with run_gateway(AUTH) as gw:
        env = {**CLEAN_ENV, "PROVIDER_GATEWAY_TARGET": gw.target}
        stale_file = {**env, "PROVIDER_GATEWAY_API_KEY_FILE": str(tmp_path / "stale")}
        code, out, err = await run_process(CLI, "models", "--api-key", KEY, cwd=tmp_path, env=stale_file)
        assert code == 0, err
        assert "mock/echo" in out
        both_variables = {**stale_file, "PROVIDER_GATEWAY_API_KEY": KEY}
        code, out, err = await run_process(CLI, "models", cwd=tmp_path, env=both_variables)
        assert code == 0, err
        assert "mock/echo" in out
        stale_key = {**env, "PROVIDER_GATEWAY_API_KEY": "pgw_stale_key_0000"}
        key_file = ("--api-key-file", str(tmp_path / "key"))
        code, out, err = await run_process(CLI, "models", *key_file, cwd=tmp_path, env=stale_key)
        assert code == 0, err
        # Both on the command line: which one was meant is not guessed.
        code, out, err = await run_process(CLI, "models", "--api-key", KEY, *key_file, cwd=tmp_path, env=env)
        assert (code, out) == (1, "")
        assert "not both" in err


async def test_tls_options_that_cannot_apply_are_refused_not_ignored(gateway, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A key file without its certificate, or a certificate name to check without TLS, connected in
    plaintext as if they had not been given."""
    env = {**CLEAN_ENV, "PROVIDER_GATEWAY_TARGET": gateway.target}
    (tmp_path / "client.key").write_text("not used\n")
    for args, problem in (
        (("--key-file", str(tmp_path / "client.key")), "--cert-file and --key-file go together"),
        (("--server-name", "gateway.example.com"), "--server-name needs TLS"),
    ):
        code, out, err = await run_process(CLI, "health", *args, cwd=tmp_path, env=env)
        assert (code, out) == (1, ""), args
        assert problem in err
    key_from_env = {**env, "PROVIDER_GATEWAY_KEY_FILE": str(tmp_path / "client.key")}
    code, out, err = await run_process(CLI, "health", cwd=tmp_path, env=key_from_env)
    assert (code, out) == (1, "")
    assert "go together" in err
