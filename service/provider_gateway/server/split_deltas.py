"""Deltas too large for one gRPC message, split into several of the same kind.

grpc.aio refuses to send a message over [server] max_message_bytes and fails the whole stream
(RESOURCE_EXHAUSTED). Merging (an adapter's one upstream read, the coalescer's events in hand) or a
single huge upstream event can make a delta's text that large although every token is small, so
the writer splits any text, reasoning or tool-call arguments over `delta_bytes(limit)` into
consecutive deltas, at character boundaries; what a client accumulates is byte-identical (a text
delta's token log-probabilities go on its last piece).
"""

from __future__ import annotations

from provider_gateway.domain import (
    GatewayEvent,
    ReasoningDelta,
    TextDelta,
    TextDeltaWithLogprobs,
    ToolCallDelta,
)

# Room kept for the message's other fields (tags, lengths, a tool call's index, a reasoning id).
FIELD_ROOM = 1024
UTF8_MAX = 4  # bytes of one character at most, so `len(text) * 4 <= bound` needs no encode


def delta_bytes(send_limit: int) -> int:
    """UTF-8 bytes of text one delta may carry under the server's send limit (at least 1024)."""
    return max(send_limit - FIELD_ROOM, send_limit // 2)


def within(events: list[GatewayEvent], bound: int) -> list[GatewayEvent]:
    """`events` with every delta whose text could exceed `bound` bytes split; the same list when
    none could (a length check per delta: the normal case encodes nothing)."""
    chars = bound // UTF8_MAX
    for event in events:
        if type(event) is TextDelta or type(event) is TextDeltaWithLogprobs:
            if len(event.text) > chars:
                break
        elif type(event) is ToolCallDelta:
            if len(event.arguments_delta) > chars:
                break
        elif type(event) is ReasoningDelta and _reasoning_chars(event) > chars:
            break
    else:
        return events
    return [piece for event in events for piece in _pieces(event, bound)]


def _reasoning_chars(delta: ReasoningDelta) -> int:
    return len(delta.text) + len(delta.signature) + len(delta.id)


def _pieces(event: GatewayEvent, bound: int) -> list[GatewayEvent]:
    if isinstance(event, TextDeltaWithLogprobs):
        # The entries on the last piece: the tokens are whole once all of the text has come.
        *texts, last = chunks(event.text, bound)
        return [*(TextDelta(text) for text in texts), TextDeltaWithLogprobs(last, event.logprobs)]
    if isinstance(event, TextDelta):
        return [TextDelta(text) for text in chunks(event.text, bound)]
    if isinstance(event, ToolCallDelta):
        return [ToolCallDelta(event.index, text) for text in chunks(event.arguments_delta, bound)]
    if isinstance(event, ReasoningDelta):
        return _reasoning_pieces(event, bound)
    return [event]


def _reasoning_pieces(delta: ReasoningDelta, bound: int) -> list[GatewayEvent]:
    """The text in pieces; the block's state (signature, redaction, id) on the last piece only, so
    the block closes after all of its text: alone, after the text, when it does not fit beside it."""
    texts = chunks(delta.text, bound)  # at least one, maybe ""
    if not delta.closes_block:
        return [ReasoningDelta(text) for text in texts]
    last = texts.pop()
    if _utf8_size(last) + _utf8_size(delta.signature) + _utf8_size(delta.id) > bound:
        texts.append(last)
        last = ""
    closing = ReasoningDelta(last, delta.signature, delta.redacted, delta.id)
    return [*(ReasoningDelta(text) for text in texts), closing]


def chunks(text: str, bound: int) -> list[str]:
    """`text` in consecutive pieces of at most `bound` UTF-8 bytes, each ending on a character
    boundary (a cut backs off over continuation bytes, 10xxxxxx); `[text]` when it fits."""
    if len(text) * UTF8_MAX <= bound:
        return [text]
    data = text.encode(errors="surrogatepass")  # a lone surrogate is the protobuf layer's to refuse
    if len(data) <= bound:
        return [text]
    pieces: list[str] = []
    start = 0
    while len(data) - start > bound:
        end = start + bound
        while data[end] & 0xC0 == 0x80:
            end -= 1
        pieces.append(data[start:end].decode(errors="surrogatepass"))
        start = end
    pieces.append(data[start:].decode(errors="surrogatepass"))
    return pieces


def _utf8_size(text: str) -> int:
    return len(text.encode(errors="surrogatepass"))
