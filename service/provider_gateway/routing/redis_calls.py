"""Redis commands sent without redis-py's per-command layers, for the calls on every request's path.

redis-py's `execute_command` wraps each command in a pool checkout behind a lock (which also
probes the socket), a retry object, a write under `asyncio.wait_for` (a task per write),
observability records and a generic packer: 55-80 µs per call on the 2-core VM of
benchmarks/RESULTS.md ("Budget check per request"; a PING takes 150 µs that way, 90 µs here), more
than Redis takes to run the budget check's script. `DirectCalls` keeps a few connections of the client's own kind (same host, password, TLS,
database, parser) and sends a command already packed, under one deadline for the round trip.

A connection carries one command at a time. A call that fails, times out or is cancelled between
sending and reading drops its connection (a reply may still be on the way), so the next call never
reads another's reply. A connection reused from the idle list that turns out closed (Redis
restarted since) is retried once on a fresh one, as redis-py's retry would.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

IDLE_MAX = 64  # connections kept between calls; a burst beyond opens more, closed after it


def bulk(value: str) -> bytes:
    """A RESP bulk string. (What comes back on every request, a meter's key, kind and limit, is
    encoded once and kept by the meters: routing/meters.py.)"""
    data = value.encode()
    return b"$%d\r\n%b\r\n" % (len(data), data)


def bulk_int(value: int) -> bytes:
    digits = b"%d" % value
    return b"$%d\r\n%b\r\n" % (len(digits), digits)


def pack(count: int, head: Sequence[bytes], body: Sequence[bytes]) -> bytes:
    """One RESP command of `count` bulk strings, already encoded in `head` then `body` (an item
    may hold several)."""
    return b"".join([b"*%d\r\n" % count, *head, *body])


class DirectCalls:
    """Packed commands on connections made like `pool`'s, one command per connection at a time."""

    def __init__(self, pool: Any, timeout_s: float) -> None:
        from redis.exceptions import ConnectionError as Closed  # with the client: only Redis setups load it
        from redis.exceptions import ResponseError

        self._pool = pool
        self._timeout_s = timeout_s
        self._idle: list[Any] = []
        self._open = True  # until aclose: a call still under way then closes its connection
        self._closed = Closed
        self._answered = ResponseError  # an error reply: read whole, the connection stays usable

    async def call(self, packed: bytes) -> Any:
        reused = bool(self._idle)
        try:
            return await self._call_on(self._idle.pop() if reused else self._connect(), packed)
        except self._closed:
            if not reused:
                raise
            stale, self._idle = self._idle, []  # opened before the same break: closed, not left to GC
            await _disconnect(stale, nowait=True)
            return await self._call_on(self._connect(), packed)

    async def _call_on(self, connection: Any, packed: bytes) -> Any:
        try:
            async with asyncio.timeout(self._timeout_s):
                await connection.send_packed_command(packed, check_health=False)
                reply = await connection.read_response()
        except self._answered:
            await self._release(connection)
            raise
        except BaseException:  # timed out, cancelled or broken: a reply may still come, so drop it
            with contextlib.suppress(Exception):
                await connection.disconnect(nowait=True)
            raise
        await self._release(connection)
        return reply

    def _connect(self) -> Any:
        kwargs = {**self._pool.connection_kwargs, "socket_timeout": None}  # one deadline in _call_on
        return self._pool.connection_class(**kwargs)

    async def _release(self, connection: Any) -> None:
        if self._open and len(self._idle) < IDLE_MAX:
            self._idle.append(connection)
        else:
            await connection.disconnect(nowait=True)

    async def aclose(self) -> None:
        self._open = False
        idle, self._idle = self._idle, []
        await _disconnect(idle)


async def _disconnect(connections: list[Any], *, nowait: bool = False) -> None:
    for connection in connections:
        with contextlib.suppress(Exception):
            await connection.disconnect(nowait=nowait)
