"""`application/vnd.amazon.eventstream` bytes -> the events botocore would have parsed (pure).

Each event becomes the dict botocore's parser yields, so the codec reads both alike:
`{"contentBlockDelta": {...}}` for ConverseStream, `{"chunk": {"bytes": b"..."}}` (the base64 already
decoded) for InvokeModelWithResponseStream. An exception frame raises `AwsError`.

Frames are decoded here with `struct` and `binascii.crc32`, not with AWS's `smithy-aws-event-stream`:
its `Event.decode` took 50-80 µs per ConverseStream frame on the project VM against 11-20 µs here
(the same frames, same run), which alone made Bedrock's relay cost per event 1.9x the OpenAI
adapter's where the target is 1.2x (benchmarks/RESULTS.md, "Bedrock on the shared pool"). The
smithy package stays the tests' oracle: both decoders must read every header type alike.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import struct
import uuid
from collections.abc import Iterator
from typing import Any

import orjson

from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.providers.bedrock.errors import AwsError
from provider_gateway.wire import json_text

PRELUDE = 12  # total length, headers length, prelude CRC
MAX_HEADERS_LENGTH = 128 * 1024  # the format's limits
MAX_PAYLOAD_LENGTH = 16 * 1024 * 1024
MAX_FRAME = PRELUDE + MAX_HEADERS_LENGTH + MAX_PAYLOAD_LENGTH + 4
# Header value types with a fixed size: type -> (struct format, size).
FIXED = {2: ("!b", 1), 3: ("!h", 2), 4: ("!i", 4), 5: ("!q", 8)}
HeaderValue = bool | int | bytes | str | datetime.datetime | uuid.UUID


def malformed(why: str) -> GatewayError:
    return GatewayError(ErrorKind.UNAVAILABLE, f"malformed event stream from Bedrock: {why}", retryable=True)


class FrameReader:
    """Feed bytes as they arrive; iterate over every whole frame's parsed event."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> Iterator[dict[str, Any]]:
        """Lazily: the events before an exception frame are delivered before it raises."""
        buffer = self._buffer
        buffer += data
        at = 0
        try:
            while len(buffer) - at >= PRELUDE:
                total = struct.unpack_from("!I", buffer, at)[0]
                if not 16 <= total <= MAX_FRAME:  # checked before buffering a frame that size
                    raise malformed(f"a frame of {total} bytes")
                if len(buffer) - at < total:
                    check_prelude(buffer, at)  # before waiting for a length it declares
                    break
                frame = bytes(buffer[at : at + total])
                at += total
                yield parse_frame(frame)
        finally:
            del buffer[:at]  # once per read, not once per frame

    def end(self) -> None:
        """Call when the body ends: bytes of an unfinished frame mean the stream was cut."""
        if self._buffer:
            raise malformed(f"the stream ended inside a frame ({len(self._buffer)} bytes left)")


def check_prelude(buffer: bytes | bytearray, at: int) -> tuple[int, int]:
    """The frame's (total, headers) lengths from its prelude at `at`, once the prelude CRC and the
    headers length are checked: as botocore does, before a declared length is trusted."""
    total, headers_length, prelude_crc = struct.unpack_from("!III", buffer, at)
    if binascii.crc32(buffer[at : at + 8]) != prelude_crc:
        raise malformed("a frame whose prelude CRC does not match")
    if headers_length > min(MAX_HEADERS_LENGTH, total - 16):
        raise malformed("a frame whose lengths do not add up")
    return total, headers_length


def decode_frame(frame: bytes) -> tuple[dict[str, HeaderValue], bytes]:
    """One whole frame's headers and payload; both CRCs and every length checked."""
    try:
        total, headers_length = check_prelude(frame, 0)
        if total != len(frame):
            raise malformed("a frame whose lengths do not add up")
        if binascii.crc32(frame[:-4]) != struct.unpack_from("!I", frame, total - 4)[0]:
            raise malformed("a frame whose CRC does not match")
        end = PRELUDE + headers_length
        return decode_headers(frame, PRELUDE, end), frame[end:-4]
    except (struct.error, IndexError, UnicodeDecodeError, ValueError, OverflowError, OSError) as exc:
        # OverflowError, OSError: a timestamp header beyond what datetime holds
        raise malformed(type(exc).__name__) from None


def decode_headers(frame: bytes, at: int, end: int) -> dict[str, HeaderValue]:
    headers: dict[str, HeaderValue] = {}
    while at < end:
        size = frame[at]
        name = frame[at + 1 : at + 1 + size].decode()
        kind = frame[at + 1 + size]
        at += 2 + size
        value: HeaderValue
        if kind in (0, 1):
            value = kind == 0
        elif kind in FIXED:
            form, width = FIXED[kind]
            value = struct.unpack_from(form, frame, at)[0]
            at += width
        elif kind in (6, 7):
            (length,) = struct.unpack_from("!H", frame, at)
            raw = frame[at + 2 : at + 2 + length]
            value = raw.decode() if kind == 7 else raw
            at += 2 + length
        elif kind == 8:  # milliseconds since the epoch
            (millis,) = struct.unpack_from("!q", frame, at)
            value = datetime.datetime.fromtimestamp(millis / 1000, datetime.UTC)
            at += 8
        elif kind == 9:
            value = uuid.UUID(bytes=frame[at : at + 16])
            at += 16
        else:
            raise ValueError(f"header type {kind}")
        if name in headers or at > end:
            raise ValueError("a duplicate or overlong header")
        headers[name] = value
    return headers


def parse_frame(frame: bytes) -> dict[str, Any]:
    headers, payload = decode_frame(frame)
    message_type = headers.get(":message-type")
    if message_type == "exception":
        raise AwsError(str(headers.get(":exception-type", "")), _message(payload))
    if message_type == "error":
        raise AwsError(str(headers.get(":error-code", "")), str(headers.get(":error-message", "")))
    name = str(headers.get(":event-type", ""))
    body = _json(payload)
    if name == "chunk" and "bytes" in body:
        try:
            body = {**body, "bytes": base64.b64decode(str(body["bytes"]), validate=True)}
        except (binascii.Error, ValueError):
            raise malformed("a chunk whose bytes are not base64") from None
    return {name: body}


def _json(payload: bytes) -> dict[str, Any]:
    if not payload:
        return {}
    try:
        value = json_text.loads(payload)
    except orjson.JSONDecodeError:  # depth beyond 1024 included
        raise malformed("an event whose payload is not JSON") from None
    if not isinstance(value, dict):
        raise malformed("an event whose payload is not a JSON object")
    return value


def _message(payload: bytes) -> str:
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload[:400].decode("utf-8", errors="replace")
    return str(body.get("message") or body.get("Message") or "") if isinstance(body, dict) else ""
