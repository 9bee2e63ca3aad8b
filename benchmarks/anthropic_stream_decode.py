"""CPU per event of the Anthropic Messages decoder (also Claude on Vertex), JSON already parsed.

    .venv/bin/python benchmarks/anthropic_stream_decode.py
    PYTHONPATH=<older tree>/service .venv/bin/python benchmarks/anthropic_stream_decode.py   # before

`MessagesStreamDecoder.feed` alone, on the events of two streams: 200 `text_delta` events in one
text block, and 200 `input_json_delta` events in one tool_use block (each with its start, stop and
the message's own events). CPU time (`process_time`) per event, the best of 30 rounds of 200
streams; the SSE decoder and JSON parsing are left out (benchmarks/wire_decoders.py), so what
changes in the per-event branches is not lost in them. An older tree is measured by putting its
`service` directory first on PYTHONPATH (`git archive REV service | tar -x -C DIR`).
"""

from __future__ import annotations

import time
from typing import Any

from provider_gateway.providers.anthropic.codec import MessagesStreamDecoder

DELTAS = 200
ROUNDS, STREAMS = 30, 200
MESSAGE = {"id": "msg_1", "model": "claude-sonnet-4-5", "usage": {"input_tokens": 5, "output_tokens": 1}}


def stream(block: dict[str, Any], delta: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"type": "message_start", "message": MESSAGE},
        {"type": "content_block_start", "index": 0, "content_block": block},
        *({"type": "content_block_delta", "index": 0, "delta": delta} for _ in range(DELTAS)),
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 201}},
        {"type": "message_stop"},
    ]


STREAMS_BY_NAME = {
    "text_delta": stream({"type": "text", "text": ""}, {"type": "text_delta", "text": "tok "}),
    "input_json_delta": stream(
        {"type": "tool_use", "id": "toolu_1", "name": "get", "input": {}},
        {"type": "input_json_delta", "partial_json": '"ab'},
    ),
}


def per_event_us(events: list[dict[str, Any]]) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.process_time()
        for _ in range(STREAMS):
            decoder = MessagesStreamDecoder()
            for event in events:
                decoder.feed(event)
        best = min(best, (time.process_time() - started) / STREAMS / len(events) * 1e6)
    return best


def main() -> None:
    print("| stream of | µs per event |\n| --- | --- |")
    for name, events in STREAMS_BY_NAME.items():
        print(f"| {DELTAS} {name} | {per_event_us(events):.3f} |")


if __name__ == "__main__":
    main()
