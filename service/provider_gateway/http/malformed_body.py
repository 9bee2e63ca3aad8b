"""An aiohttp connector whose connections fail the body reader when the body is malformed.

aiohttp's C HTTP parser (3.14, llhttp) meets a broken chunked body, e.g. `ZZZZ` where a chunk size
belongs, after the headers were delivered: it fails the connection's message queue and closes the
socket, but the body reader already handed to the caller is never told, and waits until a
timeout (measured: every read of such a body hung; the pure-Python parser and httpx fail at once).
The handler below passes that failure on to the body reader, so the stream ends UNAVAILABLE at once.

Likewise a reset: aiohttp ends a body framed by the connection's close (no content-length, not
chunked: HTTP/1.0-style) at any loss of the connection, a reset (RST) as cleanly as a close (FIN),
so a cut stream read as a whole one. Only a clean close ends such a body, as in http/h1.py.
"""

from __future__ import annotations

import functools
from typing import Any

import aiohttp
from aiohttp.client_proto import ResponseHandler


class _MalformedBodyFails(ResponseHandler):
    def connection_lost(self, exc: BaseException | None) -> None:
        body = self._payload  # a body with a length or chunks is failed by aiohttp itself, after this
        if exc is not None and body is not None and not body.is_eof() and body.exception() is None:
            body.set_exception(aiohttp.ClientPayloadError(f"connection lost inside the body: {exc!r}"))
        super().connection_lost(exc)

    def set_exception(self, exc: BaseException, *args: Any) -> None:
        body = self._payload  # the reader of the response being received, if any
        if body is not None and not body.is_eof() and body.exception() is None:
            body.set_exception(aiohttp.ClientPayloadError(f"malformed response body: {exc}"))
        super().set_exception(exc, *args)


class FailFastConnector(aiohttp.TCPConnector):
    """`aiohttp.TCPConnector` whose connections use `_MalformedBodyFails`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # A subclass is a ResponseHandler; partial's type parameter is what mypy cannot see through.
        self._factory = functools.partial(_MalformedBodyFails, loop=self._loop)  # type: ignore[assignment]
