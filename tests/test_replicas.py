"""Three gateway processes on loopback behind client-side round robin, and a drain during a stream.

Each replica is a real `provider-gateway serve` process. Besides the shared `mock` provider, replica
N configures a mock provider named `replica-N` and the alias `whoami = "replica-N/echo"`, so the
`finish.provider` of a `whoami` call names the process that served it, with no test hook in the
server. The client is one gRPC channel with an `ipv4:` target listing the three addresses and the
round_robin policy, as a client of a headless Service gets from `dns:///` (see docs/scaling.md).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import socket
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from conftest import RunningGateway, run_gateway
from grpc_health.v1 import health_pb2, health_pb2_grpc
from processes import GatewayProcess, start_gateway

from provider_gateway.server.auth import hash_key
from provider_gateway.v1 import provider_service_pb2 as pb
from provider_gateway.v1 import provider_service_pb2_grpc as pb_grpc

SERVICE = "provider_gateway.v1.ProviderService"
ROUND_ROBIN = json.dumps(
    {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [
                    {"service": SERVICE, "method": "Chat"},
                    {"service": SERVICE, "method": "ListProviders"},
                ],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "0.5s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
    }
)
REPLICA_CONFIG = """
[server]
grace_period_s = 30
drain_delay_s = {drain_delay}

[providers.mock]
kind = "mock"

[providers.replica-{n}]
kind = "mock"

[aliases]
whoami = "replica-{n}/echo"
"""


@dataclass
class Replica:
    name: str
    gateway: GatewayProcess

    @property
    def address(self) -> str:
        return self.gateway.address


async def start_replica(n: int, folder: Path, extra_config: str = "", drain_delay: float = 0) -> Replica:
    config = folder / f"replica-{n}.toml"
    config.write_text(REPLICA_CONFIG.format(n=n, drain_delay=drain_delay) + extra_config)
    serve_args = ("--config", str(config), "--host", "127.0.0.1", "--port", "0", "--log-level", "warning")
    return Replica(f"replica-{n}", await start_gateway(*serve_args))


@asynccontextmanager
async def three_replicas(
    folder: Path, extra_config: str = "", drain_delay: float = 0
) -> AsyncIterator[list[Replica]]:
    replicas = list(
        await asyncio.gather(*(start_replica(n, folder, extra_config, drain_delay) for n in (1, 2, 3)))
    )
    try:
        yield replicas
    finally:
        await asyncio.gather(*(r.gateway.stop() for r in replicas))


def balanced_channel(replicas: list[Replica], service_config: str = ROUND_ROBIN) -> grpc.aio.Channel:
    target = "ipv4:" + ",".join(r.address for r in replicas)
    return grpc.aio.insecure_channel(
        target, options=[("grpc.service_config", service_config), ("grpc.enable_retries", 1)]
    )


def whoami(prompt: str = "who served this?", model: str = "whoami") -> pb.ChatRequest:
    return pb.ChatRequest(
        model=model, messages=[pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text=prompt)])]
    )


async def wait_all_connected(
    channel: grpc.aio.Channel, replicas: list[Replica], metadata: tuple[tuple[str, str], ...] | None = None
) -> None:
    """round_robin connects to every address; wait until the three each answered once."""
    stub = pb_grpc.ProviderServiceStub(channel)
    seen: set[str] = set()
    async with asyncio.timeout(30):
        while len(seen) < len(replicas):
            response = await stub.Chat(whoami(), timeout=10, metadata=metadata)
            seen.add(response.finish.provider)


async def test_round_robin_spreads_calls_over_three_replicas(tmp_path: Path) -> None:
    async with three_replicas(tmp_path) as replicas, balanced_channel(replicas) as channel:
        await wait_all_connected(channel, replicas)
        stub = pb_grpc.ProviderServiceStub(channel)

        unary = Counter()
        for _ in range(30):
            response = await stub.Chat(whoami(), timeout=10)
            unary[response.finish.provider] += 1
        assert set(unary) == {r.name for r in replicas}
        # Round robin over three ready subchannels takes them in turn: an even split.
        assert all(count == 10 for count in unary.values()), unary

        streamed = Counter()
        for _ in range(9):
            events = [event async for event in stub.ChatStream(whoami(), timeout=10)]
            assert events[-1].WhichOneof("event") == "finish"
            streamed[events[-1].finish.provider] += 1
        assert set(streamed) == {r.name for r in replicas}
        assert max(streamed.values()) - min(streamed.values()) <= 1, streamed

        # Concurrent calls spread the same way.
        responses = await asyncio.gather(*(stub.Chat(whoami(), timeout=10) for _ in range(30)))
        concurrent = Counter(r.finish.provider for r in responses)
        assert set(concurrent) == {r.name for r in replicas}

        # ListProviders shows each replica's own provider set: the replicas share no state.
        names = set()
        for _ in range(3):
            listing = await stub.ListProviders(pb.ListProvidersRequest(), timeout=10)
            names.add(next(p.name for p in listing.providers if p.name.startswith("replica-")))
        assert names == {r.name for r in replicas}


async def test_draining_replica_finishes_its_stream_while_the_others_take_new_calls(tmp_path: Path) -> None:
    # A second of NOT_SERVING before the replica stops taking calls: the calls below are sent
    # within it, so none can reach grpc core's stop undispatched (it would end them CANCELLED).
    async with three_replicas(tmp_path, drain_delay=1) as replicas, balanced_channel(replicas) as channel:
        await wait_all_connected(channel, replicas)
        balanced = pb_grpc.ProviderServiceStub(channel)
        leaving = replicas[2]
        async with grpc.aio.insecure_channel(leaving.address) as direct:
            # A long stream (mock/slow: 20 tokens, 50 ms apart) on the replica about to leave.
            stream = pb_grpc.ProviderServiceStub(direct).ChatStream(
                whoami("a long answer", model="replica-3/slow"), timeout=30
            )
            watch = health_pb2_grpc.HealthStub(direct).Watch(health_pb2.HealthCheckRequest(service=SERVICE))
            assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
            first = await stream.read()
            assert first.WhichOneof("event") == "text_delta"

            # A rollout's SIGTERM: the replica reports NOT_SERVING, then drains.
            leaving.gateway.process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(10):
                assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
            watch.cancel()  # a watch is a call in flight too: end it so the drain can finish

            # Meanwhile every new call through the balanced channel succeeds.
            during = await asyncio.gather(*(balanced.Chat(whoami(), timeout=10) for _ in range(12)))
            assert all(r.finish.reason == pb.FINISH_REASON_STOP for r in during)

            # The stream in flight completes in full, ending with finish.
            rest = []
            while (event := await stream.read()) is not grpc.aio.EOF:
                rest.append(event)
        events = [first, *rest]
        assert events[-1].WhichOneof("event") == "finish"
        assert events[-1].finish.provider == "replica-3"
        assert sum(1 for e in events if e.WhichOneof("event") == "text_delta") == 20

        # Drained: the process exits cleanly without waiting for the whole grace period.
        async with asyncio.timeout(20):
            code = await leaving.gateway.process.wait()
        assert code == 0, "".join(leaving.gateway.output)

        after = Counter()
        for _ in range(10):
            response = await balanced.Chat(whoami(), timeout=10)
            after[response.finish.provider] += 1
        assert set(after) == {"replica-1", "replica-2"}, after


# Round robin over the replicas that report SERVING for the service (client-side health checking).
HEALTH_CHECKED = json.dumps({**json.loads(ROUND_ROBIN), "healthCheckConfig": {"serviceName": SERVICE}})


async def test_a_rolling_restart_loses_no_call_of_health_checking_clients(tmp_path: Path) -> None:
    """Calls keep coming while a replica drains: with `drain_delay_s`, clients that check health
    have left it before it stops taking calls, so not one call fails."""
    async with (
        three_replicas(tmp_path, drain_delay=2) as replicas,
        balanced_channel(replicas, HEALTH_CHECKED) as channel,
    ):
        await wait_all_connected(channel, replicas)
        stub = pb_grpc.ProviderServiceStub(channel)
        leaving = replicas[2].gateway.process
        served: Counter[str] = Counter()
        failed: Counter[str] = Counter()
        loaded = asyncio.Event()  # the leaving replica has served its share of the load

        async def caller() -> None:
            while leaving.returncode is None:
                try:
                    served[(await stub.Chat(whoami(), timeout=10)).finish.provider] += 1
                except grpc.aio.AioRpcError as error:
                    failed[f"{error.code().name}: {error.details()}"] += 1
                if served["replica-3"] >= 20:
                    loaded.set()

        callers = [asyncio.create_task(caller()) for _ in range(16)]
        async with asyncio.timeout(20):
            await loaded.wait()
        leaving.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            assert await leaving.wait() == 0
            await asyncio.gather(*callers)
        assert not failed, failed
        assert set(served) == {"replica-1", "replica-2", "replica-3"}


# --- connection recycling: how DNS-balancing clients find new replicas ---------------------------

AGED_CONFIG = """
[server]
max_connection_age_s = 0.5
max_connection_age_grace_s = {grace}

[providers.mock]
kind = "mock"
"""


async def slow_stream(gateway: RunningGateway) -> list[pb.StreamEvent]:
    """mock/slow streams 20 tokens over about 1.2 s: longer than the connection's age."""
    request = whoami("a long answer", model="mock/slow")
    return [event async for event in gateway.stub.ChatStream(request, timeout=30)]


async def test_connection_age_grace_lets_a_longer_stream_finish() -> None:
    async with run_gateway(AGED_CONFIG.format(grace=30)) as gateway:
        events = await slow_stream(gateway)
        assert events[-1].WhichOneof("event") == "finish"
        assert sum(1 for e in events if e.WhichOneof("event") == "text_delta") == 20
        # The channel reconnects by itself after the server closed the aged connection.
        again = await gateway.stub.Chat(whoami(model="mock/echo"), timeout=10)
        assert again.finish.reason == pb.FINISH_REASON_STOP


async def test_connection_age_grace_below_the_stream_cuts_it() -> None:
    """Why the grace must exceed the longest stream: otherwise the stream is cut mid-answer."""
    async with run_gateway(AGED_CONFIG.format(grace=0.3)) as gateway:
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await slow_stream(gateway)
        assert failure.value.code() == grpc.StatusCode.UNAVAILABLE


# --- one per-key quota across the three replicas, through one real Redis ------------------------

REDIS = shutil.which("redis-server")
TEAM_KEY = "team-key-0123456789abcdef0123456789"
PROBE_KEY = "probe-key-0123456789abcdef012345678"
QUOTA = 7
QUOTA_CONFIG = """
[redis]
url = "{redis_url}"

[auth]
open_health = true

[[auth.keys]]
name = "team"
sha256 = "{team}"
requests_per_minute = {quota}

[[auth.keys]]
name = "probe"
sha256 = "{probe}"
"""


@asynccontextmanager
async def redis_server() -> AsyncIterator[str]:
    assert REDIS, "redis-server is not installed (scripts/setup.d/redis.sh installs it)"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = await asyncio.create_subprocess_exec(
        REDIS,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(10):
            while True:
                try:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    await asyncio.sleep(0.02)  # polling for the port, bounded by the timeout above
                    continue
                writer.write(b"PING\r\n")
                ready = (await reader.readline()).startswith(b"+PONG")
                writer.close()
                await writer.wait_closed()
                if ready:
                    break
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        await process.wait()


def bearer(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


async def test_per_key_quota_holds_across_three_replicas(tmp_path: Path) -> None:
    async with redis_server() as redis_url:
        extra = QUOTA_CONFIG.format(
            redis_url=redis_url, team=hash_key(TEAM_KEY), probe=hash_key(PROBE_KEY), quota=QUOTA
        )
        async with three_replicas(tmp_path, extra) as replicas, balanced_channel(replicas) as channel:
            await wait_all_connected(channel, replicas, metadata=bearer(PROBE_KEY))
            stub = pb_grpc.ProviderServiceStub(channel)
            served: Counter[str] = Counter()
            refused = []
            for _ in range(3 * QUOTA):
                try:
                    response = await stub.Chat(whoami(), timeout=10, metadata=bearer(TEAM_KEY))
                    served[response.finish.provider] += 1
                except grpc.aio.AioRpcError as exc:
                    refused.append(exc.code())
            # Each replica alone would have allowed QUOTA calls (3 x QUOTA in all): the shared
            # counter in Redis let exactly QUOTA through, spread over the three.
            assert sum(served.values()) == QUOTA, served
            assert set(served) == {r.name for r in replicas}
            assert refused == [grpc.StatusCode.RESOURCE_EXHAUSTED] * (2 * QUOTA)
