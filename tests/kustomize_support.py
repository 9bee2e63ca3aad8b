"""Rendering the Kubernetes bundle as `kubectl apply -k` would: `kubectl kustomize` (or the standalone
`kustomize build`), never a re-implementation. scripts/setup.d/kubectl.sh makes sure one is there."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "deploy" / "kubernetes"
PRODUCTION = ROOT / "deploy" / "overlays" / "production"


def renderer() -> list[str]:
    """The command that renders a kustomization directory given as its last argument."""
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    raise AssertionError("neither kubectl nor kustomize is on PATH: run scripts/setup.d/kubectl.sh")


@functools.cache
def render_text(directory: Path) -> str:
    done = subprocess.run(
        [*renderer(), str(directory)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"{' '.join(renderer())} {directory.relative_to(ROOT)}: {done.stderr}"
    return done.stdout


def render(directory: Path) -> list[dict[str, Any]]:
    """Every object of the rendered kustomization, in kustomize's order."""
    return [doc for doc in yaml.safe_load_all(render_text(directory)) if doc]


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def on_loopback(config_text: str, *, openai_url: str, anthropic_url: str, metrics_port: int = 0) -> str:
    """The shipped gateway.toml with the only changes a test on this machine needs: each provider at a
    local fake (`openai_url` without /v1), and the metrics endpoint on loopback at `metrics_port`
    (0: a free one) instead of all interfaces at the manifest's port, which may be taken here."""
    replacements = {
        "[providers.openai]\n": f'[providers.openai]\nbase_url = "{openai_url}/v1"\n',
        "[providers.anthropic]\n": f'[providers.anthropic]\nbase_url = "{anthropic_url}"\n',
        'prometheus_host = "0.0.0.0"\n': 'prometheus_host = "127.0.0.1"\n',
    }
    for old, new in replacements.items():
        assert old in config_text, old
        config_text = config_text.replace(old, new)
    port = re.search(r"^prometheus_port = \d+$", config_text, re.MULTILINE)
    assert port, "the shipped config serves no metrics"
    return config_text.replace(port.group(0), f"prometheus_port = {metrics_port}")
