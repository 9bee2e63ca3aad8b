"""Generate the Python protobuf and gRPC code from proto/ into service/provider_gateway/v1, and the
Python client's copy into clients/python/provider_gateway_client/v1; and copy proto/ into
clients/node/proto, which the Node package ships and loads at run time.

Run: uv run python scripts/gen_proto.py [--out DIR] [--client-out DIR]
The test suite regenerates into a temporary folder and fails if the committed files differ.

The client carries its own copy so that it installs without the server. Both copies register the
same file, `provider_gateway/v1/provider_service.proto`, byte for byte, so one process may load both:
protobuf keeps one descriptor and one class per message.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
DEFAULT_OUT = ROOT / "service"
DEFAULT_CLIENT_OUT = ROOT / "clients" / "python"
NODE_PROTO = ROOT / "clients" / "node" / "proto"
SERVER_MODULE, CLIENT_MODULE = "provider_gateway.v1", "provider_gateway_client.v1"


def generate(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    protos = sorted(PROTO_ROOT.rglob("*.proto"))
    well_known = str(resources.files("grpc_tools") / "_proto")
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *(str(p.relative_to(PROTO_ROOT)) for p in protos),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    # Each generated folder must be a package for `provider_gateway.v1` imports to work.
    package_dirs = {(out / p.relative_to(PROTO_ROOT)).parent for p in protos}
    for folder in package_dirs:
        (folder / "__init__.py").touch()
    return sorted(f for d in package_dirs for f in d.iterdir() if f.suffix in {".py", ".pyi"})


def copy_for_client(server_v1: Path, client_out: Path) -> list[Path]:
    """The server's generated `provider_gateway.v1` modules, renamed to `provider_gateway_client.v1`."""
    target = client_out / Path(*CLIENT_MODULE.split("."))
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for source in sorted(server_v1.iterdir()):
        if source.suffix in {".py", ".pyi"}:
            text = source.read_text().replace(f"{SERVER_MODULE} import", f"{CLIENT_MODULE} import")
            # The classes' __module__; the service's full name stays `provider_gateway.v1.ProviderService`
            # (renamed, a servicer registered through the client's copy answered UNIMPLEMENTED).
            text = text.replace(f"'{SERVER_MODULE}.{source.stem}'", f"'{CLIENT_MODULE}.{source.stem}'")
            (target / source.name).write_text(text)
            written.append(target / source.name)
    return written


def copy_for_node(node_proto: Path) -> list[Path]:
    written = []
    for source in sorted(PROTO_ROOT.rglob("*.proto")):
        target = node_proto / source.relative_to(PROTO_ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
        written.append(target)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--client-out", type=Path, default=DEFAULT_CLIENT_OUT)
    ns = parser.parse_args()
    for path in generate(ns.out):
        print(path.relative_to(ns.out), file=sys.stderr)
    # The image build has no client package (.dockerignore): nothing to copy there.
    if (ns.client_out / CLIENT_MODULE.split(".")[0]).is_dir():
        for path in copy_for_client(ns.out / Path(*SERVER_MODULE.split(".")), ns.client_out):
            print(path.relative_to(ns.client_out), file=sys.stderr)
    if NODE_PROTO.parent.is_dir():
        for path in copy_for_node(NODE_PROTO):
            print(path.relative_to(ROOT), file=sys.stderr)


if __name__ == "__main__":
    main()
