"""LiteLLM's proxy, installed in its own virtual environment (never a project dependency)."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from harness.procs import ROOT, Proc

VENV = ROOT / "benchmarks" / ".venv-litellm"
# LiteLLM refuses to start without a master key; the benchmark client sends this one.
MASTER_KEY = "sk-bench-" + "0123456789abcdef" * 3
VERSION = "1.108.7"  # the newest whose [proxy] extra resolves on PyPI (2026-11-24)


def ensure_installed() -> Path:
    """Create the venv with uv and install litellm[proxy] into it (once; later runs reuse it)."""
    binary = VENV / "bin" / "litellm"
    if not binary.exists():
        subprocess.run(["uv", "venv", "--clear", "--quiet", "--python", "3.11", str(VENV)], check=True)
        subprocess.run(
            [
                "uv",
                "pip",
                "install",
                "--quiet",
                "--python",
                str(VENV / "bin" / "python"),
                f"litellm[proxy]=={VERSION}",
            ],
            check=True,
        )
    return binary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(upstream_port: int, timeout: float = 120.0) -> Proc:
    binary = ensure_installed()
    config = ROOT / "benchmarks" / ".run" / "litellm.yaml"
    config.parent.mkdir(exist_ok=True)
    config.write_text(
        "model_list:\n"
        "  - model_name: bench-model\n"
        "    litellm_params:\n"
        "      model: openai/bench-model\n"
        f"      api_base: http://127.0.0.1:{upstream_port}/v1\n"
        "      api_key: sk-bench\n"
        "litellm_settings:\n"
        "  drop_params: true\n"
        "  telemetry: false\n"
    )
    port = free_port()
    popen = subprocess.Popen(
        [
            str(binary),
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={
            "PATH": f"{VENV / 'bin'}:/usr/bin:/bin",
            "LITELLM_LOG": "ERROR",
            "LITELLM_MASTER_KEY": MASTER_KEY,
            "DISABLE_SCHEMA_UPDATE": "true",
        },
        cwd=config.parent,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise RuntimeError(f"litellm exited with {popen.returncode}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health/liveliness", timeout=1).read()
            return Proc(popen, port)
        except OSError:
            time.sleep(0.5)
    popen.kill()
    raise RuntimeError("litellm proxy did not become ready")
