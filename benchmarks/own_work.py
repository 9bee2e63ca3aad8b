"""The gateway's own work per stream, without gRPC's transport or an upstream leg (issue 15).

The server's ChatStream, composed by its edge exactly as `serve` composes it (telemetry hooks, the
decode guard, the shutdown cut, validation, conversion, routing, coalescing, the finish), is called
in this process with a stub gRPC context whose writes cost nothing, over the mock provider
answering one token: a text delta, the usage and the finish, which is what the OpenAI adapter hands
on for one read under load. What a stream costs here is the gateway's own CPU; the rest of a
relayed stream is grpc.aio's (benchmarks/minimal_relay.py --no-upstream) and the upstream leg's
(benchmarks/upstream_leg.py).

    .venv/bin/python benchmarks/own_work.py [--streams 5000] [--profile]

Process CPU time (not wall time), 50 streams at a time, after 1000 to warm up; no socket is opened.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import time
import tomllib
from typing import Any

import grpc

from provider_gateway.config import parse
from provider_gateway.server.app import GatewayServer
from provider_gateway.server.edge import EdgeInterceptor
from provider_gateway.server.event_loop import eager_asyncio_loop
from provider_gateway.v1 import provider_service_pb2 as pb

CONFIG = """
[server]
default_provider = "mock"
[providers.mock]
kind = "mock"
[providers.mock.models.one]
tokens = 1
"""
CONCURRENCY = 50


class StubContext:
    """What the edge and the servicer ask of grpc.aio's context, answered from memory."""

    def __init__(self) -> None:
        self.written = 0

    def time_remaining(self) -> float:
        return 30.0

    def invocation_metadata(self) -> tuple[Any, ...]:
        return ()

    async def write(self, message: Any) -> None:
        self.written += 1

    def code(self) -> None:
        return None

    async def abort(self, code: Any, details: str = "", trailing_metadata: Any = ()) -> None:
        raise RuntimeError(f"{code}: {details}")

    def cancelled(self) -> bool:
        return False


async def measure(streams: int, profile: bool) -> float:
    """CPU µs a stream, `streams` measured after 1000."""
    app = GatewayServer(parse(tomllib.loads(CONFIG), "own_work.py"))
    edge = EdgeInterceptor(app.telemetry.call_hooks(), app.shutdown_cut, [app.drain], 0)
    handler = grpc.unary_stream_rpc_method_handler(
        app.service.ChatStream, response_serializer=pb.StreamEvent.SerializeToString
    )
    # The edge serves a stream as a unary response: the last message comes back, sent with the status.
    call = edge.compose("/provider_gateway.v1.ProviderService/ChatStream", handler).unary_unary
    request = pb.ChatRequest(
        model="mock/one",
        messages=[pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text="Say something short.")])],
    )
    request.stream_options.usage_in_finish = True

    async def batch() -> None:
        contexts = [StubContext() for _ in range(CONCURRENCY)]
        lasts = await asyncio.gather(*(call(request, context) for context in contexts))
        # The text written, then the finish returned, to go with the status.
        assert all(context.written == 1 for context in contexts)
        assert all(lasts)

    for _ in range(1000 // CONCURRENCY):
        await batch()
    profiler = cProfile.Profile() if profile else None
    started = time.process_time()
    if profiler is not None:
        profiler.enable()
    for _ in range(streams // CONCURRENCY):
        await batch()
    if profiler is not None:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
    return (time.process_time() - started) / streams * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=int, default=5000)
    parser.add_argument(
        "--profile", action="store_true", help="cProfile's top functions (inflates the figure)"
    )
    args = parser.parse_args()
    loop = eager_asyncio_loop()
    try:
        per_stream = loop.run_until_complete(measure(args.streams, args.profile))
    finally:
        loop.close()
    print(
        f"gateway's own work: {per_stream:.1f} µs of CPU a stream ({args.streams} streams, {CONCURRENCY} at a time)"
    )


if __name__ == "__main__":
    main()
