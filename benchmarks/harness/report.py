"""Turning a run's figures into the table, the plot and the Headline section of RESULTS.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- headline:begin -->", "<!-- headline:end -->"


def _verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def headline(r: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(target, measured, baseline/ratio, verdict) rows."""
    seq = r["sequential"]
    d, g = seq["direct"], seq["gateway"]
    added_p50 = g["unary"]["p50_ms"] - d["unary"]["p50_ms"]
    added_p99 = g["unary"]["p99_ms"] - d["unary"]["p99_ms"]
    added_ttft = g["stream"]["ttft_p50_ms"] - d["stream"]["ttft_p50_ms"]
    direct50, c50, c50_measured, c50_floor = _streams_at_50(r)
    relay = r["relay_us_per_token"]
    mem = r["memory"]
    reuse = r["connection_reuse"]["reuse_pct"]
    grpc_floor = seq.get("bare grpc.aio", {}).get("unary", {}).get("p50_ms")
    floor = f"; bare grpc.aio hop {grpc_floor:.2f} ms" if grpc_floor is not None else ""
    dispatch = r.get("dispatch_overhead", {})
    rows = []
    if dispatch:
        rows.append(
            (
                "dispatch overhead p50 < 1 ms (gateway-reported)",
                f"unary {dispatch['unary_p50_ms']:.2f} ms, stream {dispatch['stream_p50_ms']:.2f} ms",
                f"p99 {dispatch['unary_p99_ms']:.2f} / {dispatch['stream_p99_ms']:.2f} ms",
                _verdict(max(dispatch["unary_p50_ms"], dispatch["stream_p50_ms"]) < 1),
            )
        )
    if ratios := r.get("added_ratios"):
        unary_sum, ttft_sum = ratios["unary_sum_ms"], ratios["ttft_sum_ms"]

        def floor_of(key: str) -> str:  # the minimal relay's ratio, where the run measured it
            return f"; minimal relay {ratios[f'minimal_{key}']:.2f}x" if f"minimal_{key}" in ratios else ""

        rows += [
            (
                "unary p50 <= 1.3x (direct + bare grpc.aio p50)",
                f"{g['unary']['p50_ms']:.2f} ms = {ratios['unary_p50_ratio']:.2f}x",
                f"sum {unary_sum:.2f} ms{floor_of('unary_p50_ratio')}",
                _verdict(ratios["unary_p50_ratio"] <= 1.3),
            ),
            (
                "TTFT p50 <= 1.3x (direct + bare grpc.aio TTFT p50)",
                f"{g['stream']['ttft_p50_ms']:.2f} ms = {ratios['ttft_p50_ratio']:.2f}x",
                f"sum {ttft_sum:.2f} ms{floor_of('ttft_p50_ratio')}",
                _verdict(ratios["ttft_p50_ratio"] <= 1.3),
            ),
            (
                "unary p99 <= 2x (direct + bare grpc.aio p50)",
                f"{g['unary']['p99_ms']:.2f} ms = {ratios['unary_p99_ratio']:.2f}x",
                f"sum {unary_sum:.2f} ms{floor_of('unary_p99_ratio')}",
                _verdict(ratios["unary_p99_ratio"] <= 2),
            ),
        ]
    rows += [
        (
            "added latency p50 <= 1 ms (unary)",
            f"{added_p50:.2f} ms",
            f"direct {d['unary']['p50_ms']:.2f} ms{floor}",
            _verdict(added_p50 <= 1),
        ),
        (
            "added latency p99 <= 3 ms (unary)",
            f"{added_p99:.2f} ms",
            f"direct {d['unary']['p99_ms']:.2f} ms",
            _verdict(added_p99 <= 3),
        ),
        (
            "added TTFT p50 <= 1 ms (stream)",
            f"{added_ttft:.2f} ms",
            f"direct {d['stream']['ttft_p50_ms']:.2f} ms",
            _verdict(added_ttft <= 1),
        ),
        (
            "50 streams: >= 30% of direct throughput",
            c50_measured,
            f"direct {direct50:.0f}/s{c50_floor}",
            _verdict(c50 >= 0.30),
        ),
        (
            "relay per token <= 1.5x bare grpc.aio",
            f"{relay['gateway']:.1f} µs",
            f"bare {relay['bare_grpc_aio']:.1f} µs = {relay['ratio']:.2f}x",
            _verdict(relay["ratio"] <= 1.5),
        ),
        (
            "all providers <= 8 MB over mock-only",
            f"{mem['providers_share_mb']:.1f} MB RSS",
            f"tracemalloc {mem['providers_tracemalloc_mb']:.1f} MB",
            _verdict(mem["providers_share_mb"] <= 8),
        ),
        (
            "idle RSS <= 80 MB",
            f"{mem['idle_mock_only_mb']:.1f} MB",
            "mock only",
            _verdict(mem["idle_mock_only_mb"] <= 80),
        ),
        (
            "memory flat (< 5% growth)",
            f"{mem['growth_pct']:+.1f}%",
            f"{int(mem['requests_for_growth'])} requests after a {mem.get('warmup_requests', 0):.0f}-request warm-up",
            _verdict(mem["growth_pct"] < 5),
        ),
        (
            "connection reuse >= 95%",
            f"{reuse:.1f}%",
            f"{r['connection_reuse']['connections']} conns / {r['connection_reuse']['requests']} reqs",
            _verdict(reuse >= 95),
        ),
    ]
    return rows


def markdown(r: dict[str, Any]) -> str:
    lines = [
        BEGIN,
        "## Headline (benchmarks/run.py)",
        "",
        f"Run {r['date']} on {r['machine']}; versions {', '.join(f'{k} {v}' for k, v in r['versions'].items())}.",
        f"Command: `{r['command']}` ({r['elapsed_s']} s). Upstream: benchmarks/fake_openai.py, 20 tokens, no delay.",
        "",
        "| target | measured | baseline (same run) | verdict |",
        "| --- | --- | --- | --- |",
        *(f"| {a} | {b} | {c} | {v} |" for a, b, c, v in headline(r)),
        "",
        "Sequential (1 client), ms, medians of 3 interleaved rounds:",
        "",
        "| path | unary p50 | unary p99 | stream TTFT p50 | stream TTFT p99 | stream total p50 | stream total p99 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, s in r["sequential"].items():
        u, st = s["unary"], s["stream"]
        lines.append(
            f"| {name} | {u['p50_ms']:.2f} | {u['p99_ms']:.2f} | {st['ttft_p50_ms']:.2f} | {st['ttft_p99_ms']:.2f} "
            f"| {st['p50_ms']:.2f} | {st['p99_ms']:.2f} |"
        )
    lines += ["", "Concurrent streams: throughput (streams/s) and p99 (ms):", ""]
    paths = list(r["concurrency"])
    lines.append("| concurrency | " + " | ".join(f"{p} /s | {p} p99" for p in paths) + " |")
    lines.append("| --- |" + " --- | --- |" * len(paths))
    for c in next(iter(r["concurrency"].values())):
        cells = " | ".join(
            f"{r['concurrency'][p][c]['throughput']:.0f} | {r['concurrency'][p][c]['p99_ms']:.1f}"
            for p in paths
        )
        lines.append(f"| {c} | {cells} |")
    lines += _done_when_details(r)
    mem = r["memory"]
    lines += [
        "",
        f"Memory: mock-only idle {mem['idle_mock_only_mb']:.1f} MB; every provider configured {mem['idle_all_providers_mb']:.1f} MB; "
        f"{int(mem['concurrent_streams'])} concurrent streams {mem['rss_under_streams_mb']:.1f} MB; "
        f"{mem.get('before_warmup_mb', mem['idle_mock_only_mb']):.1f} -> {mem['after_warmup_mb']:.1f} MB over a "
        f"{mem.get('warmup_requests', 0):.0f}-request warm-up, then {mem['after_warmup_mb']:.1f} -> "
        f"{mem['after_requests_mb']:.1f} MB over {int(mem['requests_for_growth'])} more requests "
        f"({mem['growth_seconds']:.0f} s).",
    ]
    if "litellm_rss_mb" in r:
        lines.append(
            f"LiteLLM proxy RSS after the same load: {r['litellm_rss_mb']:.1f} MB; gateway: {r['gateway_rss_after_load_mb']:.1f} MB."
        )
    if "litellm_error" in r:
        lines.append(f"LiteLLM could not be measured: {r['litellm_error']}")
    lines += ["", "![throughput and p99 against concurrency](throughput.png)", END]
    return "\n".join(lines)


def _streams_at_50(r: dict[str, Any]) -> tuple[float, float, str, str]:
    """(direct rate, gateway share, measured cell, relay note) of the 50-stream target: the median
    of the interleaved rounds' shares when the run has them, else the sweep's single pass."""
    rounds = r.get("streams_at_50")
    if rounds is None:  # results of runs before the interleaved rounds
        direct = r["concurrency"]["direct"][50]["throughput"]
        share = r["concurrency"]["gateway"][50]["throughput"] / direct
        minimal = r["concurrency"].get("minimal relay", {}).get(50)
        floor = f"; minimal relay {minimal['throughput'] / direct * 100:.0f}%" if minimal else ""
        return direct, share, f"{share * 100:.0f}%", floor
    share = rounds["gateway share"]
    each = " / ".join(f"{s * 100:.0f}" for s in rounds["gateway shares"])
    floor = ""
    if "minimal relay share" in rounds:
        relay_each = " / ".join(f"{s * 100:.0f}" for s in rounds["minimal relay shares"])
        floor = f"; minimal relay {rounds['minimal relay share'] * 100:.0f}% ({relay_each})"
    if "gateway, usage events share" in rounds:  # runs since StreamOptions.usage_in_finish
        events_each = " / ".join(f"{s * 100:.0f}" for s in rounds["gateway, usage events shares"])
        floor += f"; read as usage events {rounds['gateway, usage events share'] * 100:.0f}% ({events_each})"
    if "gateway, unbatched share" in rounds:  # runs since StreamOptions.batch_events
        plain_each = " / ".join(f"{s * 100:.0f}" for s in rounds["gateway, unbatched shares"])
        floor += f"; read unbatched {rounds['gateway, unbatched share'] * 100:.0f}% ({plain_each})"
    if "lean relay share" in rounds:  # runs since 2026-12-07 13:00: an asyncio Protocol upstream leg
        lean_each = " / ".join(f"{s * 100:.0f}" for s in rounds["lean relay shares"])
        floor += f"; lean relay {rounds['lean relay share'] * 100:.0f}% ({lean_each})"
    if "grpc.aio alone share" in rounds:  # runs since 2026-12-07 13:00: the bound without an upstream leg
        alone_each = " / ".join(f"{s * 100:.0f}" for s in rounds["grpc.aio alone shares"])
        floor += f"; grpc.aio alone, no upstream {rounds['grpc.aio alone share'] * 100:.0f}% ({alone_each})"
    measured = f"{share * 100:.0f}% (median of rounds {each}%)"
    return rounds["direct"], share, measured, floor


def _done_when_details(r: dict[str, Any]) -> list[str]:
    """Issue 15's done-when figures beyond the table: workers, CPU per token, allocations."""
    lines: list[str] = []
    if workers := r.get("workers"):
        lines += [
            "",
            "50 streams through `serve --workers N` (gateway, upstream and load client share the cores):",
            "",
            "| workers | streams/s | direct just before | share of direct | TTFT p50 ms | CPU s: gateway | upstream | load client |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for count, row in workers.items():
            cpu = row["cpu_s"]
            lines.append(
                f"| {count} | {row['streams_per_s']:.0f} | {row.get('direct_streams_per_s', 0):.0f} | {row['share_of_direct'] * 100:.1f}% | "
                f"{row['ttft_p50_ms']:.1f} | {cpu['gateway']:.2f} | {cpu['upstream']:.2f} | {cpu['load client']:.2f} |"
            )
    relay = r["relay_us_per_token"]
    if "cpu_ratio" in relay:
        lines += [
            "",
            f"Server CPU time: gateway {relay['gateway_cpu_us']:.1f} µs per relayed token (mock, 200 tokens a stream) "
            f"against bare grpc.aio {relay['bare_grpc_aio_cpu_us']:.1f} µs per message = {relay['cpu_ratio']:.2f}x.",
        ]
    if alloc := r.get("allocations"):
        lines += [
            "",
            f"Allocations: {alloc['cumulative']['serialize']:.1f} heap blocks per relayed token, SSE bytes to "
            f"serialized StreamEvent (benchmarks/allocations.py, {alloc['tokens']} tokens, counted by a preloaded malloc counter).",
        ]
    return lines


def plot(r: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name, by_c in r["concurrency"].items():
        cs = [int(c) for c in by_c]
        left.plot(cs, [v["throughput"] for v in by_c.values()], marker="o", label=name)
        right.plot(cs, [v["p99_ms"] for v in by_c.values()], marker="o", label=name)
    for axis, title in ((left, "streams per second"), (right, "stream p99 (ms)")):
        axis.set_xscale("log")
        axis.set_xlabel("concurrent streams")
        axis.set_title(title)
        axis.legend()
    right.set_yscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True


def write_results(r: dict[str, Any], headline: bool = True) -> None:
    """Print the section; with `headline`, also write results.json, the plot and RESULTS.md's
    headline, else only results-quick.json (a smoke run never replaces the headline)."""
    section = markdown(r)
    print(section)
    if not headline:
        (HERE / "results-quick.json").write_text(json.dumps(r, indent=2, default=str))
        return
    (HERE / "results.json").write_text(json.dumps(r, indent=2, default=str))
    plot(r, HERE / "throughput.png")
    results_md = HERE / "RESULTS.md"
    text = results_md.read_text() if results_md.exists() else "# Benchmark results\n"
    if BEGIN in text and END in text:
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        text = head + section + tail
    else:
        title, _, body = text.partition("\n")
        text = f"{title}\n\n{section}\n{body}"
    results_md.write_text(text)
