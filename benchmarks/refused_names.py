"""What a budget key's refused requests cost the gateway (review-sec #1, #2): loop time and memory.

A key with a budget has its requests' worst case planned by the auth interceptor. That ran before
the request's names were checked, so a request refused as INVALID_ARGUMENT (a model name of
megabytes, hundreds of thousands of fallbacks) was planned first, on the event loop, and its plan
kept. One in-process gateway (mock provider, no I/O upstream), one key with a day's token budget:

  fallbacks  wall time of one Chat naming N fallbacks, refused (what the worker's loop is held)
  names      peak RSS after K Chats each naming a 3 MB model, refused, and the characters of names
             the worst case's plans still hold
  per call   the interceptor's own added work on an ordinary request, `time.process_time` per call
             (median of 5 rounds of 20000): reading the key (`presented_key`) and, when it exists,
             checking the names first (`validate.names`)

Run from the checkout's root; to measure another checkout, put its `service` folder first on
PYTHONPATH. Usage: .venv/bin/python benchmarks/refused_names.py [--names 20] [--fallbacks 250000]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import time
import tomllib

import grpc

from provider_gateway import config as config_module
from provider_gateway.server import auth, validate
from provider_gateway.server.app import GatewayServer
from provider_gateway.v1 import provider_service_pb2 as pb

KEY = "bench-key-0123456789abcdefghijklmnop"
METADATA = (("user-agent", "grpc-python"), ("authorization", f"Bearer {KEY}"))


def config(limits: str) -> str:
    return f'[providers.mock]\nkind = "mock"\n[[auth.keys]]\nname = "bench"\nsha256 = "{auth.hash_key(KEY)}"\n{limits}\n'


def chat(model: str, fallbacks: list[str] | None = None) -> pb.ChatRequest:
    return pb.ChatRequest(
        model=model,
        fallbacks=fallbacks or [],
        max_tokens=10,
        messages=[pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text="hi")])],
    )


async def refused(stub: object, request: pb.ChatRequest) -> str:
    try:
        await stub.Chat(request, metadata=METADATA, timeout=120)  # type: ignore[attr-defined]
    except grpc.aio.AioRpcError as error:
        return error.code().name
    return "OK"


async def gateway(limits: str) -> tuple[GatewayServer, grpc.aio.Channel]:
    server = GatewayServer(config_module.parse(tomllib.loads(config(limits)), "bench.toml"))
    await server.start("127.0.0.1", 0)
    return server, grpc.aio.insecure_channel(
        f"127.0.0.1:{server.port}", options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
    )


async def fallbacks(count: int) -> None:
    from provider_gateway.v1 import provider_service_pb2_grpc as pb_grpc

    server, channel = await gateway("tokens_per_day = 100000000")
    try:
        stub = pb_grpc.ProviderServiceStub(channel)
        await stub.Chat(chat("mock/echo"), metadata=METADATA, timeout=10)  # warm
        for n in (16, 17, count):
            request = chat("mock/echo", ["mock/echo"] * n)
            started = time.perf_counter()
            code = await refused(stub, request)
            print(
                f"| {n} fallbacks ({request.ByteSize()} bytes) | {time.perf_counter() - started:.3f} s | {code} |"
            )
    finally:
        await channel.close()
        await server.stop(0)


async def names(count: int) -> None:
    from provider_gateway.v1 import provider_service_pb2_grpc as pb_grpc

    server, channel = await gateway("tokens_per_day = 100000000\nrequests_per_minute = 1")
    try:
        stub = pb_grpc.ProviderServiceStub(channel)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        codes = [await refused(stub, chat(f"mock/{i}" + "x" * 3_000_000)) for i in range(count)]
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        plans = server.auth[0].quotas.budgets.worst_case._plans  # type: ignore[union-attr]
        held = sum(len(model) for _, model, _, _ in plans)
        print(
            f"| {count} refused 3 MB names | peak RSS {before} -> {after} MB | {len(plans)} plans, {held} chars held | {sorted(set(codes))} |"
        )
    finally:
        await channel.close()
        await server.stop(0)


def per_call() -> None:
    request = chat("mock/echo", ["mock/other"])
    check = getattr(validate, "names", None)  # absent before the fix
    for what, call in (
        ("presented_key", lambda: auth.presented_key(METADATA)),
        ("validate.names", None if check is None else lambda: check(request)),
    ):
        if call is None:
            print(f"| per call: {what} | absent |")
            continue
        rounds = []
        for _ in range(5):
            started = time.process_time()
            for _ in range(20_000):
                call()
            rounds.append((time.process_time() - started) / 20_000 * 1e6)
        print(f"| per call: {what} | {statistics.median(rounds):.2f} µs |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--names", type=int, default=20)
    parser.add_argument("--fallbacks", type=int, default=250_000)
    args = parser.parse_args()
    per_call()
    asyncio.run(fallbacks(args.fallbacks))
    asyncio.run(names(args.names))


if __name__ == "__main__":
    main()
