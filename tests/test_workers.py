"""`serve --workers N`: N processes share one port; each serves, drains on SIGTERM, and is replaced
if it dies. The server runs as a user starts it, in child processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import tomllib
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from served import CLI, read_line

from provider_gateway.server.workers import usable_cores, worker_count
from provider_gateway.v1 import provider_service_pb2 as pb
from provider_gateway.v1 import provider_service_pb2_grpc as pb_grpc

START_S = 60.0


def start(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], str, Path]:
    log = tmp_path / "server.log"
    proc = subprocess.Popen(
        [CLI, "serve", "--port", "0", "--log-format", "json", *args],
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
    )
    line = read_line(proc.stdout, START_S)
    assert "listening on" in line, log.read_text()
    return proc, line.split("listening on", 1)[1].strip(), log


def children(pid: int) -> set[int]:
    """The worker processes of `pid` (multiprocessing's resource tracker is a child too)."""
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(c) for c in (task / "children").read_text().split()}
    return {c for c in found if b"spawn_main" in _cmdline(c)}


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def served_by(log: Path) -> set[int]:
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return {line["pid"] for line in lines if line["logger"] == "provider_gateway.access"}


def chat_once(target: str) -> str:
    request = pb.ChatRequest(
        model="mock/echo", messages=[pb.Message(role=pb.ROLE_USER, content=[pb.ContentPart(text="hi")])]
    )
    # A new connection each time: a channel of its own subchannel pool (grpc's global pool may hand
    # a new channel the connection of the one just closed, so that every call lands on one worker).
    with grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        return pb_grpc.ProviderServiceStub(channel).Chat(request, timeout=20).text  # type: ignore[no-untyped-call]


def stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=60)


def test_two_workers_share_the_port_and_both_serve(tmp_path: Path) -> None:
    proc, target, log = start(tmp_path, "--workers", "2")
    try:
        workers = children(proc.pid)
        assert len(workers) == 2
        answers = [chat_once(target) for _ in range(24)]
        assert all("hi" in answer for answer in answers)
        with grpc.insecure_channel(target) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        assert stop(proc) == 0
    # 24 connections hashed over two listeners: both took some (all on one: odds 2 in 16 million).
    assert served_by(log) == workers
    assert not [w for w in warnings_of(log) if "[redis]" in w]  # no limits set: nothing to share
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)  # SIGTERM drained them all


LIMITED = """
[auth]
[[auth.keys]]
name = "ci"
sha256 = "%s"
requests_per_minute = 60

[groups.g]
deployments = [{ provider = "mock", model = "echo", rpm = 600 }]
""" % ("0" * 64)


def warnings_of(log: Path) -> list[str]:
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [line["msg"] for line in lines if line["level"] == "WARNING"]


def test_limits_each_worker_would_count_alone_are_warned_of_once(tmp_path: Path) -> None:
    """Without [redis] each worker meters on its own, so clients may spend N times each limit."""
    config = tmp_path / "gateway.toml"
    config.write_text(LIMITED)
    proc, _, log = start(tmp_path, "--workers", "2", "--config", str(config))
    assert stop(proc) == 0
    warned = [w for w in warnings_of(log) if "[redis]" in w]
    assert len(warned) == 1, warned  # from the supervisor, not from every worker
    assert "each worker enforces its own copy" in warned[0]
    assert "of key 'ci', deployment 'g/mock/echo' (rpm)" in warned[0]
    assert "up to 2 times each limit; configure [redis]" in warned[0]


def test_limits_shared_through_redis_or_absent_are_not_warned_of() -> None:
    from provider_gateway.config import parse
    from provider_gateway.server.worker_limits import unshared_limits

    limited = tomllib.loads(LIMITED)
    assert unshared_limits(parse(limited, "gw.toml")) == ["key 'ci'", "deployment 'g/mock/echo' (rpm)"]
    assert unshared_limits(parse({**limited, "redis": {"url": "redis://127.0.0.1:6379"}}, "gw.toml")) == []
    assert unshared_limits(parse({}, "gw.toml")) == []


def test_a_bad_configuration_with_workers_exits_2_before_any_worker_starts(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text("[routing]\nttft_timeout_s = 0\n")
    done = subprocess.run(
        [CLI, "serve", "--workers", "2", "--port", "0", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "bad configuration: " in done.stderr
    assert "routing.ttft_timeout_s: must be at least" in done.stderr


def test_a_worker_that_dies_is_replaced(tmp_path: Path) -> None:
    proc, target, _ = start(tmp_path, "--workers", "2")
    try:
        first = children(proc.pid)
        os.kill(next(iter(first)), signal.SIGKILL)
        deadline = time.monotonic() + START_S
        now = children(proc.pid)
        while time.monotonic() < deadline and (len(now) < 2 or now == first):
            time.sleep(0.2)  # bounded: the replacement imports and starts like any worker
            now = children(proc.pid)
        assert len(now) == 2
        assert now != first
        assert "hi" in chat_once(target)
    finally:
        assert stop(proc) == 0


def test_one_worker_is_the_plain_server(tmp_path: Path) -> None:
    proc, target, _ = start(tmp_path, "--workers", "1")
    try:
        assert children(proc.pid) == set()
        assert "hi" in chat_once(target)
    finally:
        assert stop(proc) == 0


def test_worker_counts() -> None:
    assert worker_count("3") == 3
    assert worker_count("auto") == usable_cores() >= 1
    assert usable_cores() <= len(os.sched_getaffinity(0))
    with pytest.raises(ValueError, match="at least 1"):
        worker_count("0")


def test_a_bad_worker_count_is_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run([CLI, "serve", "--workers", "zero"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "--workers" in done.stderr
