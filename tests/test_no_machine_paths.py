"""No path of the machine that built the project belongs in a committed file."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MACHINE_PATH = re.compile(r"(?<![\w.])/(?:work|root|tmp)/")


def machine_paths(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if MACHINE_PATH.search(line)]


def test_no_committed_file_names_a_machine_path() -> None:
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    found = []
    for name in listed.stdout.splitlines():
        path = ROOT / name
        if not path.is_file() or name.endswith((".lock", ".png")):
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        found += [f"{name}: {line}" for line in machine_paths(text)]
    assert found == []


def test_the_check_tells_a_machine_path_from_a_url_or_a_relative_one() -> None:
    root = "/"  # split so that this file does not name a machine path itself
    assert machine_paths(f"see {root}work/shared/docs/x.md\ncat > {root}tmp/a.py")
    assert not machine_paths("https://example.com/work/x and ../shared/docs/x.md and ./tmp/x")
