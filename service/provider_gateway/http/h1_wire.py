"""HTTP/1.1 on the wire, without I/O: a request head out, a response (head, then framed body) in.

Strict and bounded as RFC 9112 asks of a recipient that must not be fooled or flooded: a head past
64 KiB or 100 fields, an obs-fold, Transfer-Encoding with Content-Length, differing Content-Lengths,
a transfer coding other than chunked, a chunk-size that is not 1-16 hex digits, a chunk whose data
does not end in CRLF: each is an `httpx.RemoteProtocolError` at once (http/client.py maps it), never
a guess and never a wait for bytes that cannot make sense. The I/O is in http/h1.py.
"""

from __future__ import annotations

import http
import re

import httpx
from multidict import CIMultiDict, CIMultiDictProxy

MAX_HEAD_BYTES = 64 * 1024  # a response head (status line and fields), and the trailers likewise
MAX_FIELDS = 100
MAX_INTERIM = 10  # 1xx responses skipped before the final one
MAX_CHUNK_LINE = 1024  # a chunk-size line with its extensions
_CHUNK_LINE_SEARCH = MAX_CHUNK_LINE + 2  # where its CRLF may be
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: [^\x00-\x08\x0a-\x1f\x7f]*)?")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?")
_HEX = b"0123456789abcdefABCDEF"
# The chunk-size lines servers write for chunks up to 4 KiB (lowercase hex, no leading zero, no
# extension) and their sizes: `_chunked` looks a line up here before it parses one.
_SMALL_SIZES = {b"%x" % size: size for size in range(1, 4096 + 1)}
_CONTENT_LENGTH = re.compile(r"[0-9]{1,18}")
_FORBIDDEN_IN_HEADER = re.compile(r"[\r\n\x00]")
_STR_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Status lines as servers write them, read without a regular expression (`_common_head`); any
# other line is read by `_STATUS_LINE`.
_COMMON_STATUS_LINES = {
    line: (minor, int(status))
    for status in http.HTTPStatus
    for minor in (0, 1)
    for line in (
        f"HTTP/1.{minor} {status.value} {status.phrase}",
        f"HTTP/1.{minor} {status.value} {status.phrase.upper()}",
        f"HTTP/1.{minor} {status.value}",
    )
}
# Field names every upstream sends, looked up rather than matched as tokens (`_common_head`),
# as servers spell them and in lower case (HTTP/2 style, which some proxies keep).
_COMMON_NAMES = frozenset(
    spelling
    for name in (
        "Access-Control-Allow-Origin",
        "Age",
        "Alt-Svc",
        "Cache-Control",
        "CF-Cache-Status",
        "CF-RAY",
        "Connection",
        "Content-Encoding",
        "Content-Length",
        "Content-Type",
        "Date",
        "ETag",
        "Expires",
        "Keep-Alive",
        "Last-Modified",
        "Location",
        "Retry-After",
        "Server",
        "Set-Cookie",
        "Strict-Transport-Security",
        "Transfer-Encoding",
        "Vary",
        "Via",
        "X-Content-Type-Options",
        "X-Request-ID",
        "request-id",
        "openai-organization",
        "openai-processing-ms",
        "openai-version",
        "x-ratelimit-limit-requests",
        "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-requests",
        "x-ratelimit-reset-tokens",
        "anthropic-organization-id",
    )
    for spelling in (name, name.lower())
)
# Set by the transport from the request and its URL: a caller's value could contradict the framing.
_TRANSPORT_OWNED = frozenset(("host", "content-length", "transfer-encoding"))

CR, LF = 13, 10
HEAD, CHUNK_SIZE, CHUNK_DATA, CHUNK_END, TRAILERS, LENGTH, UNTIL_CLOSE, DONE = range(8)


MAX_CHECKED_HEADERS = 256  # (name, value) pairs an origin remembers as checked


class UnsendableRequest(ValueError):
    """A request line or header that would end the request early (a second request or header
    smuggled in): refused before anything is sent."""


def encode_request(
    method: str,
    target: str,
    host: str,
    headers: dict[str, str],
    body: bytes | None,
    checked: set[tuple[str, str]] | None = None,
) -> bytes:
    """The request head (and body): origin-form `target`, Host (the caller's, if it gives one, as
    aiohttp sends it), the given headers, Content-Length. A method or header name that is not a
    token, or a target or value with CR, LF or NUL (a second request or header smuggled in), is a
    UnsendableRequest before anything is sent; the message quotes no value (it may hold a key).

    `checked` holds the (name, value) pairs that passed those checks before, kept by the caller
    across requests: an origin sends the same headers (its key, the content type) on every
    request, and checking them again was most of this function's cost. Pairs that pass are added
    to it; it is emptied when it holds MAX_CHECKED_HEADERS (values that change per request)."""
    if not _STR_TOKEN.fullmatch(method) or not target.startswith("/") or _FORBIDDEN_IN_HEADER.search(target):
        raise UnsendableRequest(f"cannot send a {method[:16]!r} request: not a valid request line")
    lines = [f"{method} {target} HTTP/1.1\r\n", f"Host: {host}\r\n"]
    for name, value in headers.items():
        if checked is None or (name, value) not in checked:
            if not _STR_TOKEN.fullmatch(name) or _FORBIDDEN_IN_HEADER.search(value):
                raise UnsendableRequest(
                    f"cannot send header {name[:64]!r}: not a token, or a value with CR, LF or NUL"
                )
            if checked is not None:
                if len(checked) >= MAX_CHECKED_HEADERS:
                    checked.clear()
                checked.add((name, value))
        if (lowered := name.lower()) == "host":
            lines[1] = f"Host: {value}\r\n"
        elif lowered not in _TRANSPORT_OWNED:
            lines.append(f"{name}: {value}\r\n")
    if body is not None:
        lines.append(f"Content-Length: {len(body)}\r\n")
    elif method in ("POST", "PUT", "PATCH"):
        lines.append("Content-Length: 0\r\n")
    lines.append("\r\n")
    head = "".join(lines).encode("utf-8")
    return head + body if body else head


def malformed(message: str) -> httpx.RemoteProtocolError:
    return httpx.RemoteProtocolError(f"malformed response from the upstream: {message}")


class ResponseParser:
    """One response, fed the bytes as they arrive: `head` (status, headers) once complete, the body's
    bytes (de-chunked, still content-coded) appended to `body`, `state == DONE` at its end.
    `reusable` says whether the connection may carry another request afterwards."""

    __slots__ = (
        "_buffer",
        "_interim",
        "_left",
        "_no_body",
        "_pending",
        "body",
        "head",
        "reusable",
        "state",
        "status",
    )

    def __init__(self, no_body: bool = False) -> None:
        self._no_body = no_body  # a HEAD request: the answer's framing fields describe no body here
        self._pending = bytearray()  # a head not yet whole
        self._buffer = b""  # a chunk-size line not yet whole, or the CR of a chunk's CRLF
        self._interim = 0
        self._left = 0  # bytes still due: of the Content-Length body, of the chunk, of the head/trailers
        self.state = HEAD
        self.status = 0
        self.head: CIMultiDictProxy[str] | None = None
        self.body: list[bytes] = []
        self.reusable = True

    def feed(self, data: bytes) -> None:
        if self.state == HEAD:
            data = self._head(data)
        elif self._buffer:
            data = self._buffer + data
            self._buffer = b""
        if not data:
            return
        state = self.state
        if state < LENGTH:  # a chunked body (CHUNK_SIZE to TRAILERS): nearly every read of a stream
            data = self._chunked(data, state)
        elif state == LENGTH:
            if len(data) < self._left:
                self._left -= len(data)
                self.body.append(data)
                return
            self.body.append(data[: self._left] if len(data) > self._left else data)
            data = data[self._left :]
            self._left = 0
            self.state = DONE
        elif state == UNTIL_CLOSE:
            self.body.append(data)
            return
        if data and self.state == DONE:
            self.reusable = False  # bytes past the end of the response: nothing to trust them with

    def eof(self) -> None:
        """The peer closed the connection: the end of a body framed by the close, else an error."""
        self.reusable = False
        if self.state == UNTIL_CLOSE:
            self.state = DONE
        elif self.state != DONE:
            where = "before the response headers" if self.state == HEAD else "in the middle of the body"
            raise httpx.ReadError(f"the upstream closed the connection {where}")

    def _head(self, data: bytes) -> bytes:
        """Heads (interim ones skipped) from what has arrived; the bytes past the final one."""
        pending = self._pending
        searched = max(len(pending) - 3, 0)  # a head sent a byte at a time is not searched again
        pending += data
        while True:
            end = pending.find(b"\r\n\r\n", searched)
            if end < 0 or end > MAX_HEAD_BYTES:
                if len(pending) > MAX_HEAD_BYTES:
                    raise malformed(f"a response head over {MAX_HEAD_BYTES} bytes")
                if pending.find(b"\n\n", searched) >= 0:  # lines ended by LF alone: no CRLF CRLF will come
                    raise malformed("a response head whose lines end in LF, not CRLF")
                return b""
            minor, status, headers = _parse_head(bytes(pending[:end]))
            del pending[: end + 4]
            searched = 0
            if status < 100:  # no such class: skipping it as an interim answer would read past it
                raise malformed(f"status {status:03d}")
            if status >= 200:
                break
            if status == 101:
                raise malformed("101 Switching Protocols to a request that asked for no upgrade")
            self._interim += 1
            if self._interim > MAX_INTERIM:
                raise malformed(f"more than {MAX_INTERIM} interim (1xx) responses")
        data = bytes(pending)
        pending.clear()
        self.status = status
        self.head = CIMultiDictProxy(headers)
        self._frame(status, headers, minor)
        return data

    def _frame(self, status: int, headers: CIMultiDict[str], minor: int) -> None:
        """How the body ends (RFC 9112 section 6.3). The common forms (no Connection field, one
        `chunked`, one plain length) are recognised before the general reading of each field."""
        getall = headers.getall
        connection = getall("connection", None)
        if connection is not None:
            lowered = ",".join(connection).lower()
            if "close" in lowered or (minor == 0 and "keep-alive" not in lowered):
                self.reusable = False  # HTTP/1.0 closes after each response unless it says otherwise
        elif minor == 0:
            self.reusable = False
        encodings = getall("transfer-encoding", None)
        lengths = getall("content-length", None)
        if encodings and lengths:
            raise malformed("both Transfer-Encoding and Content-Length")
        if self._no_body or status in (204, 304):
            self.state = DONE
        elif encodings:
            if encodings != ["chunked"] and [e.strip().lower() for e in ",".join(encodings).split(",")] != [
                "chunked"
            ]:
                raise malformed(f"a transfer coding other than chunked: {', '.join(encodings)!r}")
            self.state = CHUNK_SIZE
        elif lengths:
            if len(lengths) == 1 and _CONTENT_LENGTH.fullmatch(lengths[0]):
                length = lengths[0]
            else:
                values = {v.strip(" \t") for value in lengths for v in value.split(",")}  # OWS only
                if len(values) != 1 or not _CONTENT_LENGTH.fullmatch(length := values.pop()):
                    raise malformed(f"Content-Length {', '.join(lengths)!r}")
            self._left = int(length)
            self.state = LENGTH if self._left else DONE
        else:
            self.state = UNTIL_CLOSE
            self.reusable = False

    def _chunked(self, data: bytes, state: int) -> bytes:
        """Chunks from `data`, as many as it holds; what is left of it past the last chunk. `state`
        is kept in a local (and stored on each change): it is read on every step."""
        at, size = 0, len(data)
        append = self.body.append
        while at < size:
            if state == CHUNK_SIZE:
                end = data.find(b"\r\n", at, at + _CHUNK_LINE_SEARCH)
                if end < 0:
                    return self._keep(data, at, MAX_CHUNK_LINE, "chunk-size line")
                try:
                    chunk = _SMALL_SIZES[data[at:end]]  # the common line, looked up: no parse
                except KeyError:
                    chunk = _chunk_size(data[at:end])
                at = end + 2
                if not chunk:
                    state = self.state = TRAILERS
                    self._left = MAX_HEAD_BYTES  # the trailers' bound
                elif (end := at + chunk) + 2 <= size:  # the whole chunk is here (an event, mostly)
                    if data[end] != CR or data[end + 1] != LF:  # ints: no call, no slice
                        raise malformed("chunk data longer than its chunk-size")
                    append(data[at:end])
                    at = end + 2
                else:
                    state = self.state = CHUNK_DATA
                    self._left = chunk
            elif state == CHUNK_DATA:
                end = at + self._left
                if end > size:
                    append(data[at:] if at else data)
                    self._left = end - size
                    return b""
                append(data[at:end])
                at = end
                state = self.state = CHUNK_END
            elif state == CHUNK_END:
                if size - at < 2:
                    if data[at:] != b"\r":
                        raise malformed("chunk data longer than its chunk-size")
                    self._buffer = b"\r"
                    return b""
                if data[at : at + 2] != b"\r\n":
                    raise malformed("chunk data longer than its chunk-size")
                at += 2
                state = self.state = CHUNK_SIZE
            elif state == TRAILERS:
                end = data.find(b"\r\n", at)
                if end < 0:
                    return self._keep(data, at, self._left, "trailer section")
                self._left -= end - at + 2
                if self._left < 0:
                    raise malformed(f"trailers over {MAX_HEAD_BYTES} bytes")
                if end == at:
                    state = self.state = DONE  # the empty line that ends the trailer section (dropped)
                at = end + 2
            else:  # DONE
                return data[at:]
        return b""

    def _keep(self, data: bytes, at: int, bound: int, what: str) -> bytes:
        if len(data) - at > bound:
            raise malformed(f"a {what} over {bound} bytes")
        self._buffer = data[at:]
        return b""


def _chunk_size(line: bytes) -> int:
    """The size a chunk-size line gives: 1-16 hex digits, then extensions (ignored) or whitespace
    before them."""
    if 0 < len(line) <= 16 and not line.strip(_HEX):  # bare hex digits
        return int(line, 16)
    matched = _CHUNK_SIZE.fullmatch(line)
    if matched is None:
        raise malformed(f"chunk-size {line[:40]!r}")
    return int(matched.group(1), 16)


def _parse_head(head: bytes) -> tuple[int, int, CIMultiDict[str]]:
    """The HTTP minor version, status and fields of a head: the common head's reading, else the
    general one (which says what is wrong)."""
    common = _common_head(head)
    return common if common is not None else _read_head(head)


def _common_head(head: bytes) -> tuple[int, int, CIMultiDict[str]] | None:
    """`_read_head` of a head with a standard status line and field names that are tokens, with
    fewer steps a field: the head decoded once (a name is ASCII, so each value decodes as before),
    a common name looked up rather than tested. None for any other head, valid or not, whose
    reading is left to `_read_head`: this passes no head that it refuses, and reads the same."""
    text = head.decode("utf-8", "surrogateescape")
    lines = text.split("\r\n")
    fields = len(lines) - 1
    if head.count(b"\r") != fields or head.count(b"\n") != fields or 0 in head or fields > MAX_FIELDS:
        return None
    status = _COMMON_STATUS_LINES.get(lines[0])
    if status is None:
        return None
    pairs: list[tuple[str, str]] = []
    append = pairs.append
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or (name not in _COMMON_NAMES and not _STR_TOKEN.fullmatch(name)):
            return None
        append((name, value.strip(" \t")))
    return status[0], status[1], CIMultiDict(pairs)


def _read_head(head: bytes) -> tuple[int, int, CIMultiDict[str]]:
    """The general reading of a head: every check, each failure worded."""
    lines = head.split(b"\r\n")
    # One look at the whole head for a bare CR or LF (each must be half of a CRLF) or a NUL: a
    # check per field cost more than the rest of the parse (`b"\r" in value` is ~0.8 µs here).
    if head.count(b"\r") != len(lines) - 1 or head.count(b"\n") != len(lines) - 1 or 0 in head:
        raise malformed("a bare CR or LF, or a NUL, in the response head")
    status_line = _STATUS_LINE.fullmatch(lines[0])
    if status_line is None:
        raise malformed(f"status line {lines[0][:80]!r}")
    if len(lines) - 1 > MAX_FIELDS:
        raise malformed(f"more than {MAX_FIELDS} header fields")
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        # Letters, digits and hyphens (every common name) are a token: no regex match for them.
        if not colon or not (name.replace(b"-", b"").isalnum() or _TOKEN.fullmatch(name)):
            what = "an obs-fold (a line starting with whitespace)" if line[:1] in b" \t" else "field"
            raise malformed(f"{what} {line[:80]!r}")
        headers.add(name.decode("ascii"), value.strip(b" \t").decode("utf-8", "surrogateescape"))
    return int(status_line.group(1)), int(status_line.group(2)), headers
