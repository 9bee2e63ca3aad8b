"""`application/vnd.amazon.eventstream` bytes -> the events botocore would have parsed (pure).

Frames are cut from the byte stream here and decoded (CRCs, headers) by AWS's
`smithy-aws-event-stream`. Each event becomes the dict botocore's parser yields, so the codec reads
both alike: `{"contentBlockDelta": {...}}` for ConverseStream, `{"chunk": {"bytes": b"..."}}` (the
base64 already decoded) for InvokeModelWithResponseStream. An exception frame raises its status.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import struct
from collections.abc import Iterator
from typing import Any

from smithy_aws_event_stream.events import MAX_HEADERS_LENGTH, MAX_PAYLOAD_LENGTH, Event
from smithy_aws_event_stream.exceptions import EventError

from provider_gateway.errors import ErrorKind, GatewayError
from provider_gateway.providers.bedrock.errors import AwsError

PRELUDE = 12  # total length, headers length, prelude CRC
MAX_FRAME = PRELUDE + MAX_HEADERS_LENGTH + MAX_PAYLOAD_LENGTH + 4


def malformed(why: str) -> GatewayError:
    return GatewayError(ErrorKind.UNAVAILABLE, f"malformed event stream from Bedrock: {why}", retryable=True)


class FrameReader:
    """Feed bytes as they arrive; iterate over every whole frame's parsed event."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> Iterator[dict[str, Any]]:
        """Lazily: the events before an exception frame are delivered before it raises."""
        self._buffer += data
        while len(self._buffer) >= PRELUDE:
            total = struct.unpack_from("!I", self._buffer)[0]
            if not 16 <= total <= MAX_FRAME:  # checked before buffering a frame that size
                raise malformed(f"a frame of {total} bytes")
            if len(self._buffer) < total:
                break
            frame = bytes(self._buffer[:total])
            del self._buffer[:total]
            yield parse_frame(frame)

    def end(self) -> None:
        """Call when the body ends: bytes of an unfinished frame mean the stream was cut."""
        if self._buffer:
            raise malformed(f"the stream ended inside a frame ({len(self._buffer)} bytes left)")


def parse_frame(frame: bytes) -> dict[str, Any]:
    try:
        event = Event.decode(io.BytesIO(frame))
    except (EventError, struct.error, UnicodeDecodeError) as exc:
        raise malformed(type(exc).__name__) from None
    if event is None:
        raise malformed("an empty frame")
    headers, payload = event.message.headers, event.message.payload
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
        value = json.loads(payload)
    except (ValueError, RecursionError):
        raise malformed("an event whose payload is not JSON") from None
    if not isinstance(value, dict):
        raise malformed("an event whose payload is not a JSON object")
    return value


def _message(payload: bytes) -> str:
    try:
        body = json.loads(payload)
    except (ValueError, RecursionError):
        return payload[:400].decode("utf-8", errors="replace")
    return str(body.get("message") or body.get("Message") or "") if isinstance(body, dict) else ""
