"""benchmarks/instructions.py: its pure helpers on small fixture texts (no valgrind needed), and
the clear skip where valgrind is absent."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "instructions.py"
sys.path.insert(0, str(SCRIPT.parent))  # as the script itself does, for benchmarks/harness
instructions = importlib.import_module("instructions")

# A callgrind output file as callgrind 3.19 writes one per thread and dump (--dump-instr=no):
# compressed names `(id) name` defined once and then referred to by `(id)`, relative positions,
# two calls into the same unnamed (JIT) function from two callers, and a recursive entry ('2).
DUMP = """# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 4242
cmd:  python -X perf -m provider_gateway.cli serve
part: 2
thread: 1

desc: I1 cache:
desc: Timerange: Basic block 100 - 200
desc: Trigger: dump stream

positions: line
events: Ir
summary: 5000

ob=(1) libpython3.12.so
fl=(1) Python/ceval.c
fn=(1) _PyEval_EvalFrameDefault
10 300
+2 100
cob=(2) ???
cfi=(2) ???
cfn=(2) 0x0000000000001000
calls=3 0
* 1200
-1 50
cfn=(3) 0x0000000000001000'2
calls=1 0
12 400

fl=(3) Modules/_asynciomodule.c
fn=(4) task_step
5 20
cob=(2)
cfi=(2)
cfn=(2)
calls=1 0
5 800
cfn=(5) 0x0000000000002010
calls=2 0
7 600
cfn=(6) 0x0000000000009000
calls=1 0
8 70
"""

PERF_MAP = """1000 b py::Handle._run:/srv/lib/python3.12/asyncio/events.py
2000 b py::Relay.read:/srv/app/server/relay.py
2010 b py::Relay.read:/srv/app/server/relay.py
3000 b py::<module>:<frozen runpy>
"""


def test_a_dump_gives_its_header_total_and_the_inclusive_cost_of_the_calls_into_each_function() -> None:
    dump = instructions.parse_dump(DUMP)
    assert (dump.pid, dump.part, dump.thread, dump.trigger, dump.total) == (4242, 2, 1, "stream", 5000)
    # The calls into one function add up whoever the caller (1200 + 800); self costs do not count.
    assert dump.called == {
        "0x0000000000001000": 2000,
        "0x0000000000001000'2": 400,
        "0x0000000000002010": 600,
        "0x0000000000009000": 70,
    }


def test_the_instruction_count_is_read_in_the_column_of_Ir() -> None:
    text = DUMP.replace("events: Ir", "events: Dr Ir").replace("summary: 5000", "summary: 7 5000")
    text = text.replace("* 1200", "* 9 1200").replace("5 800", "5 3 800").replace("7 600", "7 600 0")
    dump = instructions.parse_dump(text)
    assert dump.total == 5000
    # A line that stops before the Ir column costs no instructions (callgrind drops trailing zeros).
    assert dump.called == {"0x0000000000001000": 2000, "0x0000000000002010": 0}


def test_a_file_without_a_total_is_refused() -> None:
    with pytest.raises(ValueError, match="no summary or totals"):
        instructions.parse_dump("# callgrind format\nversion: 1\n")


def test_unnamed_functions_are_named_through_the_perf_map() -> None:
    perf_map = instructions.PerfMap.parse(PERF_MAP)
    called = instructions.parse_dump(DUMP).called | {"0x0000000000002000": 900, "_PyEval_EvalFrameDefault": 5}
    assert instructions.python_functions(called, perf_map) == {
        # The recursive entry ('2) is inside the outer one's 2000: not added again.
        "Handle._run (asyncio/events.py)": 2000,
        # Two code objects of one name (2000, 2010) add up; 0x9000 is in no trampoline.
        "Relay.read (server/relay.py)": 1500,
    }


def test_an_address_maps_only_inside_a_trampoline() -> None:
    perf_map = instructions.PerfMap.parse(PERF_MAP)
    assert perf_map.symbol(0x1000) == "py::Handle._run:/srv/lib/python3.12/asyncio/events.py"
    assert perf_map.symbol(0x100A) == perf_map.symbol(0x1000)
    assert perf_map.symbol(0x100B) is None  # past the 11-byte trampoline
    assert perf_map.symbol(0x0FFF) is None  # before the first
    assert instructions.readable_function("py::<module>:<frozen runpy>") == "<module> (<frozen runpy>)"


def test_per_call_figures_take_the_named_dump_main_thread_apart() -> None:
    main = instructions.parse_dump(DUMP)
    grpc_thread = instructions.parse_dump(DUMP.replace("thread: 1", "thread: 3").replace("5000", "1000"))
    warm = instructions.parse_dump(DUMP.replace("dump stream", "dump warm-stream"))
    figures = instructions.per_call([warm, main, grpc_thread], "stream", calls=10)
    assert figures == {"calls": 10, "main": 500, "all": 600, "threads": 2}
    with pytest.raises(RuntimeError, match="no dump named 'unary'"):
        instructions.per_call([main], "unary", calls=10)


def test_the_table_compares_each_server_with_the_minimal_relay() -> None:
    row = {"calls": 200, "threads": 9}
    results = {
        "date": "2026-12-07 02:00 UTC",
        "machine": "x86_64, 2 cores, Python 3.12.1",
        "valgrind": "valgrind-3.19.0",
        "calls": 200,
        "warmup": 100,
        "concurrency": 50,
        "servers": {
            "gateway": {"stream": {**row, "main": 2_780_000, "all": 3_000_000}},
            "minimal": {"stream": {**row, "main": 1_720_000, "all": 1_800_000}},
        },
    }
    table = instructions.markdown(results)
    assert "| gateway | stream | 200 | 2,780,000 | 3,000,000 | 1.62x |" in table
    assert "| minimal relay | stream | 200 | 1,720,000 | 1,800,000 | 1.00x |" in table


def test_without_valgrind_the_benchmark_says_it_is_skipped(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT)],
        env={"PATH": str(tmp_path)},  # an empty directory: no valgrind on it
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout.strip()) == (0, "skipped: no valgrind")


def test_by_function_ranks_the_functions_per_call_without_the_enclosing_frames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(instructions, "PERF_MAP_DIR", tmp_path)
    perf_map = tmp_path / "perf-4242.map"  # named by the pid the dump gives
    perf_map.write_text(PERF_MAP)
    dump = instructions.parse_dump(DUMP)
    dump.called["0x0000000000003000"] = dump.total  # <module>: the whole thread
    figures = instructions.by_function([dump], dump.trigger, calls=10, top=5)
    assert figures["mode"] == dump.trigger
    assert figures["main_per_call"] == 500
    assert figures["left_out_enclosing"] == ["<module> (<frozen runpy>)"]
    assert [(row["function"], row["per_call"]) for row in figures["top"]] == [
        ("Handle._run (asyncio/events.py)", 200),
        ("Relay.read (server/relay.py)", 60),
    ]
    assert not perf_map.exists()  # CPython leaves the map behind; the benchmark removes it
