"""CPU per Chat Completions chunk that is not plain text: reasoning tokens and tool-call argument
fragments, the chunks `ChatStreamParser.stream_text` hands to `feed` / `_delta`.

    .venv/bin/python benchmarks/openai_delta_fields.py
    PYTHONPATH=<older tree>/service .venv/bin/python benchmarks/openai_delta_fields.py   # before

Parsed chunks (no SSE, no JSON) through a fresh parser per stream: 200 `reasoning` deltas
(OpenRouter's shape without `reasoning_details`, DeepSeek's), 200 argument fragments of one call
(the id only on the first, as OpenAI sends them), and 200 plain text deltas on a `<think>`-splitting
preset for reference. CPU time (`process_time`) per chunk, best of 30 rounds of 50 streams.
"""

from __future__ import annotations

import time
from typing import Any

from provider_gateway.providers.openai.presets import PRESETS
from provider_gateway.providers.openai.stream import ChatStreamParser
from provider_gateway.providers.openai.wires import wire_for

TOKENS = 200


def chunk(delta: dict[str, Any]) -> dict[str, Any]:
    return {"id": "c", "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}


STREAMS = {
    "reasoning delta": [chunk({"reasoning": f"tok{i} "}) for i in range(TOKENS)],
    "tool argument fragment": [
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "f", "arguments": ""},
                    }
                ]
            }
        ),
        *(
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": f'"k{i}":{i},'}}]})
            for i in range(TOKENS - 1)
        ),
    ],
    "plain text delta (groq, <think> split)": [chunk({"content": f"tok{i} "}) for i in range(TOKENS)],
}


def per_chunk_us(chunks: list[dict[str, Any]], rounds: int = 30, streams: int = 50) -> float:
    wire = wire_for(PRESETS["groq"])
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(streams):
            parser = ChatStreamParser("groq", wire)
            for c in chunks:
                parser.stream_text(c)
        best = min(best, time.process_time() - start)
    return best / (streams * len(chunks)) * 1e6


def main() -> None:
    for name, chunks in STREAMS.items():
        print(f"{name:40s} {per_chunk_us(chunks):6.2f} µs per chunk")


if __name__ == "__main__":
    main()
