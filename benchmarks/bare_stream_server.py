"""Baselines: a bare grpc.aio server-stream of StreamEvent text deltas (relay cost), and a bare
unary Chat answered at once (the floor a gRPC hop costs before any gateway work), no gateway.

python benchmarks/bare_stream_server.py --tokens 200   # prints `listening on 127.0.0.1:PORT`
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

from provider_gateway.v1 import provider_service_pb2 as pb
from provider_gateway.v1 import provider_service_pb2_grpc as pb_grpc


class Bare(pb_grpc.ProviderServiceServicer):
    def __init__(self, tokens: int) -> None:
        self.words = [f" tok{i}" for i in range(tokens)]

    async def Chat(self, request: pb.ChatRequest, context: Any) -> pb.ChatResponse:
        return pb.ChatResponse(text="".join(self.words), finish=pb.Finish(reason=pb.FINISH_REASON_STOP))

    async def ChatStream(self, request: pb.ChatRequest, context: Any) -> AsyncIterator[pb.StreamEvent]:
        for word in self.words:  # one message built per token, as the gateway does
            yield pb.StreamEvent(text_delta=pb.TextDelta(text=word))
        yield pb.StreamEvent(finish=pb.Finish(reason=pb.FINISH_REASON_STOP))


async def serve(servicer: pb_grpc.ProviderServiceServicer) -> None:
    """Serve `servicer` alone on a free loopback port until killed; print `listening on HOST:PORT`."""
    server = grpc.aio.server()
    pb_grpc.add_ProviderServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"listening on 127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=200)
    await serve(Bare(parser.parse_args().tokens))


if __name__ == "__main__":
    asyncio.run(main())
