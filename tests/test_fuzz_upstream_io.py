"""Property-based fuzzing of the upstream helpers: event JSON decoding and the retry-delay parsers
that read vendor headers and bodies. Only GatewayError may escape; a delay is never negative,
never NaN and never infinite."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from provider_gateway.errors import ErrorKind, GatewayError

FUZZ = settings(max_examples=400, deadline=None, derandomize=True)


def helper(module: str, name: str) -> Any:
    return getattr(importlib.import_module(module), name)


json_text = st.one_of(st.text(max_size=40), st.binary(max_size=40).map(lambda b: b.decode("latin-1")))
header_values = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        ["1", "-5", "1e309", "nan", "inf", "0.5", "Wed, 21 Oct 2015 07:28:00 GMT", "6m0s", "1h2m3.5s"]
    ),
)
headers = st.dictionaries(
    st.sampled_from(
        ["retry-after", "retry-after-ms", "x-ratelimit-reset-requests", "x-ratelimit-reset-tokens", "x"]
    ),
    header_values,
    max_size=4,
)
bodies = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.floats(), st.text(max_size=10), st.sampled_from(["retryDelay", "1.5s"])
    ),
    lambda c: st.one_of(
        st.lists(c, max_size=3),
        st.dictionaries(st.sampled_from(["error", "details", "@type", "retryDelay", "x"]), c, max_size=4),
    ),
    max_leaves=12,
)


def test_json_event_raises_only_gateway_errors() -> None:
    decode_json_event = helper("provider_gateway.providers.upstream_io", "decode_json_event")

    @FUZZ
    @given(json_text)
    def run(data: str) -> None:
        with contextlib.suppress(GatewayError):
            decode_json_event(data, "fuzz")

    run()


# `Retry-After: nan` once gave a NaN delay, which the servicer cannot put in a RetryInfo (int(nan)
# raises), so the client got INTERNAL; `inf` would have made the router sleep for ever.
def test_retry_delay_is_none_or_finite_and_bounded() -> None:
    retry_delay = helper("provider_gateway.http.errors", "retry_delay")
    most = helper("provider_gateway.http.errors", "MAX_RETRY_DELAY_S")

    @FUZZ
    @example({"retry-after": "NAN"}, None)
    @example({"retry-after-ms": "inf"}, None)
    @example({"x-ratelimit-reset-requests": "-inf"}, None)
    @example({}, {"error": {"details": [{"@type": "google.rpc.RetryInfo", "retryDelay": "1e999s"}]}})
    @example({}, {"error": {"details": [{"@type": "google.rpc.RetryInfo", "retryDelay": {"seconds": "x"}}]}})
    @example(
        {}, {"error": {"details": [{"@type": "google.rpc.RetryInfo", "retryDelay": {"seconds": 10**400}}]}}
    )
    @given(headers, bodies)
    def run(head: dict[str, str], body: Any) -> None:
        delay = retry_delay(head, body, now=0.0)
        assert delay is None or 0 <= delay <= most

    run()


async def test_an_oversized_last_event_is_unavailable_not_internal() -> None:
    """An event over the SSE bound whose last line ends in a lone CR is refused only when the body
    ends (the CR may have been half of a CRLF until then), and still becomes the retryable
    UNAVAILABLE every other oversized event gets."""
    sse_reads = helper("provider_gateway.providers.upstream_io", "sse_reads")
    bound = helper("provider_gateway.wire.sse", "MAX_EVENT_BYTES")
    half = b"x" * (bound // 2 + 16)

    async def body() -> AsyncIterator[bytes]:
        yield b"data: " + half + b"\n"
        yield b"data: " + half + b"\r"  # the body ends here

    class Answering:
        """An upstream whose stream is `body()`."""

        provider = "p"

        def stream(self, *args: object, **kwargs: object) -> contextlib.nullcontext[AsyncIterator[bytes]]:
            return contextlib.nullcontext(body())

    with pytest.raises(GatewayError, match="malformed stream: an event larger than") as info:
        async with sse_reads(Answering(), "/v1/x", {}) as reads:
            [event async for event in reads.relay(lambda event: [], merge=True)]
    assert info.value.kind is ErrorKind.UNAVAILABLE
    assert info.value.retryable
