"""The public proto is lint-clean under buf (buf.yaml: STANDARD + COMMENTS, documented exceptions).

buf comes from the npm package @bufbuild/buf, installed by scripts/setup.d/node.sh.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from processes import run_process

ROOT = Path(__file__).resolve().parent.parent
BUF = ROOT / "clients" / "node" / "node_modules" / ".bin" / "buf"
PROTO = ROOT / "proto" / "provider_gateway" / "v1" / "provider_service.proto"


async def buf(*args: str, cwd: Path = ROOT) -> tuple[int, str]:
    assert BUF.exists(), "buf is missing: run scripts/setup.d/node.sh"
    code, stdout, stderr = await run_process(str(BUF), *args, cwd=cwd, timeout_s=60)
    return code, stdout + stderr


async def test_proto_is_lint_clean() -> None:
    code, output = await buf("lint")
    assert code == 0, output


async def test_proto_is_buf_formatted() -> None:
    code, output = await buf("format", "--diff", "--exit-code")
    assert code == 0, output


@pytest.fixture
def proto_copy(tmp_path: Path) -> Path:
    """The repository's buf.yaml and proto/ in a scratch folder, to break on purpose."""
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    shutil.copytree(ROOT / "proto", tmp_path / "proto")
    return tmp_path


@pytest.mark.parametrize(
    ("original", "broken", "complaint"),
    [
        # A field without its comment.
        ("  // Who wrote the message.\n  Role role = 1;", "  Role role = 1;", "non-empty comment"),
        # A field named in camelCase.
        ("string media_type = 3;", "string mediaType = 3;", "lower_snake_case"),
        # An enum value without the enum's prefix.
        ("ROLE_TOOL = 4;", "TOOL = 4;", "prefixed"),
    ],
    ids=["uncommented-field", "camel-case-field", "unprefixed-enum-value"],
)
async def test_lint_catches_convention_breaks(
    proto_copy: Path, original: str, broken: str, complaint: str
) -> None:
    path = proto_copy / PROTO.relative_to(ROOT)
    text = path.read_text()
    assert original in text
    path.write_text(text.replace(original, broken, 1))
    code, output = await buf("lint", cwd=proto_copy)
    assert code != 0
    assert complaint in output
