"""Resident memory of one gateway replica: idle, and under concurrent streams (mock provider).

Run: uv run python benchmarks/replica_memory.py [--concurrency 100] [--rounds 20]
Prints a Markdown table; the figures size the Kubernetes memory request (deploy/kubernetes).
Linux only (reads /proc/<pid>/status). Traffic stays on loopback and the run is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from pathlib import Path

import grpc

from provider_gateway.v1 import provider_service_pb2 as pb
from provider_gateway.v1 import provider_service_pb2_grpc as pb_grpc

GATEWAY = Path(sys.executable).parent / "provider-gateway"


def memory_kib(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    return {k: int(v) for k, v in re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status, re.M)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    process = await asyncio.create_subprocess_exec(
        str(GATEWAY), "serve", "--port", "0", "--log-level", "warning", stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(30):
            line = (await process.stdout.readline()).decode()
        port = int(re.search(r":(\d+)\s*$", line).group(1))  # type: ignore[union-attr]
        idle = memory_kib(process.pid)
        prompt = "measure the memory of a replica " * 20
        request = pb.ChatRequest(
            model="mock/echo", messages=[pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text=prompt)])]
        )
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.ProviderServiceStub(channel)

            async def one() -> None:
                async for _ in stub.ChatStream(request, timeout=60):
                    pass

            async with asyncio.timeout(300):
                for _ in range(args.rounds):
                    await asyncio.gather(*(one() for _ in range(args.concurrency)))
        loaded = memory_kib(process.pid)
    finally:
        process.terminate()
        await process.wait()
    streams = args.concurrency * args.rounds
    print("| state | RSS (MiB) | peak RSS (MiB) |")
    print("| --- | --- | --- |")
    print(f"| idle after start | {idle['VmRSS'] / 1024:.1f} | {idle['VmHWM'] / 1024:.1f} |")
    print(
        f"| after {streams} streams, {args.concurrency} concurrent | {loaded['VmRSS'] / 1024:.1f} "
        f"| {loaded['VmHWM'] / 1024:.1f} |"
    )


if __name__ == "__main__":
    asyncio.run(main())
