"""The shared SSE decoder's cost: per event on a normal token stream, and on one endless line.

    .venv/bin/python benchmarks/wire_decoders.py
    git show REV:service/provider_gateway/wire/sse.py > sse_rev.py
    .venv/bin/python benchmarks/wire_decoders.py --sse-file sse_rev.py   # an earlier decoder

Per event: 1,000 OpenAI-style chunk events fed in 120-byte and 4 KiB reads, which cut events
anywhere, and in reads of 1 and of 8 whole events, as an upstream's writes of whole events arrive
(best of 5 rounds of 20 streams). Endless line: one `data:` line of 8 MB - 100 bytes in 64 KiB reads, then its blank line
(the decoder's bound is 8 MiB, so it is still accepted).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from types import ModuleType
from typing import Any

from provider_gateway.wire import sse


def load(path: str | None) -> ModuleType:
    if path is None:
        return sse
    spec = importlib.util.spec_from_file_location("sse_under_test", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


EVENTS = [b'data: {"choices":[{"delta":{"content":"tok%d"}}]}\n\n' % i for i in range(1000)]


def per_event_us(decoder_class: Any, read_size: int) -> float:
    data = b"".join(EVENTS)
    return per_event_in_reads_us(
        decoder_class, [data[i : i + read_size] for i in range(0, len(data), read_size)]
    )


def per_event_in_whole_reads_us(decoder_class: Any, events_per_read: int) -> float:
    reads = [b"".join(EVENTS[i : i + events_per_read]) for i in range(0, len(EVENTS), events_per_read)]
    return per_event_in_reads_us(decoder_class, reads)


def per_event_in_reads_us(decoder_class: Any, chunks: list[bytes]) -> float:
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(20):
            decoder = decoder_class()
            events = sum(len(decoder.feed(chunk)) for chunk in chunks)
        assert events == 1000
        best = min(best, (time.perf_counter() - started) / 20 / 1000 * 1e6)
    return best


def endless_line_ms(decoder_class: Any) -> float:
    line = b"data: " + b"x" * (8 * 1024 * 1024 - 100)
    chunks = [line[i : i + 65536] for i in range(0, len(line), 65536)] + [b"\n\n"]
    decoder = decoder_class()
    started = time.perf_counter()
    events = sum(len(decoder.feed(chunk)) for chunk in chunks)
    assert events == 1
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sse-file", help="measure this sse.py instead of the installed one")
    decoder_class = load(parser.parse_args().sse_file).SseDecoder
    print("| measure | value |\n| --- | --- |")
    for size in (120, 4096):
        print(f"| per event, {size}-byte reads | {per_event_us(decoder_class, size):.2f} µs |")
    for count in (1, 8):
        print(
            f"| per event, reads of {count} whole events | {per_event_in_whole_reads_us(decoder_class, count):.2f} µs |"
        )
    print(f"| one 8 MB line in 64 KiB reads | {endless_line_ms(decoder_class):.0f} ms |")


if __name__ == "__main__":
    main()
