"""Imports run only down the layers: server → observability → routing → providers → wire/http → domain."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "service" / "provider_gateway"
# Higher imports lower, never the reverse. domain and errors are the floor every layer stands on.
RANK = {
    "domain": 0,
    "errors": 0,
    "pricing": 0,
    "wire": 1,
    "http": 1,
    "providers": 2,
    "routing": 3,
    "observability": 4,
    "server": 5,
}
PROTOBUF = "v1"  # the generated proto code: only the server edge converts to and from it


def imports(path: Path) -> list[tuple[int, str]]:
    """The provider_gateway packages a module imports (lazy imports inside functions included)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "provider_gateway" and len(parts) > 1:
                found.append((node.lineno, parts[1]))
    return found


def violations() -> list[str]:
    wrong = []
    for layer, rank in RANK.items():
        files = [PACKAGE / f"{layer}.py"] if (PACKAGE / f"{layer}.py").exists() else []
        files += sorted((PACKAGE / layer).rglob("*.py")) if (PACKAGE / layer).is_dir() else []
        for path in files:
            for line, target in imports(path):
                where = f"{path.relative_to(PACKAGE)}:{line} imports {target}"
                if target == PROTOBUF and layer != "server":
                    wrong.append(f"{where} (protobuf belongs to the server edge)")
                elif RANK.get(target, -1) > rank:
                    wrong.append(f"{where} (a layer above {layer})")
    return wrong


def test_imports_run_only_down_the_layers() -> None:
    assert violations() == []


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from provider_gateway.server.health import X\nimport provider_gateway.v1.pb\n")
    assert [target for _, target in imports(module)] == ["server", "v1"]
