"""A gateway in a child process, as a user starts it: `provider-gateway serve --port 0`."""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BIN = Path(sys.executable).parent
CLI = str(BIN / "provider-gateway")
START_TIMEOUT_S = 60.0  # the machine is shared; starting is normally about a second


def read_line(stream: object, timeout_s: float) -> str:
    """One line of a child's pipe, or an AssertionError after `timeout_s`."""
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)  # type: ignore[arg-type]
        if not selector.select(timeout_s):
            raise AssertionError(f"no output within {timeout_s} s")
    return stream.readline()  # type: ignore[attr-defined, no-any-return]


def read_some(fd: int, timeout_s: float) -> bytes:
    """Whatever bytes the pipe has now, waiting up to `timeout_s` for the first of them."""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        if not selector.select(timeout_s):
            raise AssertionError(f"no output within {timeout_s} s")
    return os.read(fd, 65536)


@contextmanager
def served(log_dir: Path, *args: str, cli: str = CLI) -> Iterator[str]:
    """Start the server, yield its `host:port`, stop it with SIGTERM afterwards."""
    log = (log_dir / "server.log").open("w")
    proc = subprocess.Popen(
        [cli, "serve", "--port", "0", *args], stdout=subprocess.PIPE, stderr=log, text=True
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        line = ""
        while "listening on" not in line:
            if proc.poll() is not None:
                raise AssertionError(
                    f"server exited {proc.returncode}: {(log_dir / 'server.log').read_text()}"
                )
            line = read_line(proc.stdout, max(deadline - time.monotonic(), 0.1))
        yield line.split("listening on", 1)[1].strip()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@contextmanager
def child(*command: str) -> Iterator[subprocess.Popen[bytes]]:
    """A client process whose stdout the test reads as it comes; killed if the test leaves early."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
