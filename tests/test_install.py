"""Installs as a new user does them: into clean venvs from the package folders, and npm from the
packed tarball, never through the uv workspace (nor its lock: the installer resolves what the
package declares). What lands must be exactly what the
package declares, and nothing an index serves may carry one of our names (SECURITY.md, "Package
names": `provider-gateway` on PyPI is somebody else's project)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from served import served

ROOT = Path(__file__).resolve().parent.parent
OUR_NAMES = {"provider-gateway", "provider-gateway-server", "provider-gateway-client"}
INSTALL_TIMEOUT_S = 300
# A clean venv, an install and a server start: the suite's 60 s default is too short for that on a
# loaded 2-core machine; the subprocesses keep their own bounds.
pytestmark = pytest.mark.timeout(2 * INSTALL_TIMEOUT_S)

# Run inside the venv: every installed distribution, and the closure of what the named ones require
# (markers evaluated for this interpreter, as the installer did).
CLOSURE_SCRIPT = """
import json, re, sys
from importlib import metadata
from pip._vendor.packaging.requirements import Requirement
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
installed = {norm(d.metadata["Name"]): d for d in metadata.distributions()}
want, todo = set(), [norm(name) for name in sys.argv[1:]]
while todo:
    name = todo.pop()
    if name in want:
        continue
    want.add(name)
    for text in installed[name].requires or []:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            todo.append(norm(requirement.name))
print(json.dumps({"installed": sorted(installed), "closure": sorted(want)}))
"""


UV = shutil.which("uv")


def uv(args: list[str], timeout_s: float) -> None:
    assert UV, "uv is not installed (scripts/setup.sh installs it)"
    done = subprocess.run(
        [UV, *args],
        cwd=ROOT,  # where .python-version is, for a pyenv shim
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={**os.environ, "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]


def clean_venv(path: Path) -> Path:
    """A new venv on this interpreter with nothing but pip in it (the closure script reads the
    requirements with pip's packaging); `uv venv` makes it in a fraction of `python -m venv`'s 5 s."""
    uv(["venv", "--seed", "--quiet", "--python", sys.executable, str(path)], timeout_s=120)
    return path / "bin"


def install(bin_dir: Path, package: Path) -> None:
    """`uv pip install PACKAGE` into the venv: uv, which scripts/setup.sh installs on a fresh
    machine, resolves and builds as pip does but takes the wheels from its cache, where pip
    downloaded every one again (some 25 s of the server's install)."""
    uv(["pip", "install", "--quiet", "--python", str(bin_dir / "python"), str(package)], INSTALL_TIMEOUT_S)


def installed_and_closure(bin_dir: Path, *roots: str) -> tuple[set[str], set[str]]:
    done = subprocess.run(
        [str(bin_dir / "python"), "-c", CLOSURE_SCRIPT, *roots],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    found = json.loads(done.stdout)
    return set(found["installed"]), set(found["closure"])


def test_the_python_client_installs_only_grpcio_protobuf_and_itself(tmp_path: Path) -> None:
    bin_dir = clean_venv(tmp_path / "venv")
    install(bin_dir, ROOT / "clients" / "python")
    installed, closure = installed_and_closure(bin_dir, "provider-gateway-client")
    assert installed - {"pip"} == closure, "installed beyond what the client declares"
    _, runtime = installed_and_closure(bin_dir, "grpcio", "protobuf")
    assert closure == {"provider-gateway-client"} | runtime  # grpcio, protobuf, theirs, and the client
    assert installed & OUR_NAMES == {"provider-gateway-client"}

    # ...and it talks to a running server.
    script = (
        "import sys\n"
        "from provider_gateway_client import SyncGatewayClient\n"
        "with SyncGatewayClient(sys.argv[1]) as gateway:\n"
        "    print(gateway.health())\n"
        "    print(gateway.chat('mock/echo', 'installed from its folder').text)\n"
    )
    with served(tmp_path) as target:
        done = subprocess.run(
            [str(bin_dir / "python"), "-c", script, target], capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 0, done.stderr
    health, answer = done.stdout.splitlines()[:2]
    assert health == "SERVING"
    assert "installed from its folder" in answer


def test_the_server_installs_and_serves_under_its_own_name(tmp_path: Path) -> None:
    bin_dir = clean_venv(tmp_path / "venv")
    install(bin_dir, ROOT)
    installed, closure = installed_and_closure(bin_dir, "provider-gateway-server")
    assert installed - {"pip"} == closure
    assert installed & OUR_NAMES == {"provider-gateway-server"}
    cli = str(bin_dir / "provider-gateway")
    with served(tmp_path, cli=cli) as target:
        done = subprocess.run(
            [cli, "chat", "--target", target, "served from a clean install"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    assert "served from a clean install" in done.stdout


NPM = shutil.which("npm")


def npm(*args: str, cwd: Path) -> str:
    assert NPM, "npm is not installed (scripts/setup.d/node.sh installs it)"
    done = subprocess.run(
        [NPM, *args, "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def node_closure(project: Path, root: str) -> set[str]:
    """`root` and every package its package.json files require, as installed under node_modules."""
    want, todo = set(), [root]
    while todo:
        name = todo.pop()
        if name in want:
            continue
        want.add(name)
        manifest = json.loads((project / "node_modules" / name / "package.json").read_text())
        todo.extend(manifest.get("dependencies", {}))
    return want


def test_the_node_client_installs_from_its_tarball_alone(tmp_path: Path) -> None:
    packed = json.loads(
        npm("pack", "--json", "--pack-destination", str(tmp_path), cwd=ROOT / "clients" / "node")
    )
    files = {entry["path"] for entry in packed[0]["files"]}
    assert "proto/provider_gateway/v1/provider_service.proto" in files
    assert not [f for f in files if f.startswith("node_modules/")]
    project = tmp_path / "project"
    project.mkdir()
    (project / "package.json").write_text('{"name": "empty-project", "version": "1.0.0", "private": true}')
    npm("install", str(tmp_path / packed[0]["filename"]), cwd=project)

    name = packed[0]["name"]
    assert name == "@provider-gateway/client"
    tree = json.loads(npm("ls", "--all", "--json", cwd=project))
    installed: set[str] = set()
    todo = [tree]
    while todo:
        node = todo.pop()
        for child_name, child in node.get("dependencies", {}).items():
            installed.add(child_name)
            todo.append(child)
    assert installed == node_closure(project, name)
    assert {n for n in installed if "provider-gateway" in n} == {name}

    script = (
        "const { GatewayClient } = require('@provider-gateway/client');\n"
        "const client = new GatewayClient(process.argv[1]);\n"
        "(async () => {\n"
        "  console.log(await client.health());\n"
        "  const stream = client.chatStream({ model: 'mock/echo', prompt: 'Hi', maxTokens: 3 });\n"
        "  console.log(await stream.finalText());\n"
        "  client.close();\n"
        "})().catch((error) => { console.error(error); process.exit(1); });\n"
    )
    with served(tmp_path) as target:
        done = subprocess.run(
            ["node", "-e", script, target], cwd=project, capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["SERVING", "Mock answer: Hi"]  # the stream helper is packaged
