"""`all_or_first_error` (providers/base.py), the fan-out of Vertex's and Bedrock Titan's Embed: on
the gateway's loop, where tasks start eagerly, a call that fails before it first waits must come
back as its own error and leave the caller's task uncancelled."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest

from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.providers.base import all_or_first_error


async def _fails_at_once() -> int:
    raise GatewayError(ErrorKind.UNAUTHENTICATED, "no secret key")


async def _answers(value: int, gate: asyncio.Event | None = None) -> int:
    if gate is not None:
        await gate.wait()
    await asyncio.sleep(0)
    return value


async def _until_cancelled(stopped: list[int], n: int = 0) -> int:
    """A call that never answers; `n` is put in `stopped` once it is cancelled."""
    try:
        await asyncio.Event().wait()
    finally:
        stopped.append(n)
    return n


async def test_answers_come_back_in_the_calls_order() -> None:
    gate = asyncio.Event()
    calls = [_answers(1, gate), _answers(2), _answers(3)]
    waiting = asyncio.ensure_future(all_or_first_error(calls))
    await asyncio.sleep(0)
    gate.set()
    assert await waiting == [1, 2, 3]


@pytest.mark.parametrize("first", [True, False])
async def test_a_call_that_fails_before_it_waits_is_its_own_error_and_leaves_the_caller_uncancelled(
    first: bool,
) -> None:
    calls = [_fails_at_once(), _answers(1)] if first else [_answers(1), _fails_at_once()]
    with pytest.raises(GatewayError, match="no secret key"):
        await all_or_first_error(calls)
    await asyncio.sleep(0)  # the caller's next wait: not cancelled (the client would get CANCELLED)
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_two_failures_raise_the_first_calls_and_leave_none_unread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def fails(message: str) -> int:
        await asyncio.sleep(0)
        raise GatewayError(ErrorKind.UNAVAILABLE, message)

    with pytest.raises(GatewayError, match="first"):
        await all_or_first_error([fails("first"), fails("second")])
    gc.collect()  # a failure nobody read is logged when its task is collected
    assert "never retrieved" not in caplog.text


async def test_a_failure_cancels_the_calls_still_running() -> None:
    stopped: list[int] = []

    async def fails_later() -> int:
        await asyncio.sleep(0)
        raise GatewayError(ErrorKind.UNAVAILABLE, "upstream down")

    with pytest.raises(GatewayError, match="upstream down"):
        await all_or_first_error([_until_cancelled(stopped), fails_later()])
    assert stopped == [0]


async def test_a_cancelled_caller_cancels_every_call() -> None:
    stopped: list[int] = []
    waiting = asyncio.ensure_future(
        all_or_first_error([_until_cancelled(stopped, 1), _until_cancelled(stopped, 2)])
    )
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert sorted(stopped) == [1, 2]


async def test_a_call_that_cannot_be_built_cancels_those_already_started() -> None:
    stopped: list[int] = []

    def calls() -> Iterator[Coroutine[Any, Any, int]]:
        yield _until_cancelled(stopped)
        raise GatewayError(ErrorKind.INVALID_ARGUMENT, "a bad input")

    with pytest.raises(GatewayError, match="a bad input"):
        await all_or_first_error(calls())
    assert stopped == [0]


async def test_the_error_is_the_one_a_call_failed_with_not_one_raised_while_cancelled() -> None:
    async def errs_when_cancelled() -> int:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise GatewayError(ErrorKind.UNAVAILABLE, "connection reset while closing") from None
        return 0

    async def fails_later() -> int:
        await asyncio.sleep(0)
        raise GatewayError(ErrorKind.INVALID_ARGUMENT, "input too long")

    with pytest.raises(GatewayError, match="input too long"):
        await all_or_first_error([errs_when_cancelled(), fails_later()])


async def test_a_caller_cancelled_twice_still_outlives_every_call() -> None:
    """Cancelled again while it waits for the cancelled calls to end, it still waits for them."""
    stopped: list[int] = []
    release = asyncio.Event()

    async def slow_to_stop() -> int:
        try:
            await asyncio.Event().wait()
        finally:
            await release.wait()  # a cleanup that takes a while (closing a connection)
            stopped.append(1)
        return 1

    waiting = asyncio.ensure_future(all_or_first_error([slow_to_stop()]))
    await asyncio.sleep(0)
    waiting.cancel()
    await asyncio.sleep(0)
    waiting.cancel()  # again, during the cleanup
    await asyncio.sleep(0)
    assert not waiting.done()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert stopped == [1]


async def test_a_failed_call_and_a_call_that_cannot_be_built_leave_no_failure_unread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def calls() -> Iterator[Coroutine[Any, Any, int]]:
        yield _fails_at_once()
        raise GatewayError(ErrorKind.INVALID_ARGUMENT, "a bad input")

    with pytest.raises(GatewayError, match="a bad input"):
        await all_or_first_error(calls())
    gc.collect()
    assert "never retrieved" not in caplog.text


async def test_no_calls_no_answers() -> None:
    assert await all_or_first_error([]) == []
