"""Deltas too large for one gRPC message, split into several of the same kind.

grpc.aio refuses to send a message over [server] max_message_bytes and fails the whole stream
(RESOURCE_EXHAUSTED). Merging (an adapter's one upstream read, the coalescer's events in hand) or a
single huge upstream event can make a delta's text that large although every token is small, so
the writer splits any text, reasoning or tool-call arguments over `delta_bytes(limit)` into
consecutive deltas, at character boundaries; what a client accumulates is byte-identical.

A text delta's token log-probabilities can outgrow the limit with little text (up to 20
alternatives a token): they are split with the text, in order, each group of entries on the piece
with the text its tokens spell. A tool call's end, which repeats the call's whole arguments, goes
without them when the call would not fit: the deltas before it carry them whole, and clients join
those when the end has none. Only deltas with log-probabilities and tool calls' ends pay for more
than the length check of a plain delta.
"""

from __future__ import annotations

from provider_gateway.domain import (
    GatewayEvent,
    ReasoningDelta,
    TextDelta,
    TextDeltaWithLogprobs,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
)

# Room kept for the message's other fields (tags, lengths, a tool call's index, a reasoning id).
FIELD_ROOM = 1024
UTF8_MAX = 4  # bytes of one character at most, so `len(text) * 4 <= bound` needs no encode
# A TokenLogprob's bytes besides its token's text and bytes: its tag and length in the message that
# holds it, the token's and the bytes' tags and lengths, the double (9).
ENTRY_ROOM = 20
# A tool call's end's bytes besides its call's id, name and arguments: tags, lengths, the index.
END_ROOM = 64


def delta_bytes(send_limit: int) -> int:
    """UTF-8 bytes of text one delta may carry under the server's send limit (at least 1024)."""
    return max(send_limit - FIELD_ROOM, send_limit // 2)


def within(events: list[GatewayEvent], bound: int) -> list[GatewayEvent]:
    """`events` with every delta whose text could exceed `bound` bytes split; the same list when
    none could (a length check per delta: the normal case encodes nothing)."""
    chars = bound // UTF8_MAX
    for event in events:
        if type(event) is TextDelta:
            if len(event.text) > chars:
                break
        elif type(event) is TextDeltaWithLogprobs:
            if len(event.text) > chars or scored_bytes(event) > bound:
                break
        elif type(event) is ToolCallDelta:
            if len(event.arguments_delta) > chars:
                break
        elif type(event) is ReasoningDelta:
            if _reasoning_chars(event) > chars:
                break
        elif type(event) is ToolCallEnd and _call_chars(event.call) > chars:
            break
    else:
        return events
    return [piece for event in events for piece in _pieces(event, bound)]


def _reasoning_chars(delta: ReasoningDelta) -> int:
    return len(delta.text) + len(delta.signature) + len(delta.id)


def _call_chars(call: ToolCall) -> int:
    return len(call.id) + len(call.name) + len(call.arguments_json)


def _pieces(event: GatewayEvent, bound: int) -> list[GatewayEvent]:
    if isinstance(event, TextDeltaWithLogprobs):
        return _scored_pieces(event, bound)
    if isinstance(event, TextDelta):
        return [TextDelta(text) for text in chunks(event.text, bound)]
    if isinstance(event, ToolCallDelta):
        return [ToolCallDelta(event.index, text) for text in chunks(event.arguments_delta, bound)]
    if isinstance(event, ReasoningDelta):
        return _reasoning_pieces(event, bound)
    if isinstance(event, ToolCallEnd) and _call_bytes(event.call) + END_ROOM > _send_limit(bound):
        call = event.call  # its arguments came whole in the deltas before it
        return [ToolCallEnd(event.index, ToolCall(call.id, call.name, "", call.incomplete))]
    return [event]


def _call_bytes(call: ToolCall) -> int:
    return _utf8_size(call.id) + _utf8_size(call.name) + _utf8_size(call.arguments_json)


def _send_limit(bound: int) -> int:
    """The send limit that `bound` is `delta_bytes` of (at most it, for an odd limit under 2 KiB): a
    tool call's end is kept whole as long as it fits the limit itself, as it always was."""
    return bound + FIELD_ROOM if bound >= FIELD_ROOM else 2 * bound


def scored_bytes(delta: TextDeltaWithLogprobs) -> int:
    """At least the bytes of `delta`'s text and entries in its message (without the message's own
    few bytes of tags and lengths, which FIELD_ROOM holds). Counted without encoding (a token's
    text as 4 bytes a character): this runs for every delta with log-probabilities."""
    size = len(delta.text) * UTF8_MAX
    for entry in delta.logprobs:
        size += _entry_bytes(entry)
    return size


def _entry_bytes(entry: TokenLogprob) -> int:
    """At least an entry's bytes, its alternatives' included."""
    tokens = entry.top_logprobs
    chars = len(entry.token)
    raw = 0 if entry.utf8 is None else len(entry.utf8)
    for top in tokens:
        chars += len(top.token)
        if top.utf8 is not None:
            raw += len(top.utf8)
    return (len(tokens) + 1) * ENTRY_ROOM + chars * UTF8_MAX + raw


def _scored_pieces(delta: TextDeltaWithLogprobs, bound: int) -> list[GatewayEvent]:
    """The entries in order, in groups of at most half of `bound` each (one entry alone if it is
    larger), each group on a piece with the text its tokens spell; the text left over (tokens that
    do not spell it, a character split across tokens) with the last group. A group's text longer
    than the rest of the bound goes ahead of it in plain pieces."""
    groups: list[list[TokenLogprob]] = [[]]
    sizes = [0]
    for entry in delta.logprobs:
        size = _entry_bytes(entry)
        if groups[-1] and sizes[-1] + size > bound // 2:
            groups.append([])
            sizes.append(0)
        groups[-1].append(entry)
        sizes[-1] += size
    text = delta.text
    cursor = 0
    pieces: list[GatewayEvent] = []
    for i, (group, size) in enumerate(zip(groups, sizes, strict=True)):
        end = len(text) if i == len(groups) - 1 else _spelled(text, cursor, group)
        room = bound - size
        # An entry alone over the bound: its text all in plain pieces before it (it cannot fit).
        texts = chunks(text[cursor:end], room) if room >= UTF8_MAX else [*chunks(text[cursor:end], bound), ""]
        cursor = end
        pieces.extend(TextDelta(part) for part in texts[:-1])
        pieces.append(TextDeltaWithLogprobs(texts[-1], tuple(group)))
    return pieces


def _spelled(text: str, cursor: int, group: list[TokenLogprob]) -> int:
    """Where the text `group`'s tokens spell from `cursor` ends, as far as they spell it."""
    for entry in group:
        if not text.startswith(entry.token, cursor):
            break
        cursor += len(entry.token)
    return cursor


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
