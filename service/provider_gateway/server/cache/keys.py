"""An answer's key: the caller's identity and everything in the request that can change the answer.

The request is hashed in protobuf's deterministic serialization (map entries sorted), so every field,
new ones included, is part of the key; only `stream_options` is left out of the unary methods', which
ignore it, and its `batch_events` out of the streams' (a stream is kept as single events and a hit
is batched for a client that asks). The tags (`metadata`) are kept in although never sent
upstream: a hit then skips no check the servicer would have made of them, and the access log shows
them as they were checked.
The caller's key digest is blake2b's own key: one caller's entry can never be found by another.
"""

from __future__ import annotations

import hashlib

from google.protobuf.message import Message

# How a stream's events are sent: part of a stream's answer, ignored by the unary methods.
STREAM_SHAPE = "stream_options"


# Requests larger than this are hashed on a worker thread (hashlib lets go of the GIL), so that a
# multi-megabyte prompt does not hold the event loop for milliseconds (BLAKE2b: ~2.5 ms per MiB).
HASHED_ON_THE_LOOP_BYTES = 64 * 1024


def answer_bytes(request: Message, streaming: bool) -> bytes:
    """What of the request is hashed: all of it but what cannot change the answer."""
    if request.HasField(STREAM_SHAPE):
        options = request.stream_options  # type: ignore[attr-defined]
        if not streaming or options.batch_events or not options.ByteSize():
            trimmed = type(request)()  # a copy: the servicer gets the request as sent
            trimmed.CopyFrom(request)
            # Kept as single events, a stream's entry is replayed to either kind of client.
            trimmed.stream_options.batch_events = False  # type: ignore[attr-defined]
            if not streaming or not trimmed.stream_options.ByteSize():  # type: ignore[attr-defined]
                trimmed.ClearField(STREAM_SHAPE)  # none set: as if none was sent
            request = trimmed
    return request.SerializeToString(deterministic=True)


def answer_key(rpc: str, caller: bytes, serialized: bytes) -> bytes:
    """`rpc`: the method's name (a Chat entry never answers a ChatStream); `caller`: the key's digest,
    or b"" without [auth]; `serialized`: `answer_bytes` of the request."""
    digest = hashlib.blake2b(key=caller, digest_size=32)
    digest.update(rpc.encode())
    digest.update(b"\n")  # method names have no newline: the boundary is unambiguous
    digest.update(serialized)
    return digest.digest()
