"""A stream's last message, sent with the call's status as one gRPC batch instead of two.

grpc.aio sends every message of a server stream as a batch of operations of its own and the status
as one more: each batch is a completion on gRPC's poller thread, a future and a wake-up of the
event loop on both sides. A handler registered with a unary response returns its message, and
grpc.aio sends that message and the status together. The edge (server/edge.py) serves streams that
way: it writes every message but the last itself (`context.write`, which grpc.aio serves whatever
the handler's kind) and returns the last. On the wire nothing changes: the same HEADERS, one DATA
frame per message, then the trailers (bare grpc.aio, 50 streams: about 50 µs less server CPU a
stream; benchmarks/RESULTS.md).

Every stream that ends well ends with its finish (the router makes a stream cut short an error),
so the servicer marks the message that carries the finish, and the edge holds it until the handler
ends: at once when the upstream's end was read with it, as it nearly always is; otherwise when the
stream's last bookkeeping is done, which the status waited for before as well. Every message
before it goes out at once; text read together with the finish and batched with it goes with it.
So nothing may wait after a stream's finish (in the servicer, the router, the cache or auth's
wrappers): a deadline, a cancel or the shutdown cut in that wait would take the finish with it.
"""

from __future__ import annotations

from contextvars import ContextVar

# A call's messages pass through the handlers' generators in the call's own task, so what the
# servicer marks is what the edge reads, with no other call between them.
_LAST: ContextVar[object] = ContextVar("provider_gateway_last_message", default=None)


def mark_last(message: object) -> None:
    """`message`, yielded next, is the stream's last: the edge sends it with the status."""
    _LAST.set(message)


def is_last(message: object) -> bool:
    """Whether `message` is the one the handler below marked as the stream's last. A mark found is
    cleared: no later stream in the same task reads it, and nothing started from the call's context
    afterwards (a settlement task) keeps the message alive."""
    if _LAST.get() is not message:
        return False
    _LAST.set(None)
    return True


def forget_mark() -> None:
    """No mark left in the call's context (one its edge never read: the call ended early)."""
    _LAST.set(None)
