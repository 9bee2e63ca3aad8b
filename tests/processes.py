"""Real processes for tests: `provider-gateway serve` as its own process, and bounded commands.

Every wait is bounded, and a process still running when its test ends is killed.
"""

from __future__ import annotations

import asyncio
import re
import sys
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


@dataclass
class GatewayProcess:
    """A started `provider-gateway serve` and everything it printed."""

    process: asyncio.subprocess.Process
    port: int
    output: list[str] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def stop(self, *, graceful: bool = False, timeout_s: float = 15.0) -> int:
        """SIGTERM (a drain) when graceful, else SIGKILL; returns the exit code."""
        if self.process.returncode is None:
            if graceful:
                self.process.terminate()
                with suppress(TimeoutError):
                    async with asyncio.timeout(timeout_s):
                        await self.process.wait()
            if self.process.returncode is None:
                self.process.kill()
        code = await self.process.wait()
        if self.reader:
            with suppress(asyncio.CancelledError):
                await self.reader
        return code


async def start_gateway(*serve_args: str) -> GatewayProcess:
    """Start `provider-gateway serve ARGS` and wait (bounded) for its 'listening on' line; what
    it printed before that line starts its output."""
    process = await asyncio.create_subprocess_exec(
        str(VENV_BIN / "provider-gateway"),
        "serve",
        *serve_args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    before: list[str] = []  # what it logged while starting (an unreachable Redis, say)
    match = None
    try:
        async with asyncio.timeout(30):
            while match is None and (line := (await process.stdout.readline()).decode()):
                match = re.search(r"listening on [\d.]+:(\d+)", line)
                if match is None:
                    before.append(line)
    except TimeoutError:
        before.append("(no 'listening on' line within 30 s)")
    if match is None:
        with suppress(ProcessLookupError):  # it may have exited already: say what it printed
            process.kill()
        await process.wait()
        raise RuntimeError(f"provider-gateway serve {' '.join(serve_args)} did not start: {before!r}")
    gateway = GatewayProcess(process, int(match.group(1)), before)

    async def keep_reading() -> None:  # a full pipe would block the server's logging
        assert process.stdout is not None
        async for line in process.stdout:
            gateway.output.append(line.decode())

    gateway.reader = asyncio.create_task(keep_reading())
    return gateway


async def run_process(
    *argv: str, cwd: Path, env: dict[str, str] | None = None, timeout_s: float = 30.0
) -> tuple[int, str, str]:
    """Run a command to its end (killed after timeout_s); returns (exit code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        async with asyncio.timeout(timeout_s):
            stdout, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()
