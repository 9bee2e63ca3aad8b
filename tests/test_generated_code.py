"""The committed generated code is exactly what scripts/gen_proto.py makes from proto/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "service" / "provider_gateway" / "v1"


def test_generated_code_matches_the_proto(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    fresh = tmp_path / "provider_gateway" / "v1"
    generated = sorted(p.name for p in fresh.iterdir() if p.suffix in {".py", ".pyi"})
    committed = sorted(p.name for p in COMMITTED.iterdir() if p.suffix in {".py", ".pyi"})
    assert generated == committed, "generated and committed file sets differ"
    stale = [name for name in generated if (fresh / name).read_bytes() != (COMMITTED / name).read_bytes()]
    assert not stale, f"stale generated code {stale}: run `uv run python scripts/gen_proto.py` and commit"
