"""Every grpcurl command in docs/grpcurl.md runs verbatim against a live gateway and prints what
the guide shows.

A gateway (mock provider only, as `provider-gateway serve` starts it) listens on the guide's port
50051. If that port is taken on this machine, the test uses a free port and replaces
`localhost:50051` in the commands, the one substitution the guide documents. Numbers that change
from run to run (timings, latencies, the mock's response counter) are masked before comparing.

Regenerate the pasted outputs after changing a command:
    uv run python tests/test_grpcurl_guide.py --update
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import pytest
from processes import VENV_BIN, GatewayProcess, run_process, start_gateway

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "grpcurl.md"
GUIDE_ADDRESS = "localhost:50051"
GUIDE_PORT = 50051

# A ```sh block whose first word is grpcurl, then (after blank lines only) a ```text block: its output.
EXAMPLE = re.compile(r"```sh\n(grpcurl[^`]*?)```\s*\n```text\n(.*?)```", re.DOTALL)
VOLATILE = [
    (re.compile(r'("\w*(?:_us|Us)": )"\d+"'), r'\1"<us>"'),
    (re.compile(r'("(?:response_id|responseId)": )"mock-\d+"'), r'\1"mock-<n>"'),
    # -max-time races the server's own deadline: either side may report it first.
    (re.compile(r"Message: Deadline Exceeded"), "Message: context deadline exceeded"),
]


@dataclass(frozen=True)
class Example:
    command: str
    output: str
    start: int  # offsets of the output in the guide, for --update
    end: int

    @property
    def name(self) -> str:
        words = self.command.split()
        method = next((w for w in reversed(words) if "/" in w or w in {"list", "describe"}), words[-1])
        return re.sub(r"\W+", "-", method)[-60:]


def examples(text: str) -> list[Example]:
    return [Example(m.group(1).strip(), m.group(2), m.start(2), m.end(2)) for m in EXAMPLE.finditer(text)]


def normalise(output: str) -> str:
    for pattern, replacement in VOLATILE:
        output = pattern.sub(replacement, output)
    return "\n".join(line.rstrip() for line in output.strip().splitlines())


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass(frozen=True)
class LiveServer:
    address: str

    def command(self, example: Example) -> str:
        return example.command.replace(GUIDE_ADDRESS, self.address)


async def start_server(port: int) -> GatewayProcess:
    """`provider-gateway serve`, as the guide starts it."""
    return await start_gateway("--port", str(port), "--log-level", "warning")


@pytest.fixture(scope="module")
async def live_server() -> AsyncIterator[LiveServer]:
    server = None
    if port_free(GUIDE_PORT):
        with suppress(RuntimeError):  # taken between the probe and the bind: another run here
            server = await start_server(GUIDE_PORT)
    verbatim = server is not None
    if server is None:
        server = await start_server(0)
    try:
        yield LiveServer(GUIDE_ADDRESS if verbatim else server.address)
    finally:
        await server.stop(graceful=True)


async def run(command: str) -> tuple[int, str]:
    """Run a command as a person would in a shell at the repository root, with .venv/bin on PATH."""
    env = dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    code, stdout, stderr = await run_process(
        shutil.which("bash") or "/bin/bash", "-c", command, cwd=ROOT, env=env
    )
    return code, stdout + stderr  # grpcurl prints errors last, after any output


GUIDE_EXAMPLES = examples(GUIDE.read_text())


def test_guide_covers_every_rpc() -> None:
    commands = " ".join(e.command for e in GUIDE_EXAMPLES)
    for rpc in (
        "Chat",
        "ChatStream",
        "Complete",
        "CompleteStream",
        "ListModels",
        "CountTokens",
        "Embed",
        "ListProviders",
    ):
        assert f"provider_gateway.v1.ProviderService/{rpc} " in commands + " ", rpc
    assert "grpc.health.v1.Health/Check" in commands
    assert "grpc.health.v1.Health/Watch" in commands
    assert " list" in commands
    assert " describe " in commands
    assert "-import-path proto -proto provider_gateway/v1/provider_service.proto" in commands
    # The file on disk has exactly as many grpcurl blocks as examples with output: none is left untested.
    assert GUIDE.read_text().count("```sh\ngrpcurl") == len(GUIDE_EXAMPLES)


@pytest.mark.parametrize("example", GUIDE_EXAMPLES, ids=[e.name for e in GUIDE_EXAMPLES])
async def test_guide_command_prints_the_documented_output(live_server: LiveServer, example: Example) -> None:
    code, output = await run(live_server.command(example))
    expects_error = "ERROR:" in example.output
    assert (code != 0) == expects_error, output
    assert normalise(output) == normalise(example.output), (
        "docs/grpcurl.md shows other output than the server now gives: if the change is intended, "
        "run `uv run python tests/test_grpcurl_guide.py --update` and review the diff"
    )


async def _update() -> None:
    """Rewrite every pasted output with what the command prints now (server on a free port)."""
    text = GUIDE.read_text()
    process = await start_server(0)
    server = LiveServer(process.address)
    try:
        for example in reversed(examples(text)):  # from the end, so earlier offsets stay valid
            _, output = await run(server.command(example))
            text = text[: example.start] + output.rstrip("\n") + "\n" + text[example.end :]
    finally:
        await process.stop(graceful=True)
    GUIDE.write_text(text)


if __name__ == "__main__" and "--update" in sys.argv:
    asyncio.run(_update())
