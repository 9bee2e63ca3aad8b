"""The fenced blocks of the project's Markdown, read generically: which are commands, which are their
output, which are data. tests/test_doc_blocks.py runs or checks every one of them."""

from __future__ import annotations

import os
import re
import shutil
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
    re.DOTALL | re.MULTILINE,
)
SHELLS = {"sh", "shell", "bash", "console", "zsh"}


def doc_files() -> list[Path]:
    """README.md, docs/*.md, every README under deploy/, and the client READMEs."""
    found = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    found += sorted((ROOT / "deploy").rglob("README.md"))
    found += sorted((ROOT / "clients").glob("*/README.md"))
    return [p for p in found if p.is_file()]


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    language: str
    body: str

    @property
    def file(self) -> str:
        return self.path.relative_to(ROOT).as_posix()

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def is_session(self) -> bool:
        """A console transcript: `$ command` lines, each followed by what it printed."""
        return self.language in SHELLS and any(line.startswith("$ ") for line in self.body.splitlines())

    @property
    def is_script(self) -> bool:
        """Commands without output, one after the other (a console block without `$` is output)."""
        return self.language in SHELLS - {"console"} and not self.is_session


def blocks(path: Path) -> list[Block]:
    text = path.read_text()
    return [
        Block(
            path,
            text.count("\n", 0, m.start()) + 1,
            m.group("lang").lower(),
            textwrap.dedent(m.group("body")),
        )
        for m in FENCE.finditer(text)
    ]


def all_blocks() -> list[Block]:
    return [b for path in doc_files() for b in blocks(path)]


def logical_lines(script: str) -> list[str]:
    """Commands of a script: backslash continuations joined; blank and comment-only lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", script)
    return [line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


@dataclass(frozen=True)
class Step:
    command: str
    output: str


def session_steps(block: Block) -> list[Step]:
    """(command, output) pairs of a console transcript; continuation lines belong to the command."""
    steps: list[Step] = []
    lines = block.body.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.startswith("$ "):
            raise AssertionError(f"{block.id}: output before any command: {line!r}")
        command = [line[2:]]
        while command[-1].endswith("\\") and i + 1 < len(lines):
            i += 1
            command.append(lines[i])
        output = []
        while i + 1 < len(lines) and not lines[i + 1].startswith("$ "):
            i += 1
            output.append(lines[i])
        steps.append(Step(re.sub(r"\\\n\s*", " ", "\n".join(command)), "\n".join(output)))
        i += 1
    return steps


def scratch_copy(target: Path) -> Path:
    """A copy of the repository, so that commands run verbatim from its root can write (generated
    code, scratch files) without touching the checkout. Files are copied (kustomize refuses to read
    through symlinks); environments, installed packages and .git are linked whole."""
    linked_whole = {".git", ".venv", ".venv-envoy", "node_modules"}
    skipped = {"__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".run"}
    for directory, subdirs, files in os.walk(ROOT):
        here = Path(directory)
        mirror = target / here.relative_to(ROOT)
        mirror.mkdir(exist_ok=True)
        for name in list(subdirs):
            if name in linked_whole or name.startswith(".venv-"):
                (mirror / name).symlink_to(here / name)
            if name in linked_whole or name in skipped or name.startswith(".venv-"):
                subdirs.remove(name)
        for name in files:
            shutil.copy2(here / name, mirror / name, follow_symlinks=False)
    return target
