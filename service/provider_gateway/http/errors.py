"""Upstream HTTP failures -> GatewayError, with the retry delay the upstream asked for.

The status decides the kind; the body only refines it (context length, quota, the vendor's own
message). The vendor's `x-should-retry` header, when it says "true" or "false", overrides whether
to retry (`obey_retry_advice`), as the openai and anthropic SDKs obey it before any status rule.
Messages name the provider and never carry a key: vendors echo partial keys in 401 bodies, so
anything key-shaped is masked before it reaches a client or a log.
"""

from __future__ import annotations

import email.utils
import math
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from provider_gateway.errors import ErrorKind, GatewayError

_KEY_SHAPED = re.compile(
    r"\b(?:sk|pk|rk|gsk|xai|key|sess|org)[-_][A-Za-z0-9*_\-.]{6,}|\bAIza[0-9A-Za-z_\-]{20,}|\bBearer\s+\S+",
    re.IGNORECASE,
)
_CONTEXT_LENGTH = re.compile(
    r"context[_ ]length|context window|maximum context|too many tokens|prompt is too long|"
    r"input is too long|reduce the length|exceeds the (?:model's )?(?:max|context)",
    re.IGNORECASE,
)
# A limit on the request's size in bytes (Anthropic's 413 "Request exceeds the maximum allowed number
# of bytes", from its load balancer), which a shorter context does not cure: not the context window.
_BYTE_LIMIT = re.compile(r"\bbytes\b|\b\d+ ?[KMG]i?B\b", re.IGNORECASE)
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)")
# Go's Duration.String() layout ("1h2m3.5s", "6m0s", "120ms"): whole hours and minutes, then one
# amount of one unit; `m(?!s)` so that "5ms" is milliseconds.
_GO_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+(?:\.\d+)?)(ms|us|µs|ns|s))?")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
# Vendors' own error text is bounded, but long enough for their longest documented messages
# (Anthropic's rate-limit text is ~480 characters, its advice and links at the end).
MAX_MESSAGE = 1000
MAX_RAW_TEXT = 400  # of a body that is not JSON (an HTML error page): a glimpse is enough
# Text is masked before it is cut, and masked over this much more than is shown, so that a key
# straddling the cut is masked whole rather than cut into a piece the mask no longer knows.
KEY_SLACK = 4096
SHOULD_RETRY = "x-should-retry"  # not a standard header: OpenAI's and Anthropic's
# Anthropic refuses every call of an account without credit with a 400 `invalid_request_error` in
# these words (not a 402 or a 429): an account out of credit, matched on its documented message only.
_ANTHROPIC_NO_CREDIT = "Your credit balance is too low to access the Anthropic API"
# A delay longer than this is a broken header, not advice: waiting a day is already "do not retry".
MAX_RETRY_DELAY_S = 86_400.0
# How long an account out of credit (OpenAI's 429 `insufficient_quota`) keeps its deployment out of
# every request's way: credit bought or a billing limit raised counts within minutes, and one
# request per hold is all a deployment still out of credit costs (docs/configuration.md, [routing]).
OUT_OF_CREDIT_HOLD_S = 300.0


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return _KEY_SHAPED.sub("***", text)


def parse_duration(text: str) -> float | None:
    """Seconds from "7s", "1.5s", "250ms", "6m0s", "1h2m3.5s" or a bare number of seconds."""
    text = text.strip()
    # float() reads no text that ends in a unit: OpenAI's resets ("120ms", "6m0s", on every
    # answer) skip its ValueError, and Go's own layout is read by one match (issue 15).
    if text[-1:] not in "smh":  # "" is "in" every string: it goes below and is refused there
        try:
            return float(text)
        except ValueError:
            pass
    elif text and (go := _GO_DURATION.fullmatch(text)) is not None:
        hours, minutes, amount, unit = go.groups()
        if hours is None and minutes is None:
            return float(amount) * _UNITS[unit]
        # The general sum's terms, plus zeros for parts not given (sum() compensates rounding).
        return sum(
            (float(hours or 0) * 3600.0, float(minutes or 0) * 60.0, float(amount or 0) * _UNITS[unit or "s"])
        )
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNITS[u] for n, u in parts)


def seconds_until_reset(value: str, now: float) -> float | None:
    """A reset header: a duration, or an epoch time in seconds or milliseconds; None when unreadable
    ("nan" and "inf" included, which float() reads)."""
    seconds = parse_duration(value)
    if seconds is None or not math.isfinite(seconds):
        return None
    if seconds > 1e12:  # an epoch in milliseconds
        return seconds / 1000 - now
    if seconds > 1e9:  # an epoch in seconds
        return seconds - now
    return seconds


def retry_delay(headers: Mapping[str, str], body: Any = None, now: float | None = None) -> float | None:
    """The delay in seconds the upstream asked for, or None when it did not say (or said "NaN").

    Always finite, 0 <= delay <= MAX_RETRY_DELAY_S: the router sleeps on it and the servicer
    puts it in a RetryInfo, and neither can use a NaN or an infinity.
    """
    return _bounded(_asked_delay(headers, body, time.time() if now is None else now))


def _bounded(delay: float | None) -> float | None:
    if delay is None or math.isnan(delay):
        return None
    return min(max(delay, 0.0), MAX_RETRY_DELAY_S)


def _asked_delay(headers: Mapping[str, str], body: Any, now: float) -> float | None:
    lowered = {k.lower(): v for k, v in headers.items()}
    if (ms := lowered.get("retry-after-ms")) is not None:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    if (after := lowered.get("retry-after")) is not None:
        try:
            return float(after)
        except ValueError:
            try:
                return email.utils.parsedate_to_datetime(after).timestamp() - now
            except (TypeError, ValueError):
                pass
    resets = {
        name.removeprefix("x-ratelimit-reset"): s
        for name, value in lowered.items()
        if name.startswith("x-ratelimit-reset") and (s := seconds_until_reset(value, now)) is not None
    }
    # Each reset is when that budget is whole again (OpenAI's "6m0s" for tokens barely used). The
    # 429 names no budget, but the remaining-* headers show the spent ones: wait for those only.
    spent = [s for suffix, s in resets.items() if _spent(lowered.get("x-ratelimit-remaining" + suffix))]
    if spent or resets:
        return max(spent or resets.values())
    return _google_delay(body)


def _spent(remaining: str | None) -> bool:
    """A `x-ratelimit-remaining-*` value of 0 (Azure's -1 means unknown, not spent)."""
    try:
        return remaining is not None and float(remaining) == 0
    except ValueError:
        return False


def google_retry_delay(body: Any) -> float | None:
    """`RetryInfo.retryDelay` from a google.rpc.Status body (`{"error": {"details": [...]}}`)."""
    return _bounded(_google_delay(body))


def _google_delay(body: Any) -> float | None:
    error = body.get("error") if isinstance(body, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    for detail in details if isinstance(details, list) else []:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            delay = detail.get("retryDelay")
            if isinstance(delay, str):
                return parse_duration(delay)
            if isinstance(delay, dict):  # the proto JSON of a Duration in some clients
                try:
                    return float(delay.get("seconds", 0)) + float(delay.get("nanos", 0)) / 1e9
                except (TypeError, ValueError, OverflowError):
                    return None
    return None


def retry_advice(headers: Mapping[str, str]) -> bool | None:
    """What the upstream's `x-should-retry` says: True for exactly "true", False for exactly
    "false", None when absent or anything else (the SDKs compare the value exactly)."""
    value = next((v for name, v in headers.items() if name.lower() == SHOULD_RETRY), None)
    return True if value == "true" else False if value == "false" else None


def obey_retry_advice(error: GatewayError, headers: Mapping[str, str]) -> GatewayError:
    """`error` as the upstream's `x-should-retry` amends it, over any status rule. "true": retryable,
    its kind unchanged. "false": a retry against this upstream will not help, so the request goes
    to it no more (`retry_elsewhere_only`), and its retry delay is dropped, since no wait makes
    that retry worth it (the client must not be told to come back). Other deployments still may."""
    advice = retry_advice(headers)
    if advice is True:
        error.retryable = True
    elif advice is False and not error.retry_elsewhere_only:  # (else a status rule's own hold stands)
        error.retry_elsewhere_only = True
        error.retry_after = None
    return error


def parse_body(raw: bytes) -> Any:
    """The JSON error body. Google's streaming methods (Vertex AI's `streamGenerateContent` and
    `streamRawPredict`) answer an error with their google.rpc.Status in a one-element array, which
    google-genai unwraps too: the status inside is the body, its words, RetryInfo and ErrorInfo."""
    try:
        body = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return None
    if isinstance(body, list) and len(body) == 1 and isinstance(body[0], dict) and "error" in body[0]:
        return body[0]
    return body


def upstream_message(body: Any, raw: bytes) -> str:
    """The vendor's own words: `error.message` (OpenAI, Google, Anthropic), `message`, `error`; else
    a glimpse of the raw body (MAX_RAW_TEXT and KEY_SLACK more, for `vendor_said` to mask, then cut)."""
    said = _json_message(body)
    return said if said is not None else glimpse(raw, MAX_RAW_TEXT + KEY_SLACK)


def glimpse(raw: bytes, size: int) -> str:
    return raw[:size].decode("utf-8", errors="replace").strip()


def shown_glimpse(raw: bytes, size: int, secrets: Iterable[str] = ()) -> str:
    """The first `size` characters of a raw body as a client may see them: masked, then cut."""
    return redact(glimpse(raw, size + KEY_SLACK), secrets)[:size]


def _json_message(body: Any) -> str | None:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            for key in ("message", "msg", "type", "code"):
                if isinstance(error.get(key), str) and error[key]:
                    return str(error[key])
        if isinstance(error, str) and error:
            return error
        for key in ("message", "detail", "msg"):
            if isinstance(body.get(key), str) and body[key]:
                return str(body[key])
    return None


def _failed_generation(body: Any, secrets: Iterable[str]) -> str:
    """Groq's `failed_generation` (the model's output that did not parse as a tool call), which its
    message tells the reader to see: quoted after the message, or the client could not. It is the
    model's words, not the vendor's: never read to classify the error. Masked, then bounded."""
    error = body.get("error") if isinstance(body, dict) else None
    generated = error.get("failed_generation") if isinstance(error, dict) else None
    if not isinstance(generated, str) or not generated:
        return ""
    return f" [failed_generation: {redact(generated[: MAX_MESSAGE + KEY_SLACK], secrets)[:MAX_MESSAGE]}]"


def vendor_said(body: Any, raw: bytes, status: int, secrets: Iterable[str] = ()) -> str:
    """The vendor's own words as a client may see them: keys masked, then length bounded."""
    said = _json_message(body)
    if said is None:
        return shown_glimpse(raw, MAX_RAW_TEXT, secrets) or f"HTTP {status}"
    return redact(said, secrets)[:MAX_MESSAGE] or f"HTTP {status}"


def _error_code(body: Any) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return " ".join(str(error.get(k, "")) for k in ("code", "type", "status"))
    return ""


def error_from_response(
    provider: str,
    status: int,
    headers: Mapping[str, str],
    raw: bytes,
    *,
    model: str = "",
    secrets: Iterable[str] = (),
) -> GatewayError:
    """Map an upstream HTTP error response to the gateway's error kinds, by its status. (`Upstream`
    applies `x-should-retry` after this and after any vendor's own policy, so that it wins.)"""
    body = parse_body(raw)
    said = vendor_said(body, raw, status, secrets)
    code = _error_code(body)
    delay = retry_delay(headers, body)

    def error(kind: ErrorKind, message: str, retryable: bool | None = None) -> GatewayError:
        return GatewayError(
            kind, message, provider=provider, retry_after=delay, retryable=retryable, upstream_status=status
        )

    if status in (401, 498):  # 498: Cohere's (and some gateways') "invalid token"
        return error(ErrorKind.UNAUTHENTICATED, f"check the provider key for {provider}: {said}")
    if status == 403:
        return error(ErrorKind.PERMISSION_DENIED, f"check the provider key for {provider}: {said}")
    if status == 404:
        what = f"model {model!r}" if model else "resource"
        return error(ErrorKind.NOT_FOUND, f"{what} not found at {provider}: {said}")
    if status == 402:  # Payment Required: DeepSeek's "Insufficient Balance", OpenRouter's credits
        return _out_of_credit(provider, said, status, delay)
    if status == 400 and "invalid_request_error" in code and said.startswith(_ANTHROPIC_NO_CREDIT):
        return _out_of_credit(provider, said, status, delay)
    if status == 429:
        if "insufficient_quota" in code or "insufficient_quota" in said:
            return _out_of_credit(provider, said, status, delay)
        return error(ErrorKind.RESOURCE_EXHAUSTED, f"rate limited by {provider}: {said}", True)
    if status in (408, 409) or status >= 500 or "overloaded" in code:
        return error(ErrorKind.UNAVAILABLE, f"{provider} unavailable (HTTP {status}): {said}", True)
    if status in (400, 413, 422) and (
        (_CONTEXT_LENGTH.search(said) and not _BYTE_LIMIT.search(said)) or "context_length" in code
    ):
        return error(ErrorKind.INVALID_ARGUMENT, f"the request exceeds the model's context window: {said}")
    quoted = _failed_generation(body, secrets)
    return error(
        ErrorKind.INVALID_ARGUMENT, f"{provider} rejected the request (HTTP {status}): {said}{quoted}"
    )


class OutOfCredit(GatewayError):
    """A 429 (or 402, or Anthropic's 400) that is not about load: the router holds the deployment without slowing its limiter,
    and tells the requests refused meanwhile why (routing/verdicts.py)."""


def _out_of_credit(provider: str, said: str, status: int, delay: float | None) -> GatewayError:
    """The account behind the deployment has no credit left: no wait helps this deployment soon,
    but another one (another key, another vendor) answers. The request fails over and never tries
    this one again (`retry_elsewhere_only`), and the delay holds it for OUT_OF_CREDIT_HOLD_S, so
    that other requests skip it too (the router holds a deployment for a 429's delay)."""
    error = OutOfCredit(
        ErrorKind.RESOURCE_EXHAUSTED,
        f"the account behind {provider} is out of credit: add credit or raise its billing limit with the vendor, "
        f"or route to another deployment; the gateway sends it nothing for "
        f"{OUT_OF_CREDIT_HOLD_S:g} s: {said}",
        provider=provider,
        retry_after=max(delay or 0.0, OUT_OF_CREDIT_HOLD_S),
        retryable=True,
        upstream_status=status,
    )
    error.retry_elsewhere_only = True
    return error
