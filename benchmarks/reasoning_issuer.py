"""CPU of the stream paths the reasoning issuer touches, per event: the coalescing reader
(server/coalesce.py ReadAhead, which notes the attempt at a block-closing reasoning delta) relaying
plain text deltas, and the server edge's conversion (server/convert.py StreamMessages) of a text
delta and of a signed reasoning delta (which asks who issued it).

    .venv/bin/python benchmarks/reasoning_issuer.py
    .venv/bin/python benchmarks/reasoning_issuer.py --relay-streams 60   # one relay round, for callgrind

Instructions per relayed event: run the second form under `valgrind --tool=callgrind` with 10 and
60 streams, and divide the difference by the 10,000 extra events. Runs against whichever `provider_gateway` is first on the path (put another checkout's `service`
first on PYTHONPATH to measure it); best of 5 rounds, in-process, no network.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import time
from collections.abc import AsyncGenerator

from provider_gateway.domain import GatewayEvent, ReasoningDelta, TextDelta
from provider_gateway.server.coalesce import ReadAhead
from provider_gateway.server.convert import StreamMessages
from provider_gateway.v1 import provider_service_pb2 as pb

TOKENS = 200
STREAMS = 300
CONVERSIONS = 200_000


async def tokens() -> AsyncGenerator[GatewayEvent, None]:
    for _ in range(TOKENS):
        yield TextDelta("tok")
        await asyncio.sleep(0)  # the writer takes one token at a time, as at light load


async def relay_round(streams: int = STREAMS) -> float:
    start = time.process_time()
    for _ in range(streams):
        relay = ReadAhead(tokens())
        while not relay.ended:
            if not relay.items:
                await relay.arrival()
            relay.take()
        await relay.close()
    return (time.process_time() - start) / (streams * TOKENS)


def conversion_round(event: GatewayEvent) -> float:
    options = pb.StreamOptions()
    takes_issuer = "issuer" in inspect.signature(StreamMessages).parameters
    messages = StreamMessages(options, None, lambda: "gemini") if takes_issuer else StreamMessages(options)
    to_proto = messages.to_proto
    start = time.process_time()
    for _ in range(CONVERSIONS):
        to_proto(event)
    return (time.process_time() - start) / CONVERSIONS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--relay-streams", type=int, default=0, help="only one relay round of N streams")
    args = parser.parse_args()
    if args.relay_streams:
        asyncio.run(relay_round(args.relay_streams))
        return
    relay = min(asyncio.run(relay_round()) for _ in range(5))
    text = min(conversion_round(TextDelta("tok")) for _ in range(5))
    signed = min(conversion_round(ReasoningDelta("", signature="CiQBsig")) for _ in range(5))
    print(f"ReadAhead relay, text delta:     {relay * 1e9:8.0f} ns/event")
    print(f"StreamMessages, text delta:      {text * 1e9:8.0f} ns/event")
    print(f"StreamMessages, signed reasoning:{signed * 1e9:8.0f} ns/event")


if __name__ == "__main__":
    main()
