"""Structured logs: JSON lines for machines, readable lines on a terminal, secrets redacted.

`configure()` installs one stderr handler on the root logger. Every line goes through `redact`,
the last line of defence: code must never log a secret, but if an upstream echoes a key into an
error message this keeps it out of the log.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Mapping
from typing import IO, Any

import orjson

from provider_gateway.observability.request import CURRENT
from provider_gateway.wire.json_text import well_formed_json

ACCESS_LOGGER = "provider_gateway.access"
REDACTED = "[REDACTED]"
# Environment variables whose values are secrets by their name (provider keys, tokens, passwords).
# A whole `_`-separated word of the name: OPENAI_API_KEY, AWS_SESSION_TOKEN, but not KEYCLOAK_URL.
SECRET_ENV_NAME = re.compile(
    r"(?:^|_)(?:KEY|APIKEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?)(?:_|$)", re.IGNORECASE
)
MIN_SECRET_LENGTH = 8
# Shapes of secrets worth catching even when we never saw the value: a labelled value keeps its
# label (`api_key=[REDACTED]`, `Bearer [REDACTED]`), a recognisable key is replaced whole.
SECRET_PATTERNS = re.compile(
    r"(?P<label>(?i:bearer)\s+"
    r"|(?i:\b(?:x-api-key|api[_-]?key|access[_-]?token|secret[_-]?(?:access[_-]?)?key|password|key))"
    r"[\"']?\s*[:=]\s*[\"']?)(?P<value>[^\s\"'&,;}]{6,})"
    r"|\bsk-[A-Za-z0-9_\-]{12,}"  # OpenAI, Anthropic (sk-ant-...), DeepSeek and friends
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"  # AWS access key ids
    r"|\bAIza[0-9A-Za-z_\-]{30,}"  # Google API keys
)
_known_secrets: set[str] = set()
_known_pattern: re.Pattern[str] | None = None


def register_secret(value: str) -> None:
    """Redact this exact value everywhere from now on (`config.Section.secret` registers each secret)."""
    if len(value) >= MIN_SECRET_LENGTH and value not in _known_secrets:
        _known_secrets.add(value)
        _compile_known()


def forget_secret(value: str) -> None:
    """Stop redacting a value a newer one replaced (rotated credentials and tokens), so that the set
    stays bounded on a server that refreshes credentials for months: each change recompiles one
    pattern of every known secret, on the event loop."""
    if value in _known_secrets:
        _known_secrets.discard(value)
        _compile_known()


def known_secrets() -> frozenset[str]:
    """The values redacted now."""
    return frozenset(_known_secrets)


def _compile_known() -> None:
    global _known_pattern
    ordered = sorted(_known_secrets, key=len, reverse=True)
    _known_pattern = re.compile("|".join(re.escape(s) for s in ordered)) if ordered else None


def register_environment_secrets(environ: Mapping[str, str] | None = None) -> None:
    """Treat the value of every KEY/TOKEN/SECRET/PASSWORD-named environment variable as a secret."""
    for name, value in (os.environ if environ is None else environ).items():
        if SECRET_ENV_NAME.search(name) and not value.startswith("/"):  # paths are not secrets
            register_secret(value)


# Substrings (lower case) without which SECRET_PATTERNS cannot match: most lines skip the regex.
TRIGGERS = (
    "sk-",
    "akia",
    "asia",
    "aiza",
    "bearer",
    "access_token",
    "access-token",
    "accesstoken",
    "password",
)
# The `...key` labels only count followed by their separator, as in SECRET_PATTERNS: the word "key"
# alone would send every access-log line through the regex ("api_key_name" is one of its fields),
# about 60 us a request.
KEY_LABEL = re.compile(r"key[\"']?\s*[:=]")


def redact(text: str) -> str:
    if _known_pattern is not None and any(secret in text for secret in _known_secrets):
        text = _known_pattern.sub(REDACTED, text)
    lowered = text.lower()
    if any(trigger in lowered for trigger in TRIGGERS) or KEY_LABEL.search(lowered):
        text = SECRET_PATTERNS.sub(_keep_label, text)
    return text


def _keep_label(match: re.Match[str]) -> str:
    return (match.group("label") or "") + REDACTED


class RedactingFilter(logging.Filter):
    """Renders each record's message once and redacts it, whatever handler formats it later; a record
    logged while serving an RPC also gets that request's id (and trace id), for correlation."""

    def filter(self, record: logging.LogRecord) -> bool:
        state = CURRENT.get()
        if state is not None and not hasattr(record, "request_id"):
            record.request_id = state.id()
            if state.trace_id:
                record.trace_id = state.trace_id
        record.msg = redact(record.getMessage())
        record.args = None
        return True


_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _RESERVED}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,  # which of `serve --workers` processes wrote it
        }
        line.update(_fields(record))
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        try:
            encoded = orjson.dumps(line, default=str)
        except TypeError:  # upstream text holding half of a surrogate pair (wire/json_text.py)
            encoded = orjson.dumps(well_formed_json(line), default=str)
        return redact(encoded.decode())


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        return redact(f"{super().format(record)} {extra}" if extra else super().format(record))


def configure(level: str = "info", fmt: str = "auto", stream: IO[str] | None = None) -> logging.Handler:
    """One handler on the root logger: JSON unless `fmt` is "text" or auto and stderr is a terminal."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    use_text = fmt == "text" or (fmt == "auto" and stream.isatty())
    handler.setFormatter(TextFormatter() if use_text else JsonFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    register_environment_secrets()
    return handler


access_log = logging.getLogger(ACCESS_LOGGER)


def log_request(state: Any, status: str, duration_s: float) -> None:
    """The one INFO line per request."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    access_log.info(
        "%s %s %s/%s %.1f ms",
        state.rpc,
        status,
        state.provider or "-",
        state.model or "-",
        duration_s * 1000,
        extra={
            "request_id": state.id(),
            "trace_id": state.trace_id,
            "rpc": state.rpc,
            "provider": state.provider,
            "model": state.model,
            "status": status,
            "latency_ms": round(duration_s * 1000, 3),
            "input_tokens": state.input_tokens,
            "output_tokens": state.output_tokens,
            "attempts": state.attempts,
            "cost_usd_micros": state.cost_micros,  # null: no price known for the model
            "usage_estimated": state.usage_estimated,
            "usage_source": state.usage_source if state.attempts else "none",
            "api_key_name": state.key,  # the configured name, never the key
            "metadata": state.tags,  # the request's tags, null when it set none (or was refused unchecked)
        },
    )
