"""The I/O seam of the Anthropic, Gemini/Vertex and Cohere adapters: one pooled client per provider,
JSON calls, and SSE streams that close the upstream request when the consumer stops.

Codecs stay pure; everything that touches the network goes through `Upstream`, so the adapters can
move onto the shared HTTP layer by changing this one class.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from provider_gateway.config import Section
from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.providers.base import BaseProvider

# Builds the vendor's error from (status, parsed body or None, response headers).
ErrorParser = Callable[[int, Any, Mapping[str, str]], GatewayError]


@dataclass(slots=True, frozen=True)
class Timeouts:
    connect_s: float = 10.0
    first_byte_s: float = 60.0
    between_events_s: float = 120.0


TIMEOUT_KEYS = ("connect_timeout_s", "first_byte_timeout_s", "between_events_timeout_s")


def timeouts_from(options: Section) -> Timeouts:
    """The per-provider timeout keys every HTTP adapter accepts."""
    return Timeouts(
        connect_s=options.number("connect_timeout_s", 10.0, minimum=0.001),
        first_byte_s=options.number("first_byte_timeout_s", 60.0, minimum=0.001),
        between_events_s=options.number("between_events_timeout_s", 120.0, minimum=0.001),
    )


@dataclass(slots=True, frozen=True)
class SseEvent:
    event: str
    data: str


class SseDecoder:
    """Incremental SSE: bytes in, complete events out; `\\n`, `\\r\\n` and `\\r` line ends."""

    def __init__(self) -> None:
        self._buffer = ""
        self._event = ""
        self._data: list[str] = []
        self._pending_cr = False
        # A character's UTF-8 bytes may straddle two chunks.
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, chunk: bytes | str) -> list[SseEvent]:
        text = self._utf8.decode(chunk) if isinstance(chunk, bytes) else chunk
        if self._pending_cr and text.startswith("\n"):
            text = text[1:]
        self._pending_cr = text.endswith("\r")
        self._buffer += text
        events: list[SseEvent] = []
        lines = self._buffer.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        self._buffer = lines.pop()
        for line in lines:
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: str) -> SseEvent | None:
        if not line:
            if not self._data and not self._event:
                return None
            event = SseEvent(self._event, "\n".join(self._data))
            self._event, self._data = "", []
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """`retry-after-ms`, then `retry-after` as seconds or an HTTP date."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def _parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


class Upstream:
    """One provider's HTTP client, kept for the life of the server."""

    def __init__(
        self,
        provider: str,
        timeouts: Timeouts,
        parse_error: ErrorParser,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.provider = provider
        self.timeouts = timeouts
        self._parse_error = parse_error
        # httpx's own read timeout is only a backstop here: `sse` times each phase itself.
        backstop = max(timeouts.first_byte_s, timeouts.between_events_s) + 1
        self._stream_timeouts = {
            "connect": timeouts.connect_s,
            "read": backstop,
            "write": backstop,
            "pool": backstop,
        }
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(timeouts.first_byte_s, connect=timeouts.connect_s),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        )

    def _unreachable(self, exc: httpx.HTTPError, url: str) -> GatewayError:
        if isinstance(exc, httpx.TimeoutException):
            return GatewayError(
                ErrorKind.UNAVAILABLE, f"upstream timed out ({type(exc).__name__})", provider=self.provider
            )
        host = httpx.URL(url).host
        return GatewayError(
            ErrorKind.UNAVAILABLE, f"cannot reach {host}: {type(exc).__name__}: {exc}", provider=self.provider
        )

    def _error(self, response: httpx.Response, raw: bytes) -> GatewayError:
        error = self._parse_error(response.status_code, _parse_json(raw), response.headers)
        error.provider = error.provider or self.provider
        if error.retry_after is None:
            error.retry_after = retry_after_seconds(response.headers)
        if error.upstream_status is None:
            error.upstream_status = response.status_code
        return error

    async def call_json(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        try:
            response = await self._client.request(
                method, url, headers=dict(headers), json=body, params=params
            )
        except httpx.HTTPError as exc:
            raise self._unreachable(exc, url) from exc
        if response.status_code >= 400:
            raise self._error(response, response.content)
        parsed = _parse_json(response.content)
        if parsed is None:
            raise GatewayError(
                ErrorKind.UNAVAILABLE, f"upstream sent no JSON from {url}", provider=self.provider
            )
        return parsed

    async def sse(
        self, url: str, headers: Mapping[str, str], body: Any, params: Mapping[str, str] | None = None
    ) -> AsyncGenerator[SseEvent, None]:
        """POST and yield SSE events as each completes; the request is closed however this ends."""
        request = self._client.build_request(
            "POST",
            url,
            headers=dict(headers),
            json=body,
            params=params,
            extensions={"timeout": self._stream_timeouts},
        )
        try:
            async with asyncio.timeout(self.timeouts.first_byte_s):
                response = await self._client.send(request, stream=True)
        except TimeoutError:
            raise GatewayError(
                ErrorKind.UNAVAILABLE,
                f"no response from upstream within {self.timeouts.first_byte_s:g} s",
                provider=self.provider,
            ) from None
        except httpx.HTTPError as exc:
            raise self._unreachable(exc, url) from exc
        try:
            if response.status_code >= 400:
                raise self._error(response, await response.aread())
            decoder = SseDecoder()
            chunks = response.aiter_raw()
            wait = self.timeouts.first_byte_s
            while True:
                # A stalled stream fails after `between_events_s` without a byte, whatever httpx's
                # per-read timeout says (the first wait, for the first byte, is `first_byte_s`).
                try:
                    async with asyncio.timeout(wait):
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    raise GatewayError(
                        ErrorKind.UNAVAILABLE, f"no data from upstream for {wait:g} s", provider=self.provider
                    ) from None
                wait = self.timeouts.between_events_s
                for event in decoder.feed(chunk):
                    yield event
        except httpx.HTTPError as exc:
            raise GatewayError(
                ErrorKind.UNAVAILABLE,
                f"upstream stream broke: {type(exc).__name__}: {exc}",
                provider=self.provider,
            ) from exc
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()


def decode_json_event(data: str, provider: str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        raise GatewayError(
            ErrorKind.UNAVAILABLE, f"malformed upstream event: not JSON: {data[:80]!r}", provider=provider
        ) from None


class HttpProvider(BaseProvider):
    """A provider that talks to one vendor API through an `Upstream` it owns."""

    def __init__(self, name: str, base_url: str, timeouts: Timeouts, parse_error: ErrorParser) -> None:
        super().__init__(name)
        self.base_url = base_url.rstrip("/")
        self._upstream = Upstream(name, timeouts, parse_error)

    async def aclose(self) -> None:
        await self._upstream.aclose()
