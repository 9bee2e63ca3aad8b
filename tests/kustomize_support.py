"""Rendering the Kubernetes bundle as `kubectl apply -k` would: `kubectl kustomize` (or the standalone
`kustomize build`), never a re-implementation. scripts/setup.d/kubectl.sh makes sure one is there."""

from __future__ import annotations

import functools
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
