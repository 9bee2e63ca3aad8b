"""What one request's provider_options cost the worker that serves it (a red-team finding, 2026-12-07).

Nothing bounded provider_options below [server] max_message_bytes: the servicer converted all of it
(json_format's walk, then whole numbers to ints) on the event loop, and each wire walks it again to
check, merge and encode it. `[limits] max_provider_options_bytes` now refuses options over its
encoded size first. Printed:

- served: a gateway (mock provider) gets one Chat whose options are a list of `--values` empty
  objects (the costliest shape per byte found) while small Chats go one after another beside it;
  the heavy call's time and outcome, and the slowest small Chat meanwhile (what others waited).
- checks: the bound's own check (the encoded size) on those options, and the conversion of the
  largest options of that shape the default limit admits (best of 5, ms).

    .venv/bin/python benchmarks/provider_options_size.py  (under the shared benchmark lock)
"""

from __future__ import annotations

import argparse
import asyncio

from google.protobuf import struct_pb2
from request_counts import best_ms, conversation, served_beside

from provider_gateway.server import convert, validate
from provider_gateway.v1 import provider_service_pb2 as pb


def empty_objects(values: int) -> struct_pb2.Struct:
    options = struct_pb2.Struct()
    options.update({"a": [{}] * values})
    return options


def checks(values: int) -> None:
    heavy = empty_objects(values)
    print(
        f"checks: the encoded size of {heavy.ByteSize()} bytes of options: {best_ms(heavy.ByteSize):.2f} ms"
    )
    limit = validate.DEFAULT_LIMITS.max_provider_options_bytes
    largest = empty_objects((limit - 8) // 4)  # 4 bytes an empty object, 8 for the key and list
    while largest.ByteSize() > limit:
        largest = empty_objects(len(largest["a"]) - 1)
    print(
        f"checks: converting {len(largest['a'])} empty objects in {largest.ByteSize()} bytes (the most "
        f"the default limit admits): {best_ms(lambda: convert.struct_to_dict(largest)):.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=2_000_000, help="empty objects in the options")
    args = parser.parse_args()
    heavy = pb.ChatRequest(
        model="mock/echo",
        max_tokens=1,
        messages=conversation(1, 1),
        provider_options=empty_objects(args.values),
    )
    asyncio.run(served_beside(heavy, f"options of {args.values} empty objects"))
    checks(args.values)


if __name__ == "__main__":
    main()
