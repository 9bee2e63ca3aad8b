"""`serve --workers N`: N server processes on one port, each with its own event loop and gRPC core.

One Python process tops out at one core; the kernel spreads new connections over the workers
(SO_REUSEPORT). Workers are started by the spawn method, a fresh interpreter each, so no gRPC or
event-loop state crosses a fork. The parent only supervises: it prints the address once every
worker listens, passes SIGTERM/SIGINT on (each worker drains as a lone server does, a second
signal stops them at once), and starts a new worker in place of one that died.

Per worker, as per replica: the in-memory rate limits and quotas (share them through Redis, as
replicas do) and the Prometheus endpoint (worker i serves prometheus_port + i).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import multiprocessing
import os
import signal
import socket
import time
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

log = logging.getLogger("provider_gateway.workers")
READY_TIMEOUT_S = 120.0  # a worker probes every provider once before it listens
RESTART_DELAY_S = 1.0
CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "<quota> <period>" or "max <period>"


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity, capped by a cgroup CPU quota (a
    container's CPU limit), at least 1."""
    cores = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError, ValueError):
        quota, period = CPU_MAX.read_text().split()
        if quota != "max":
            cores = min(cores, math.ceil(int(quota) / int(period)))
    return max(cores, 1)


def worker_count(text: str) -> int:
    """`--workers`: a positive number, or `auto` for the usable cores."""
    if text == "auto":
        return usable_cores()
    count = int(text)
    if count < 1:
        raise ValueError(f"--workers must be at least 1 or 'auto', got {count}")
    return count


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerArgs:
    config_path: str | None
    host: str
    port: int
    log_level: str
    log_format: str
    loop: str = "asyncio"


def _run_worker(index: int, args: WorkerArgs, ready: Connection) -> None:
    """A worker's whole life, in the spawned interpreter."""
    import asyncio

    from provider_gateway import config as config_module
    from provider_gateway.observability import logs
    from provider_gateway.server.app import GatewayServer
    from provider_gateway.server.event_loop import loop_factory

    os.setpgrp()  # a terminal's Ctrl-C reaches the parent alone, which passes it on once
    logs.configure(args.log_level, args.log_format)
    config = config_module.load(args.config_path)

    async def run() -> None:
        server = GatewayServer(config, reuse_port=True, worker=index)
        ready.send(await server.start(args.host, args.port))
        await server.serve_until_signalled()

    asyncio.run(run(), loop_factory=loop_factory(args.loop))


def _reserved_port(host: str, port: int) -> tuple[socket.socket, int]:
    """A socket that holds the port (0: a free one) in the SO_REUSEPORT group until every worker
    has bound it; it never listens, so it takes no connections."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    holder = socket.socket(family, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind((host.strip("[]") or "0.0.0.0", port))
    return holder, holder.getsockname()[1]


class Supervisor:
    def __init__(self, count: int, args: WorkerArgs) -> None:
        self.count = count
        self.args = args
        self.context = multiprocessing.get_context("spawn")
        self.workers: dict[int, BaseProcess] = {}
        self.signals: list[int] = []

    def _start(self, index: int) -> Connection:
        receive, send = self.context.Pipe(duplex=False)
        process = self.context.Process(
            target=_run_worker, args=(index, self.args, send), name=f"gateway-worker-{index}", daemon=False
        )
        process.start()
        send.close()
        self.workers[index] = process
        return receive

    def _await_ready(self, pipes: dict[int, Connection]) -> bool:
        deadline = time.monotonic() + READY_TIMEOUT_S
        waiting = dict(pipes)
        while waiting and not self.signals:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            for ready in wait(list(waiting.values()), timeout=min(left, 0.5)):
                index = next(i for i, pipe in waiting.items() if pipe is ready)
                try:
                    waiting[index].recv()
                except EOFError:  # it exited before listening: its own error is in the log
                    return False
                del waiting[index]
        return not waiting

    def _on_signal(self, number: int, _frame: Any) -> None:
        self.signals.append(number)
        # First signal: each worker drains. A second one: each stops at once (their own rule).
        forward = signal.SIGTERM if len(self.signals) == 1 else signal.SIGINT
        for process in self.workers.values():
            if process.pid is not None and process.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, forward)

    def run(self) -> int:
        """Start the workers, print the address, supervise until a signal; the exit code."""
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, self._on_signal)
        holder, port = _reserved_port(self.args.host, self.args.port)
        self.args = dataclasses.replace(self.args, port=port)
        with holder:
            ready = self._await_ready({i: self._start(i) for i in range(self.count)})
        if not ready:  # stopped while starting (exit 0), or a worker could not start (1)
            stopped = bool(self.signals)
            self._on_signal(signal.SIGTERM, None)
            self._join()
            return 0 if stopped else 1
        print(f"provider-gateway listening on {self.args.host}:{port}", flush=True)
        log.info("%d workers share port %d", self.count, port)
        while not self.signals:
            sentinels = {p.sentinel: i for i, p in self.workers.items()}
            for ended in wait(list(sentinels), timeout=1.0):
                if self.signals:
                    break
                index = sentinels[ended]  # type: ignore[index]
                log.error("worker %d exited with %s; starting another", index, self.workers[index].exitcode)
                time.sleep(RESTART_DELAY_S)
                self._await_ready({index: self._start(index)})
        self._join()
        return 0

    def _join(self) -> None:
        for process in self.workers.values():
            process.join()
