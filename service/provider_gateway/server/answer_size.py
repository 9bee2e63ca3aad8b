"""A unary answer over the server's send limit ([server] max_message_bytes), refused by the edge.

grpc core refuses to send a message over `grpc.max_send_message_length` only after the handler has
returned: the client gets RESOURCE_EXHAUSTED "Sent message larger than max", while the call looked
OK to everything of ours (access log, metrics, span) and grpc logs an ERROR traceback. The edge
measures the answer first (`ByteSize()`, about 0.35 us for a typical ChatResponse) and refuses it
itself, as the status the client would have got, with what to do instead.
"""

from __future__ import annotations

# Per unary method: what a client with too large an answer can do, besides raising the limit.
INSTEAD = {
    "Chat": "or use ChatStream, whose answer comes in many messages",
    "Complete": "or use CompleteStream, whose answer comes in many messages",
    "Embed": "or send fewer inputs per request (or fewer dimensions)",
    "ListModels": "or list one provider's models (ListModelsRequest.provider)",
}


def too_large(rpc: str, size: int, limit: int) -> str:
    """The refusal's message (`rpc`: "Chat"): the sizes, the setting, what else the client can do."""
    instead = INSTEAD.get(rpc, "")
    return (
        f"the {rpc} answer is {size} bytes, over [server] max_message_bytes {limit}; "
        f"raise it{' ' + instead if instead else ''}"
    )


def too_large_message(rpc: str, size: int, limit: int) -> str:
    """The refusal of one stream message over the limit (the stream's deltas are split to fit it;
    its finish, with many attempts' errors, may not): the sizes and the setting."""
    return f"a {rpc} message is {size} bytes, over [server] max_message_bytes {limit}; raise it"
