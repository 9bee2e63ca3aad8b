"""Docs as code: every fenced block of README.md, docs/*.md, deploy/**/README.md and the client READMEs
is run or checked, read from the files as they are at test time (tests/doc_blocks.py finds them).

- Console transcripts (`$ command` then its output) run command by command; the output must be what
  the block shows, with timings and the mock's response counter masked.
- Shell blocks without output run as one script (`set -e`) and must succeed.
- Python blocks run and print the output block that follows them; TOML, JSON, YAML and XML parse.
- Blocks another test runs verbatim are only matched to it: docs/grpcurl.md's grpcurl examples
  (tests/test_grpcurl_guide.py), the Python client README's code (tests/test_python_readme.py), the
  Node README's code (tests/test_node_sdk.py), and configuration.md's TOML (tests/test_config_docs.py,
  which loads it fully).
- Commands that cannot run here (a cluster, a toolchain no registry here offers) are listed with the
  reason and what is checked instead in docs/docs-as-code.md; the test keeps that table and this
  file's handlers in step.

Everything runs from the root of a copy of the repository (files written there stay out of the
checkout) against one `provider-gateway serve` on localhost:50051 (mock provider only), started once
for the module. If that port is taken, the server gets a free one and commands are pointed at it:
`localhost:50051` is replaced, `--target` is added to the CLI's client commands, and
PROVIDER_GATEWAY_TARGET is set (the clients' own variable).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import sys
import tomllib
import xml.etree.ElementTree as ElementTree
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from doc_blocks import ROOT, Block, all_blocks, logical_lines, scratch_copy, session_steps
from kustomize_support import BASE, find, render
from processes import VENV_BIN, GatewayProcess, run_process, start_gateway
from test_grpcurl_guide import GUIDE_EXAMPLES, normalise, port_free

from provider_gateway import config as config_module

DOCS_PORT = 50051
DOCS_ADDRESS = "localhost:50051"
EXCEPTIONS_DOC = ROOT / "docs" / "docs-as-code.md"
CLIENT_COMMANDS = ("chat", "models", "providers", "health")
MASKS = [(re.compile(r"overhead=\d+us"), "overhead=<us>")]
BLOCKS = all_blocks()


@dataclass
class Live:
    """Where the commands run: the docs' server and a copy of the repository."""

    address: str
    farm: Path

    @property
    def verbatim(self) -> bool:
        return self.address == DOCS_ADDRESS

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROVIDER_GATEWAY_")}
        env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
        if not self.verbatim:
            env["PROVIDER_GATEWAY_TARGET"] = self.address
        return env

    def point(self, command: str) -> str:
        """The command aimed at this server: the one substitution the module docstring allows."""
        if self.verbatim:
            return command
        command = command.replace(DOCS_ADDRESS, self.address)
        verbs = "|".join(CLIENT_COMMANDS)
        return re.sub(rf"(provider-gateway ({verbs}))\b", rf"\1 --target {self.address}", command)

    async def bash(
        self, script: str, cwd: Path | None = None, timeout_s: float = 120.0
    ) -> tuple[int, str, str]:
        bash = shutil.which("bash") or "/bin/bash"
        return await run_process(
            bash, "-c", script, cwd=cwd or self.farm, env=self.env(), timeout_s=timeout_s
        )


@pytest.fixture(scope="module")
async def live(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Live]:
    farm = scratch_copy(tmp_path_factory.mktemp("repository"))
    server: GatewayProcess | None = None
    if port_free(DOCS_PORT):
        with suppress(RuntimeError):  # taken between the probe and the bind
            server = await start_gateway("--port", str(DOCS_PORT), "--log-level", "warning")
    verbatim = server is not None
    if server is None:
        server = await start_gateway("--port", "0", "--log-level", "warning")
    try:
        yield Live(DOCS_ADDRESS if verbatim else server.address, farm)
    finally:
        await server.stop(graceful=True)


# --- commands that do not run here as written: docs/docs-as-code.md says why ---------------------


async def ci_runs_it(live: Live, command: str) -> None:
    """CI's entry point runs the test script, which runs the setup script first."""
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/test.sh" in ci
    assert "bash scripts/setup.sh" in (ROOT / "scripts" / "test.sh").read_text()


async def installed_in_a_clean_venv(live: Live, command: str) -> None:
    text = (ROOT / "tests" / "test_install.py").read_text()
    assert '"pip",' in text
    assert '"install",' in text
    assert '"clients" / "python"' in text


async def dry_run_secret(live: Live, command: str) -> None:
    """Created without a cluster: the Secret holds exactly the keys the shipped config reads."""
    code, out, err = await live.bash(f"{command} --dry-run=client -o yaml")
    assert code == 0, err
    secret = yaml.safe_load(out)
    config_text = find(render(BASE), "ConfigMap", "provider-gateway")["data"]["gateway.toml"]
    config = config_module.parse(tomllib.loads(config_text), "gateway.toml")
    key_envs = {p.options.string("api_key_env") for p in config.providers} - {""}
    assert (secret["kind"], secret["metadata"]["name"]) == ("Secret", "provider-gateway-keys")
    assert set(secret["data"]) == key_envs


async def rendered_not_applied(live: Live, command: str) -> None:
    """`kubectl apply -k DIR` renders DIR first: rendered here (tests/test_manifests.py validates)."""
    code, out, err = await live.bash(command.replace("kubectl apply -k", "kubectl kustomize", 1))
    assert code == 0, err
    assert [d for d in yaml.safe_load_all(out) if d]


async def protoc_inputs_exist(live: Live, command: str) -> None:
    """The recipe's proto files are where its -I path says."""
    words = shlex.split(command)
    include = words[words.index("-I") + 1]
    protos = [w for w in words if w.endswith(".proto")]
    assert protos
    for proto in protos:
        assert (ROOT / include / proto).is_file(), proto


async def go_plugins_named(live: Live, command: str) -> None:
    assert re.fullmatch(r"go install [\w./-]+/cmd/protoc-gen-go(-grpc)?@latest", command), command
    assert (
        'option go_package = "'
        in (ROOT / "proto" / "provider_gateway" / "v1" / "provider_service.proto").read_text()
    )


async def fake_upstream_starts(live: Live, command: str) -> None:
    """A server until Ctrl-C: started (on a free port), it prints the URL it listens on."""
    words = shlex.split(command)
    assert words[:2] == ["provider-gateway", "fake-upstream"]
    words[words.index("--port") + 1] = "0"
    process = await asyncio.create_subprocess_exec(
        str(VENV_BIN / words[0]), *words[1:], stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(30):
            first = (await process.stdout.readline()).decode()
    finally:
        process.terminate()
        await process.wait()
    assert re.match(r"fake \w+ upstream listening on http://127\.0\.0\.1:\d+", first), first


Handler = Callable[[Live, str], Awaitable[None]]
EXCEPTIONS: dict[str, Handler] = {
    "bash scripts/setup.sh": ci_runs_it,
    "bash scripts/test.sh": ci_runs_it,
    "pip install ./clients/python": installed_in_a_clean_venv,
    "kubectl create secret generic": dry_run_secret,
    "kubectl apply -k": rendered_not_applied,
    "go install": go_plugins_named,
    "protoc": protoc_inputs_exist,
    "provider-gateway fake-upstream": fake_upstream_starts,
}
SERVER = re.compile(r"(\.venv/bin/)?provider-gateway serve\s*(#.*)?")


def exception_for(command: str) -> str | None:
    """The docs-as-code.md row a command falls under (each part of an `a && b` chain counts)."""
    for prefix in EXCEPTIONS:
        if command.lstrip().startswith(prefix):
            return prefix
    return None


def split_chain(command: str) -> list[str]:
    return [part.strip() for part in command.split(" && ")] if " && " in command else [command]


async def run_or_check(live: Live, command: str) -> str | None:
    """None when `command` must be run by the caller, else how it was checked."""
    if SERVER.fullmatch(command.strip()):
        return "the module's live server is this command"
    prefix = exception_for(command)
    if prefix is None:
        return None
    await EXCEPTIONS[prefix](live, command.split(" #", 1)[0].strip())
    return prefix


# --- the blocks -------------------------------------------------------------------------------------


def covered_elsewhere(block: Block) -> str | None:
    if block.file == "docs/grpcurl.md" and block.body.strip() in {e.command for e in GUIDE_EXAMPLES}:
        return "tests/test_grpcurl_guide.py"
    if block.file == "clients/python/README.md" and block.language == "python":
        from test_python_readme import BLOCKS as PYTHON_README_BLOCKS

        assert block.body in {code for code, _ in PYTHON_README_BLOCKS}
        return "tests/test_python_readme.py"
    if block.file == "clients/node/README.md" and block.language == "js":
        assert len([b for b in BLOCKS if b.file == block.file and b.language == "js"]) == 1
        assert "```js\\n" in (ROOT / "tests" / "test_node_sdk.py").read_text()
        return "tests/test_node_sdk.py"
    return None


def following_output(block: Block) -> str | None:
    same_file = [b for b in BLOCKS if b.path == block.path]
    after = same_file[same_file.index(block) + 1 :]
    if after and after[0].language in {"text", "console"} and not after[0].is_session:
        return after[0].body
    return None


def masked(output: str) -> str:
    for pattern, replacement in MASKS:
        output = pattern.sub(replacement, output)
    return normalise(output)


async def check_session(live: Live, block: Block) -> None:
    for step in session_steps(block):
        if await run_or_check(live, step.command):
            continue
        # One stream, as a terminal shows it: stderr lines where they were written.
        code, out, err = await live.bash(f"exec 2>&1\n{live.point(step.command)}")
        assert masked(out + err) == masked(step.output), (
            f"{block.id}: `{step.command}` exited {code} and printed other output than the block shows"
        )


async def check_script(live: Live, block: Block) -> None:
    to_run = []
    for line in logical_lines(block.body):
        parts = split_chain(line)
        kept = [part for part in parts if not await run_or_check(live, part)]
        to_run += kept
    if to_run:
        script = "set -euo pipefail\n" + "\n".join(live.point(line) for line in to_run)
        code, out, err = await live.bash(script)
        assert code == 0, f"{block.id} failed ({code}):\n{script}\n{out}{err}"


async def check_python(live: Live, block: Block) -> None:
    expected = following_output(block)
    assert expected is not None, f"{block.id}: a python block shows its output in the next block"
    code, out, err = await run_process(
        sys.executable, "-c", live.point(block.body), cwd=live.farm, env=live.env(), timeout_s=60
    )
    assert code == 0, err
    assert masked(out) == masked(expected)


def is_command_like(body: str) -> bool:
    first = body.strip().split(maxsplit=1)[0] if body.strip() else ""
    return first.startswith("$") or bool(shutil.which(first)) or (VENV_BIN / first).exists()


def check_data(block: Block) -> None:
    if block.language == "toml":
        config_module.parse(tomllib.loads(block.body), block.id)
    elif block.language == "json":
        json.loads(block.body)
    elif block.language == "yaml":
        assert list(yaml.safe_load_all(block.body))
    elif block.language == "xml":
        ElementTree.fromstring(block.body)
    elif block.language in {"text", "console", ""}:
        # Output, a figure or a file tree. A command here would be run by nobody: tag it as shell.
        assert block.language == "text" or not is_command_like(block.body), (
            f"{block.id} looks like a command: fence it as ```shell or ```console"
        )
    else:
        pytest.fail(f"{block.id}: no check for ```{block.language} blocks; add one to this test")


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
async def test_doc_block_runs_or_is_checked(live: Live, block: Block) -> None:
    if covered_elsewhere(block):
        return
    if block.is_session:
        await check_session(live, block)
    elif block.is_script:
        await check_script(live, block)
    elif block.language == "python":
        await check_python(live, block)
    else:
        check_data(block)


def exceptions_table() -> dict[str, str]:
    """docs/docs-as-code.md's table: command prefix -> why it does not run here."""
    rows = re.findall(r"^\| `([^`]+)` \| ([^|]+) \|", EXCEPTIONS_DOC.read_text(), re.MULTILINE)
    return dict(rows)


def test_every_command_that_does_not_run_is_listed_with_its_reason() -> None:
    used = set()
    for block in BLOCKS:
        commands = (
            [s.command for s in session_steps(block)]
            if block.is_session
            else logical_lines(block.body)
            if block.is_script
            else []
        )
        used |= {exception_for(part) for command in commands for part in split_chain(command)}
    used.discard(None)
    assert set(exceptions_table()) == set(EXCEPTIONS), "docs/docs-as-code.md and EXCEPTIONS differ"
    assert used == set(EXCEPTIONS), f"rows no documented command needs any more: {set(EXCEPTIONS) - used}"
