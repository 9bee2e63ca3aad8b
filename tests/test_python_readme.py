"""Docs as code: every Python block of clients/python/README.md runs against a real gateway with no
configuration, and prints the `text` block that follows it (each line of it, in order)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
from processes import run_process

README = Path(__file__).resolve().parent.parent / "clients" / "python" / "README.md"
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.DOTALL)


def python_blocks() -> list[tuple[str, str | None]]:
    """(code, expected output or None) for each python block, in README order."""
    blocks = [(m.group(1), m.group(2)) for m in BLOCK.finditer(README.read_text())]
    found = []
    for i, (language, body) in enumerate(blocks):
        if language == "python":
            after = blocks[i + 1] if i + 1 < len(blocks) else None
            found.append((body, after[1] if after and after[0] == "text" else None))
    return found


BLOCKS = python_blocks()


def test_the_readme_has_python_blocks_with_their_output() -> None:
    assert len(BLOCKS) >= 5
    assert all(expected for _, expected in BLOCKS)


@pytest.mark.parametrize(("code", "expected"), BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
async def test_readme_block_runs_and_prints_what_it_says(gateway, code: str, expected: str | None) -> None:
    # The blocks name no target: the client's own default, here pointed at the test's gateway.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVIDER_GATEWAY_")}
    env["PROVIDER_GATEWAY_TARGET"] = gateway.target
    code_, out, err = await run_process(sys.executable, "-c", code, cwd=README.parent, env=env, timeout_s=60)
    assert code_ == 0, err
    lines = out.splitlines()
    for want in (expected or "").splitlines():
        assert want in lines, f"{want!r} not in the output:\n{out}"
        lines = lines[lines.index(want) + 1 :]
