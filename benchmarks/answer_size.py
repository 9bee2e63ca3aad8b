"""What the edge's size check costs a unary answer (server/answer_size.py): `ByteSize()` on a typical
ChatResponse (a 600-character answer with its usage and Finish), on a 96 kB one and on a 2 MiB one,
beside the `SerializeToString()` gRPC does anyway. Best of several rounds, µs a call.

    .venv/bin/python benchmarks/answer_size.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import timeit

from google.protobuf.internal import api_implementation

from provider_gateway.v1 import provider_service_pb2 as pb


def chat_response(text: str) -> pb.ChatResponse:
    response = pb.ChatResponse(text=text)
    response.usage.input_tokens, response.usage.output_tokens = 120, 150
    finish = response.finish
    finish.reason = pb.FINISH_REASON_STOP
    finish.raw_finish_reason, finish.provider, finish.model = "stop", "openai", "gpt-4o-2024-08-06"
    finish.timing.gateway_overhead_us, finish.timing.upstream_us, finish.timing.total_us = 312, 812345, 812657
    finish.attempts.add(provider="openai", model="gpt-4o-2024-08-06")
    finish.response_id = "chatcmpl-AbCdEf0123456789"
    finish.cost.known, finish.cost.amount_micros = True, 1800
    return response


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"protobuf implementation: {api_implementation.Type()}")
    cases = {
        "typical": chat_response("The quick brown fox jumps over the lazy dog. " * 14),
        "96 kB": chat_response("a" * 96_000),
        "2 MiB": chat_response("a" * (2 << 20)),
    }
    print("| answer | bytes | ByteSize() µs | SerializeToString() µs |")
    print("| --- | --- | --- | --- |")
    for name, response in cases.items():
        calls = max(100, 100_000_000 // (response.ByteSize() * 100))
        sized = min(timeit.repeat(response.ByteSize, number=calls, repeat=args.rounds)) / calls
        encoded = min(timeit.repeat(response.SerializeToString, number=calls, repeat=args.rounds)) / calls
        print(f"| {name} | {response.ByteSize()} | {sized * 1e6:.2f} | {encoded * 1e6:.2f} |")


if __name__ == "__main__":
    main()
