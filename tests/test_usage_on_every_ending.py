"""Usage on every ending (issue 16.3): a stream cut mid-way or cancelled by its client still reports
what it consumed when the provider did not say: estimated from the prompt and the relayed content,
in the failed call's trailers, the request log line and the key's quota."""

from __future__ import annotations

import logging

import grpc
import pytest
from rpc_util import WAIT_S, access_line, chat, collect_until_error

FLAKY = """
[providers.mock.models.flaky]
fault = "error_after_tokens"
fault_after_tokens = 6
fault_status = "UNAVAILABLE"
"""


async def test_a_stream_cut_mid_way_reports_its_estimated_usage_in_the_trailers(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    async with gateway_factory(FLAKY) as gw:
        call = gw.stub.ChatStream(chat("mock/flaky", "tell me"), timeout=WAIT_S)
        events, error = await collect_until_error(call)
        trailers = dict(await call.trailing_metadata())
    assert error is not None
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    relayed = "".join(e.text_delta.text for e in events)
    assert relayed  # six tokens went out before the cut
    assert trailers["usage-estimated"] == "true"
    assert int(trailers["usage-output-tokens"]) == -(-len(relayed) // 4)  # about four characters a token
    assert int(trailers["usage-input-tokens"]) > 0
    assert trailers["cost-usd-micros"] == "0"  # the mock's known price


async def test_a_cancelled_stream_is_logged_with_what_it_consumed(
    gateway_factory, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    async with gateway_factory("[providers.mock]\nkind = 'mock'") as gw:
        with caplog.at_level(logging.INFO, logger="provider_gateway.access"):
            call = gw.stub.ChatStream(chat("mock/slow", "tell me"), timeout=WAIT_S)
            first = await call.read()
            assert first.text_delta.text
            call.cancel()
            line = await access_line(caplog)
    assert line.usage_estimated is True  # type: ignore[attr-defined]
    assert line.output_tokens >= 1  # type: ignore[attr-defined]
    assert line.input_tokens >= 1  # type: ignore[attr-defined]
