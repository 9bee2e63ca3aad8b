"""Upstream HTTP errors -> gateway errors: kinds, retry delays from every header style, no keys."""

from __future__ import annotations

import email.utils
import math
import re

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from provider_gateway.errors import ErrorKind
from provider_gateway.http.errors import error_from_response, parse_duration, redact, retry_delay

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": email.utils.formatdate(NOW + 30, usegmt=True)}, 30.0),
        ({"x-ratelimit-reset-requests": "6m0s", "x-ratelimit-reset-tokens": "20ms"}, 360.0),
        # OpenAI's documented example, its request budget spent: that budget's reset, not the
        # token budget's refill to full, which held the deployment 6 minutes.
        (
            {
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-requests": "1s",
                "x-ratelimit-remaining-tokens": "149984",
                "x-ratelimit-reset-tokens": "6m0s",
            },
            1.0,
        ),
        ({"x-ratelimit-remaining-tokens": "-1", "x-ratelimit-reset-tokens": "3s"}, 3.0),
        ({"x-ratelimit-reset": str(int(NOW + 12))}, 12.0),
        ({"x-ratelimit-reset": str(int((NOW + 3) * 1000))}, 3.0),
        ({"x-ratelimit-reset": "2"}, 2.0),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_delay_from_headers(headers: dict[str, str], expected: float | None) -> None:
    got = retry_delay(headers, None, now=NOW)
    assert got == pytest.approx(expected, abs=1.0) if expected is not None else got is None


def test_retry_delay_from_google_retry_info() -> None:
    body = {
        "error": {
            "code": 429,
            "status": "RESOURCE_EXHAUSTED",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure"},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7.5s"},
            ],
        }
    }
    assert retry_delay({}, body) == 7.5
    err = error_from_response("gemini", 429, {}, orjson.dumps(body))
    assert err.kind is ErrorKind.RESOURCE_EXHAUSTED
    assert err.retry_after == 7.5
    assert err.retryable


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("7s", 7.0),
        ("1.5s", 1.5),
        ("250ms", 0.25),
        ("6m0s", 360.0),
        ("1h2m3s", 3723.0),
        ("3", 3.0),
        ("x", None),
    ],
)
def test_parse_duration(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def general_duration(text: str) -> float | None:
    """parse_duration without its fast paths: float() first, else any sequence of parts."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNITS[u] for n, u in parts)


amounts = st.one_of(st.integers(0, 10**6).map(str), st.decimals(0, 10**4, places=4).map(str))
go_like = st.builds(
    lambda h, m, amount, unit, pad: pad + h + m + amount + unit + pad,
    st.sampled_from(["", "0h", "1h", "25h", "1.5h"]),
    st.sampled_from(["", "0m", "6m", "59m", "1.5m"]),
    st.one_of(st.just(""), amounts),
    st.sampled_from(["", "s", "ms", "us", "µs", "ns", "h", "m", "x"]),
    st.sampled_from(["", " ", "\t"]),
)
any_text = st.text(alphabet="0123456789.smhunµe+-_ x", max_size=10)


@settings(max_examples=1500, deadline=None, derandomize=True)
@given(st.one_of(go_like, any_text))
@example("")
@example("1h")
@example("5m")
@example("1m5ms")
@example("nan")
@example("1e3")
def test_parse_duration_is_the_general_reading(text: str) -> None:
    """The fast paths (no float() on a unit, Go's layout in one match) read what the general
    reading does, to the last bit, and refuse what it refuses."""
    got, want = parse_duration(text), general_duration(text)
    if want is None or got is None:
        assert got is want
    elif math.isnan(want):
        assert math.isnan(got)
    else:
        assert got == want


@pytest.mark.parametrize(
    ("status", "body", "kind", "retryable"),
    [
        (
            401,
            {"error": {"message": "Incorrect API key provided: sk-proj-abcdEFGH1234****wxyz"}},
            ErrorKind.UNAUTHENTICATED,
            False,
        ),
        (403, {"error": {"message": "forbidden"}}, ErrorKind.PERMISSION_DENIED, False),
        (404, {"error": {"message": "The model `gpt-9` does not exist"}}, ErrorKind.NOT_FOUND, False),
        (
            400,
            {
                "error": {
                    "message": "This model's maximum context length is 8192 tokens",
                    "code": "context_length_exceeded",
                }
            },
            ErrorKind.INVALID_ARGUMENT,
            False,
        ),
        (400, {"error": {"message": "bad temperature"}}, ErrorKind.INVALID_ARGUMENT, False),
        (408, {}, ErrorKind.UNAVAILABLE, True),
        (409, {}, ErrorKind.UNAVAILABLE, True),
        (429, {"error": {"message": "slow down"}}, ErrorKind.RESOURCE_EXHAUSTED, True),
        (500, {"error": {"message": "boom"}}, ErrorKind.UNAVAILABLE, True),
        (
            529,
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            ErrorKind.UNAVAILABLE,
            True,
        ),
    ],
)
def test_status_mapping(status: int, body: dict[str, object], kind: ErrorKind, retryable: bool) -> None:
    err = error_from_response("openai", status, {"retry-after": "2"}, orjson.dumps(body), model="gpt-9")
    assert (err.kind, err.retryable, err.upstream_status) == (kind, retryable, status)
    assert err.retry_after == 2.0
    assert "sk-proj" not in err.message


def test_auth_message_names_the_provider_and_hides_keys() -> None:
    raw = (
        b'{"error": {"message": "Invalid key sk-live-1234567890abcdef and AIzaSyA1234567890123456789012345"}}'
    )
    err = error_from_response("groq", 401, {}, raw, secrets=("my-secret-key",))
    assert err.message.startswith("check the provider key for groq")
    assert "1234567890" not in err.message
    assert "my-secret-key" not in redact("echo my-secret-key back", ("my-secret-key",))


def test_non_json_body_is_quoted_and_bounded() -> None:
    err = error_from_response("vllm", 502, {}, b"<html>Bad Gateway</html>" * 100)
    assert err.kind is ErrorKind.UNAVAILABLE
    assert "Bad Gateway" in err.message
    assert len(err.message) < 600


def test_an_unreadable_reset_does_not_hide_the_delay_another_header_asks_for() -> None:
    """ "nan" (which float() reads) made max() of the resets NaN, so the 5 s the token budget asked
    for was dropped and the router retried at once; "inf" asked for the day-long maximum."""
    for unreadable in ("nan", "inf"):
        headers = {"x-ratelimit-reset-requests": unreadable, "x-ratelimit-reset-tokens": "5s"}
        assert retry_delay(headers, now=1_800_000_000.0) == 5.0


def test_a_request_too_many_bytes_is_not_a_context_window() -> None:
    """Anthropic's 413 names a byte limit (32 MB, its load balancer's), which a shorter
    conversation may not cure (an image or a PDF): the client gets the vendor's words, not advice
    about the model's context window."""
    body = {
        "type": "error",
        "error": {
            "type": "request_too_large",
            "message": "Request exceeds the maximum allowed number of bytes.",
        },
    }
    err = error_from_response("anthropic", 413, {}, orjson.dumps(body))
    assert err.kind is ErrorKind.INVALID_ARGUMENT
    assert "context window" not in err.message
    assert "Request exceeds the maximum allowed number of bytes." in err.message
    prompt = {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "prompt is too long: 208310 tokens > 200000 maximum",
        },
    }
    assert "context window" in error_from_response("anthropic", 400, {}, orjson.dumps(prompt)).message


def test_groqs_failed_generation_is_quoted_but_never_classifies_the_error() -> None:
    """Groq's `failed_generation` is the model's own output, which its message tells the reader
    to see: the client gets it (key-shaped text masked), but what the model wrote never makes a
    rejected tool call read as a context-window error."""
    generated = "<function=summarise>the text exceeds the maximum context sk-live-abcdefghijklmnopqrstuvwxyz"
    body = {
        "error": {
            "message": "Failed to call a function. Please adjust your prompt. See 'failed_generation' for more details.",
            "type": "invalid_request_error",
            "code": "tool_use_failed",
            "failed_generation": generated,
        }
    }
    err = error_from_response("groq", 400, {}, orjson.dumps(body))
    assert err.kind is ErrorKind.INVALID_ARGUMENT
    assert "context window" not in err.message
    assert "groq rejected the request (HTTP 400)" in err.message
    assert "[failed_generation: <function=summarise>the text exceeds the maximum context ***]" in err.message
