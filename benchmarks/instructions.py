"""Instructions per call, counted by valgrind's callgrind (issue 15): the gateway, the minimal relay
and a bare grpc.aio server, each relaying the same calls, as user-space instructions of the server
process per call.

    .venv/bin/python benchmarks/instructions.py                 # the table, 6-12 minutes on 2 cores
    .venv/bin/python benchmarks/instructions.py --json
    .venv/bin/python benchmarks/instructions.py --by-function   # + the gateway's top Python functions
    .venv/bin/python benchmarks/instructions.py --targets --by-function   # only those
    .venv/bin/python benchmarks/instructions.py --targets gateway --modes stream --calls 100

Why instructions: wall-clock and CPU-time figures on a shared 2-core VM move +-15% between
identical runs, so a change under ~10% cannot be seen with them. Instruction counts hardly depend
on the machine's load: repeated runs agreed within 3% per figure, most within 2% (2026-12-07,
benchmarks/RESULTS.md). The spread left most likely comes from timing still: at 50 concurrent
calls, how many upstream events one read brings varies from run to run.

How: each server runs under `valgrind --tool=callgrind --separate-threads=yes`; the same load
client as benchmarks/run.py (harness.load, `--concurrency` calls at a time on one channel) makes
`--warmup` calls, asks callgrind for a dump (`callgrind_control --dump`), makes `--calls` calls and
asks for a second dump; the second dump holds the instructions of the measured calls alone, per
thread. The gateway serves its OpenAI provider on benchmarks/fake_openai.py (20 tokens a stream)
configured as run.py configures it; the minimal relay (benchmarks/minimal_relay.py) relays the same
upstream; the bare grpc.aio server (benchmarks/bare_stream_server.py) answers at once, 20 text
deltas a stream. "main" is the thread that runs the event loop, "all" adds grpc's own threads.

`--by-function` runs the gateway once more under `python -X perf` (which makes every Python call
go through a small trampoline, ~10% more instructions) and maps the trampolines' addresses through
the perf map CPython writes (perf-PID.map, PID read from the dump): the instructions spent inside
each Python function and everything it called (inclusive), per call of the first of `--modes`
(streams unless told: `--modes unary --by-function` profiles unary calls), on the main thread.

Without valgrind it prints "skipped: no valgrind" and exits with status 0: valgrind is a system
tool (e.g. `apt-get install valgrind`), not a project dependency. Every process listens on
127.0.0.1 only; every process start, dump and load phase has a time limit.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import OPENAI_KEY_ENV, openai_config

from harness import procs
from harness.load import GatewayPath, run

TARGETS = {"gateway": "gateway", "minimal": "minimal relay", "bare": "bare grpc.aio"}
MODES = ("stream", "unary")
TOKENS = 20
START_TIMEOUT_S = 300.0  # a Python start under callgrind is ~50x slower; more on a loaded machine
DUMP_TIMEOUT_S = 120.0
PHASE_TIMEOUT_S = 600.0  # one warm-up or measured phase; the load harness stops its workers by then
# Where CPython's `-X perf` writes its map (perf's convention, fixed in CPython, not configurable).
PERF_MAP_DIR = Path("/", "tmp")
# Frames enclosing (nearly) all of a thread's work are left out of --by-function: the process's
# entry (runpy, cli), asyncio's runner and loop. They say nothing about where a stream's cost goes.
ENCLOSING_SHARE = 0.995


@dataclass
class Dump:
    """One thread's part of a callgrind dump."""

    pid: int
    part: int
    thread: int
    trigger: str  # the description given to `callgrind_control --dump`
    total: int  # instructions of this thread in this part
    # Instructions of the calls into each function (by callgrind's name for it), callees included:
    # the inclusive cost callgrind_annotate reports for a function that is called.
    called: dict[str, int] = field(default_factory=dict)


HEADER = re.compile(r"(pid|part|thread|events|positions|summary|totals): *(.*)")
COMPRESSED = re.compile(r"\((\d+)\)(?: (.*))?")


def parse_dump(text: str) -> Dump:
    """Read one callgrind output file (format version 1): its header, its total and the inclusive
    cost of the calls into each function."""
    header: dict[str, str] = {}
    trigger = ""
    names: dict[str, str] = {}  # name compression: fn= and cfn= share one table
    called: dict[str, int] = {}
    event = 0
    positions = 1
    callee = ""
    pending_call = False
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        first = line[0]
        if first.isdigit() or first in "+-*":
            if pending_call:  # the cost line after `calls=`: the call's inclusive cost
                costs = line.split()[positions:]
                if len(costs) > event:
                    called[callee] = called.get(callee, 0) + int(costs[event])
                pending_call = False
        elif line.startswith("cfn="):
            callee = _name(line[4:], names)
        elif line.startswith(("fn=", "jfn=")):  # jfn= (jumps) can define a name too
            _name(line.partition("=")[2], names)
        elif line.startswith("calls="):
            pending_call = True
        elif line.startswith("desc: Trigger: "):
            trigger = line.removeprefix("desc: Trigger: ").removeprefix("dump").strip()
        elif match := HEADER.fullmatch(line):
            header[match.group(1)] = match.group(2).strip()
            if match.group(1) == "events":
                event = header["events"].split().index("Ir")
            elif match.group(1) == "positions":
                positions = len(header["positions"].split())
    total = header.get("summary") or header.get("totals")
    if total is None:
        raise ValueError("not a callgrind output file: no summary or totals line")
    return Dump(
        pid=int(header.get("pid", 0)),
        part=int(header.get("part", 0)),
        thread=int(header.get("thread", 1)),
        trigger=trigger,
        total=int(total.split()[event]),
        called=called,
    )


def _name(spec: str, names: dict[str, str]) -> str:
    """A function's name from `(id) name` (defines id), `(id)` (refers to it) or a plain name."""
    match = COMPRESSED.fullmatch(spec)
    if match is None:
        return spec
    if match.group(2) is not None:
        names[match.group(1)] = match.group(2)
    return names.get(match.group(1), spec)


@dataclass(frozen=True)
class PerfMap:
    """CPython's perf map: one line per trampoline, `START SIZE py::QUALNAME:FILENAME` (hex)."""

    starts: list[int]
    entries: list[tuple[int, int, str]]

    @classmethod
    def parse(cls, text: str) -> PerfMap:
        entries = []
        for line in text.splitlines():
            parts = line.split(" ", 2)
            if len(parts) == 3:
                entries.append((int(parts[0], 16), int(parts[1], 16), parts[2].strip()))
        entries.sort()
        return cls([start for start, _, _ in entries], entries)

    def symbol(self, address: int) -> str | None:
        index = bisect.bisect_right(self.starts, address) - 1
        if index < 0:
            return None
        start, size, name = self.entries[index]
        return name if start <= address < start + size else None


JIT_ADDRESS = re.compile(r"0x([0-9a-f]+)")  # callgrind's name for code without a symbol


def python_functions(called: dict[str, int], perf_map: PerfMap) -> dict[str, int]:
    """Inclusive instructions per Python function: callgrind's unnamed functions mapped through the
    perf map. Recursive entries (`0x...'2`) are left out: their cost is in the outer entry's. Two
    code objects with one name (a qualname defined twice) add up."""
    out: dict[str, int] = {}
    for name, cost in called.items():
        match = JIT_ADDRESS.fullmatch(name)
        symbol = perf_map.symbol(int(match.group(1), 16)) if match else None
        if symbol is not None:
            readable = readable_function(symbol)
            out[readable] = out.get(readable, 0) + cost
    return out


def readable_function(symbol: str) -> str:
    """`py::Handle._run:.../asyncio/events.py` -> `Handle._run (asyncio/events.py)`: the file's
    last two path parts, enough to tell modules apart and naming no directory of the machine."""
    qualname, _, filename = symbol.removeprefix("py::").partition(":")
    if filename.startswith("<"):
        return f"{qualname} ({filename})"
    return f"{qualname} ({'/'.join(Path(filename).parts[-2:])})"


def per_call(dumps: list[Dump], trigger: str, calls: int) -> dict[str, Any]:
    """The instructions per call in the dump named `trigger`: main thread (1), all threads."""
    parts = [dump for dump in dumps if dump.trigger == trigger]
    if not parts:
        raise RuntimeError(f"callgrind wrote no dump named {trigger!r}")
    main = sum(dump.total for dump in parts if dump.thread == 1)
    return {
        "calls": calls,
        "main": round(main / calls),
        "all": round(sum(dump.total for dump in parts) / calls),
        "threads": len(parts),
    }


@dataclass
class Options:
    calls: int
    warmup: int
    concurrency: int
    modes: tuple[str, ...]


def server_command(target: str, upstream_port: int, workdir: Path) -> tuple[list[str], str]:
    """The command line (after the interpreter) of `target` and the model its clients ask for."""
    if target == "gateway":
        config = workdir / "gateway.toml"
        config.write_text(openai_config(upstream_port))
        serve = ["-m", "provider_gateway.cli", "serve", "--port", "0", "--log-level", "warning"]
        return [*serve, "--config", str(config)], "openai/bench-model"
    if target == "minimal":
        relay = str(procs.ROOT / "benchmarks" / "minimal_relay.py")
        return [relay, "--upstream", f"http://127.0.0.1:{upstream_port}/v1"], "bench-model"
    bare = str(procs.ROOT / "benchmarks" / "bare_stream_server.py")
    return [bare, "--tokens", str(TOKENS)], "x"


def request_dump(pid: int, description: str) -> None:
    subprocess.run(
        ["callgrind_control", f"--dump={description}", str(pid)],
        capture_output=True,
        timeout=DUMP_TIMEOUT_S,
        check=True,
    )


def read_dumps(out_file: Path) -> list[Dump]:
    """The requested dumps: NAME.PART-THREAD (NAME itself and NAME-THREAD are written at exit)."""
    return [parse_dump(path.read_text()) for path in sorted(out_file.parent.glob(f"{out_file.name}.*"))]


async def measure(
    target: str, upstream_port: int, options: Options, workdir: Path, perf: bool = False
) -> tuple[dict[str, Any], list[Dump]]:
    """Run `target` under callgrind, dump around each mode's measured calls; per-call figures."""
    args, model = server_command(target, upstream_port, workdir)
    out_file = workdir / f"{target}{'-perf' if perf else ''}.callgrind"
    valgrind = ["valgrind", "--tool=callgrind", "--separate-threads=yes", "--dump-instr=no"]
    python = [procs.PYTHON, *(["-X", "perf"] if perf else [])]
    server = procs.start(
        [*valgrind, f"--callgrind-out-file={out_file}", *python, *args], OPENAI_KEY_ENV, START_TIMEOUT_S
    )
    counts: dict[str, int] = {}
    try:
        async with GatewayPath(f"127.0.0.1:{server.port}", model) as path:
            for mode in options.modes:
                call = path.stream if mode == "stream" else path.unary
                await run(call, options.warmup, options.concurrency, warmup=0, max_seconds=PHASE_TIMEOUT_S)
                await asyncio.to_thread(request_dump, server.pid, f"warm-{mode}")
                stats = await run(
                    call, options.calls, options.concurrency, warmup=0, max_seconds=PHASE_TIMEOUT_S
                )
                await asyncio.to_thread(request_dump, server.pid, mode)
                counts[mode] = stats.count
    finally:
        server.stop()
    dumps = read_dumps(out_file)
    return {mode: per_call(dumps, mode, count) for mode, count in counts.items()}, dumps


def by_function(dumps: list[Dump], mode: str, calls: int, top: int) -> dict[str, Any]:
    """The top Python functions of the main thread's measured calls of `mode`, inclusive, per call."""
    main = next(dump for dump in dumps if dump.trigger == mode and dump.thread == 1)
    perf_map_path = PERF_MAP_DIR / f"perf-{main.pid}.map"
    try:
        perf_map = PerfMap.parse(perf_map_path.read_text())
    finally:
        perf_map_path.unlink(missing_ok=True)  # ours: CPython leaves it behind
    functions = python_functions(main.called, perf_map)
    enclosing = sorted(name for name, cost in functions.items() if cost >= ENCLOSING_SHARE * main.total)
    rows = sorted(
        ((name, cost) for name, cost in functions.items() if name not in enclosing), key=lambda row: -row[1]
    )
    return {
        "mode": mode,
        "main_per_call": round(main.total / calls),
        "left_out_enclosing": enclosing,
        "top": [
            {"function": name, "per_call": round(cost / calls), "share": cost / main.total}
            for name, cost in rows[:top]
        ],
    }


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"{results['date']}, {results['machine']}, {results['valgrind']}; {results['calls']} calls "
        f"after {results['warmup']} warm-up calls, {results['concurrency']} at a time.",
        "",
        "| server | call | calls | instructions per call, main thread | all threads | main thread vs minimal relay |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    floor = results["servers"].get("minimal", {})
    for target, modes in results["servers"].items():
        for mode, row in modes.items():
            ratio = f"{row['main'] / floor[mode]['main']:.2f}x" if mode in floor else "-"
            lines.append(
                f"| {TARGETS[target]} | {mode} | {row['calls']} | {row['main']:,} | {row['all']:,} | {ratio} |"
            )
    functions = results.get("by_function")
    if functions:
        lines += [
            "",
            f"Gateway under `python -X perf`, {functions['mode']} calls: {functions['main_per_call']:,} "
            "instructions per call on the main thread; the Python functions spending the most of them, "
            "callees included (left out: "
            f"{len(functions['left_out_enclosing'])} frames enclosing the whole thread, such as runpy's, "
            "the cli's and asyncio's runner and loop):",
            "",
            "| instructions per call | share of main thread | function |",
            "| --- | --- | --- |",
        ]
        lines += [
            f"| {row['per_call']:,} | {row['share']:.1%} | `{row['function']}` |" for row in functions["top"]
        ]
    return "\n".join(lines)


async def measure_all(args: argparse.Namespace, workdir: Path, valgrind: str) -> dict[str, Any]:
    options = Options(args.calls, args.warmup, args.concurrency, tuple(args.modes))
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "valgrind": valgrind,
        "calls": args.calls,
        "warmup": args.warmup,
        "concurrency": args.concurrency,
        "tokens_per_stream": TOKENS,
        "servers": {},
    }
    upstream = procs.upstream(tokens=TOKENS)
    try:
        for target in args.targets:
            print(f"{TARGETS[target]} under callgrind...", file=sys.stderr, flush=True)
            results["servers"][target], _ = await measure(target, upstream.port, options, workdir)
        if args.by_function:
            print("gateway under callgrind and python -X perf...", file=sys.stderr, flush=True)
            mode = args.modes[0]  # the first mode named: streams unless told
            profiled = Options(args.calls, args.warmup, args.concurrency, (mode,))
            figures, dumps = await measure("gateway", upstream.port, profiled, workdir, perf=True)
            results["by_function"] = by_function(dumps, mode, figures[mode]["calls"], args.top)
    finally:
        upstream.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=200, help="measured calls per mode (default 200)")
    parser.add_argument("--warmup", type=int, default=100, help="calls before the first dump (default 100)")
    parser.add_argument("--concurrency", type=int, default=50, help="calls at a time (default 50)")
    parser.add_argument(
        "--targets",
        nargs="*",
        choices=list(TARGETS),
        default=list(TARGETS),
        help="servers to measure (default all; none with --by-function: only the gateway's functions)",
    )
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--by-function", action="store_true", help="the gateway's top Python functions")
    parser.add_argument("--top", type=int, default=30, help="functions listed by --by-function")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print(json.dumps({"skipped": "no valgrind"}) if args.json else "skipped: no valgrind")
        return
    version = subprocess.run(["valgrind", "--version"], capture_output=True, text=True, timeout=30)
    with tempfile.TemporaryDirectory(prefix="instructions-") as workdir:
        results = asyncio.run(measure_all(args, Path(workdir), version.stdout.strip()))
    print(json.dumps(results, indent=1) if args.json else markdown(results))


if __name__ == "__main__":
    main()
