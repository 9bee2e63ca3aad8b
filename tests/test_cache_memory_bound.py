"""The answer cache's max_bytes bounds the memory really held: every CPython object an entry keeps
is counted (server/cache/store.py), and the answers of streams still being recorded count against
it too, so that many concurrent misses cannot hold memory beyond it."""

from __future__ import annotations

import os
import tracemalloc
from typing import Any

import pytest
from rpc_util import WAIT_S, chat, collect_until_error
from test_response_cache import CACHE, ONE_TRY, streamed

from provider_gateway.server.cache.settings import CacheSettings
from provider_gateway.server.cache.store import AnswerStore, part_cost

MAX_BYTES = 8 * 1024 * 1024
SLACK = 4096  # the store's own objects, and tracemalloc's rounding


@pytest.mark.parametrize(
    ("entries", "part_bytes", "parts"), [(60_000, 8, 1), (20_000, 100, 5), (3_000, 2_000, 3)]
)
def test_max_bytes_bounds_the_memory_really_held(entries: int, part_bytes: int, parts: int) -> None:
    store = AnswerStore(CacheSettings(max_entries=10**9, max_bytes=MAX_BYTES))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(entries):  # the key and the answer as the interceptor makes them: kept by the store
            store.put(os.urandom(32), tuple(os.urandom(part_bytes) for _ in range(parts)))
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert store.bytes <= MAX_BYTES
    assert len(store) < entries  # the bound was reached
    # Before: 60 000 entries of 8 bytes held 12.6 MB against max_bytes 8 MiB.
    assert held <= MAX_BYTES + SLACK, (held, store.bytes, held / store.bytes)


def test_answers_being_recorded_count_against_max_bytes() -> None:
    store = AnswerStore(CacheSettings(max_entries=100, max_bytes=4096, max_entry_bytes=4096))
    for n in range(4):
        assert store.put(bytes([n]) * 32, (b"x" * 600,))
    part = b"y" * 1000
    taken = [store.reserve(part_cost(part)) for _ in range(5)]
    assert taken == [True, True, True, False, False]  # the fourth would pass max_bytes on its own
    assert store.bytes + store.recording <= 4096
    assert store.get(bytes([0]) * 32) is None  # the oldest entries made way for the recordings
    store.release(3 * part_cost(part))
    assert store.reserve(part_cost(part))  # what a recording releases can be reserved again


async def test_streams_that_fail_while_recorded_leave_room_for_the_next(gateway_factory: Any) -> None:
    config = (
        CACHE
        + "max_bytes = 2048\nmax_entry_bytes = 2048\n"
        + ONE_TRY
        + "[providers.mock.models.flaky]\nfault = 'error_after_tokens'\nfault_after_tokens = 20\ntokens = 40\n"
    )
    async with gateway_factory(config) as gw:
        for _ in range(30):  # each recorded some parts before its error: none may stay counted
            call = gw.stub.ChatStream(chat("mock/flaky", "go"), timeout=WAIT_S)
            _, error = await collect_until_error(call)
            assert error is not None
        request = chat("mock/echo", "keep this one")
        _, first = await streamed(gw, request)
        _, again = await streamed(gw, request)
        assert (first, again) == ("miss", "hit")
