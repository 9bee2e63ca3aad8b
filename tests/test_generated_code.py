"""The committed generated code is exactly what scripts/gen_proto.py makes from proto/: the server's
stubs, the Python client's own copy, and the Node package's copy of the proto."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {
    "server": (ROOT / "service", "provider_gateway/v1"),
    "python client": (ROOT / "clients" / "python", "provider_gateway_client/v1"),
}


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("generated")
    (out / "client" / "provider_gateway_client").mkdir(parents=True)
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "gen_proto.py"),
            *("--out", str(out / "server")),
            *("--client-out", str(out / "client")),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_generated_code_matches_the_proto(fresh: Path, package: str) -> None:
    root, folder = PACKAGES[package]
    generated_dir = fresh / ("server" if package == "server" else "client") / folder
    committed_dir = root / folder
    generated = sorted(p.name for p in generated_dir.iterdir() if p.suffix in {".py", ".pyi"})
    committed = sorted(p.name for p in committed_dir.iterdir() if p.suffix in {".py", ".pyi"})
    assert generated == committed, f"{package}: generated and committed file sets differ"
    stale = [n for n in generated if (generated_dir / n).read_bytes() != (committed_dir / n).read_bytes()]
    assert not stale, f"stale generated code {stale}: run `uv run python scripts/gen_proto.py` and commit"


def test_the_node_package_ships_the_repository_proto() -> None:
    for source in (ROOT / "proto").rglob("*.proto"):
        copy = ROOT / "clients" / "node" / "proto" / source.relative_to(ROOT / "proto")
        assert copy.read_bytes() == source.read_bytes(), f"{copy}: run `uv run python scripts/gen_proto.py`"


def test_server_and_client_stubs_share_one_class_per_message() -> None:
    """Both copies in one process (a test, or a service embedding the client beside the server)."""
    from provider_gateway.v1 import provider_service_pb2 as server_pb
    from provider_gateway_client.v1 import provider_service_pb2 as client_pb

    assert client_pb.ChatRequest is server_pb.ChatRequest
    assert isinstance(client_pb.ChatRequest(model="m"), server_pb.ChatRequest)
