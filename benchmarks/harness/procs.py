"""Starting the processes a benchmark measures, on loopback, and reading their memory."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
LISTENING = re.compile(rb"listening on [\w.]+:(\d+)")


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    port: int

    @property
    def pid(self) -> int:
        return self.popen.pid

    def rss_mb(self) -> float:
        return rss_mb(self.pid)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def start(args: list[str], env: dict[str, str] | None = None, timeout: float = 60.0) -> Proc:
    """Start a process that prints `listening on HOST:PORT` on stdout; return once it has."""
    popen = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={**os.environ, **(env or {})}, cwd=ROOT
    )
    assert popen.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = popen.stdout.readline()
        if not line:
            raise RuntimeError(f"{args[:3]} exited with {popen.wait()} before listening")
        match = LISTENING.search(line)
        if match:
            return Proc(popen, int(match.group(1)))
    popen.kill()
    raise RuntimeError(f"{args[:3]} did not start within {timeout} s")


def upstream(tokens: int = 20, delay_ms: float = 0.0, end_gap_ms: float = 0.0) -> Proc:
    script = str(ROOT / "benchmarks" / "fake_openai.py")
    args = [
        "--port",
        "0",
        "--tokens",
        str(tokens),
        "--delay-ms",
        str(delay_ms),
        "--end-gap-ms",
        str(end_gap_ms),
    ]
    return start([PYTHON, script, *args])


def gateway(config_text: str | None, env: dict[str, str] | None = None) -> Proc:
    args = [
        str(ROOT / ".venv" / "bin" / "provider-gateway"),
        "serve",
        "--port",
        "0",
        "--log-level",
        "warning",
    ]
    if config_text is not None:
        path = ROOT / "benchmarks" / ".run" / f"gateway-{time.monotonic_ns()}.toml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(config_text)
        args += ["--config", str(path)]
    return start(args, env)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")
