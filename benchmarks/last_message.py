"""A stream's last message sent with the status in one gRPC batch, against grpc.aio's stream form
(server/last_message.py), on a bare grpc.aio server: no gateway, no upstream.

Each round starts a server process serving one method either as grpc.aio's server-streaming handler
(an async generator: each message a batch, then the status another) or as the edge serves
ProviderService streams (a unary-response handler that writes every message but the last and
returns the last, which grpc.aio sends with the status), and streams to it 50 at a time from this
process for a few seconds. Reports streams/s and the server process's CPU per stream, for streams
of 1 and 2 messages (what a short answer is under load, with `batch_events`).

    python benchmarks/last_message.py [--rounds 3] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import time
from typing import Any

import grpc

from provider_gateway.server.event_loop import eager_asyncio_loop

MESSAGE = b"x" * 120  # about a short answer's batch: its text and the finish
CONCURRENCY = 50


def _as_is(data: bytes) -> bytes:
    return data


def serve(form: str, messages: int, ports: Any) -> None:
    """Serve `/bench.S/Stream` in `form` ("stream" or "unary") until killed; put the port in `ports`."""

    async def as_a_stream(request: bytes, context: Any) -> Any:
        for _ in range(messages):
            yield MESSAGE

    async def as_a_unary_response(request: bytes, context: Any) -> bytes:
        for _ in range(messages - 1):
            await context.write(MESSAGE)
        return MESSAGE

    if form == "stream":
        handler = grpc.unary_stream_rpc_method_handler(as_a_stream, _as_is, _as_is)
    else:
        handler = grpc.unary_unary_rpc_method_handler(as_a_unary_response, _as_is, _as_is)

    class Generic(grpc.GenericRpcHandler):
        def service(self, handler_call_details: Any) -> Any:
            return handler

    async def main() -> None:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((Generic(),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        ports.put(port)
        await server.wait_for_termination()

    asyncio.run(main(), loop_factory=eager_asyncio_loop)


async def load(port: int, seconds: float) -> tuple[int, int]:
    """Streams done and messages read, CONCURRENCY at a time, for `seconds`."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_stream(
            "/bench.S/Stream", request_serializer=_as_is, response_deserializer=_as_is
        )
        done = read = 0
        stop = time.perf_counter() + seconds

        async def streams() -> None:
            nonlocal done, read
            while time.perf_counter() < stop:
                async for _ in call(b"request"):
                    read += 1
                done += 1

        await asyncio.gather(*(streams() for _ in range(CONCURRENCY)))
        return done, read


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(form: str, messages: int, seconds: float) -> tuple[float, float]:
    """(streams/s, server CPU µs a stream)."""
    ports: Any = multiprocessing.Queue()
    server = multiprocessing.Process(target=serve, args=(form, messages, ports))
    server.start()
    try:
        port = ports.get(timeout=30)
        asyncio.run(load(port, 0.5))  # connections open, code warm
        cpu, started = cpu_s(server.pid or 0), time.perf_counter()
        done, read = asyncio.run(load(port, seconds))
        elapsed, used = time.perf_counter() - started, cpu_s(server.pid or 0) - cpu
    finally:
        server.kill()
        server.join()
    if read != done * messages:
        raise SystemExit(f"{form}: {read} messages for {done} streams of {messages}")
    return done / elapsed, used / done * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    multiprocessing.set_start_method("spawn")
    for round_ in range(1, args.rounds + 1):
        for messages in (1, 2):
            for form in ("stream", "unary"):
                rate, cpu = measure(form, messages, args.seconds)
                label = "stream handler" if form == "stream" else "last with status"
                print(
                    f"round {round_}, {messages} message(s), {label:16}: {rate:6.0f} streams/s, "
                    f"server {cpu:4.0f} µs a stream",
                    flush=True,
                )


if __name__ == "__main__":
    main()
