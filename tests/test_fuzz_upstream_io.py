"""Property-based fuzzing of the upstream helpers: event JSON decoding and the retry-delay parsers
that read vendor headers and bodies. Only GatewayError may escape; a delay is never negative.
Skipped where the helper is not on this branch."""

from __future__ import annotations

import contextlib
import importlib
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from provider_gateway.errors import GatewayError

FUZZ = settings(max_examples=400, deadline=None, derandomize=True)


def helper(module: str, name: str) -> Any:
    try:
        found = getattr(importlib.import_module(module), name, None)
    except ImportError:
        found = None
    if found is None:
        pytest.skip(f"{module}.{name} is not on this branch")
    return found


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


# Found on issue-3a-http: `Retry-After: nan` gives a NaN delay, which the servicer cannot put in a
# RetryInfo (int(nan) raises), so the client would get INTERNAL. Strict: remove when fixed.
@pytest.mark.xfail(strict=True, reason="http.errors.retry_delay returns nan for 'retry-after: NAN'")
def test_retry_delay_never_raises_or_goes_negative() -> None:
    retry_delay = helper("provider_gateway.http.errors", "retry_delay")

    @FUZZ
    @example({"retry-after": "NAN"}, None)
    @given(headers, bodies)
    def run(head: dict[str, str], body: Any) -> None:
        delay = retry_delay(head, body, now=0.0)
        assert delay is None or 0 <= delay < float("inf")

    run()
