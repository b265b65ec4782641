"""HTTP/1.1 message heads for the serve proxy, parsed by hand, and what the proxy forwards of them.

Why by hand: the proxy parses one request head and one response head per request on its hot path and
relays bodies byte for byte; h11 (installed only as httpcore2's dependency, not ours) builds an event
object per chunk and costs more than the whole relay. The parser is strict exactly where laxness lets two
parsers disagree about where a message ends -- request smuggling (RFC 9112 §6.3, §11.2): a request with
both Content-Length and Transfer-Encoding, differing Content-Lengths, a Transfer-Encoding not ending in
``chunked``, folded or malformed header lines, or control characters in a value is refused with 400.

Hop-by-hop fields (RFC 9110 §7.6.1: ``Connection``, the fields it names, ``Keep-Alive``,
``Proxy-Connection``, ``TE``, ``Upgrade``) stay on their hop; ``Transfer-Encoding`` is kept because chunked
bodies are relayed as they are, chunk lines and trailers included.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from http import HTTPStatus

MAX_HEAD = 64 * 1024
"""Longest request or response head (request/status line and fields), as most servers allow."""

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([^\x00-\x20\x7f]+) HTTP/1\.([01])")
_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([1-5][0-9][0-9])(?: [^\x00-\x08\x0a-\x1f\x7f]*)?")
_FIELD = re.compile(rb"(" + _TOKEN + rb"):[ \t]*([^\x00-\x08\x0a-\x1f\x7f]*?)[ \t]*")
_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"upgrade"})
_NO_BODY_STATUS = frozenset({204, 304})


class Framing(enum.Enum):
    """How a message's body ends (RFC 9112 §6.3)."""

    NONE = "none"
    LENGTH = "length"
    CHUNKED = "chunked"
    UNTIL_CLOSE = "until-close"


class BadMessage(Exception):
    """A head the proxy will not forward: answered with ``status`` (requests) or 502 (responses)."""

    def __init__(self, reason: str, *, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True, slots=True)
class Request:
    method: bytes
    target: bytes
    minor: int  # HTTP/1.<minor>
    fields: tuple[bytes, ...]  # header lines to forward as received (hop-by-hop and X-Forwarded-For left out)
    forwarded_for: bytes  # the X-Forwarded-For the client sent, joined; b"" when none
    framing: Framing  # NONE, LENGTH or CHUNKED: a request body never ends with the connection
    length: int
    keep_alive: bool  # the client may send another request on this connection
    expects_continue: bool

    def upstream_head(self, client_ip: str) -> bytes:
        """The head sent upstream: same request line and fields, hop-by-hop removed, the client appended
        to X-Forwarded-For (the convention nginx's ``$proxy_add_x_forwarded_for`` follows)."""
        chain = self.forwarded_for + b", " + client_ip.encode() if self.forwarded_for else client_ip.encode()
        start = b"%s %s HTTP/1.%d" % (self.method, self.target, self.minor)
        return b"\r\n".join((start, *self.fields, b"X-Forwarded-For: " + chain, b"", b""))


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    minor: int
    start: bytes  # the status line as received
    fields: tuple[bytes, ...]  # hop-by-hop left out
    framing: Framing
    length: int
    keep_alive: bool  # the upstream connection may carry another request after this response

    def client_head(self, *, close: bool) -> bytes:
        """The head sent to the client; ``Connection: close`` when the proxy ends the connection after it."""
        tail = (b"Connection: close", b"", b"") if close else (b"", b"")
        return b"\r\n".join((self.start, *self.fields, *tail))


def _split_head(head: bytes) -> tuple[bytes, list[bytes]]:
    # The head ends with CRLFCRLF (the reader's delimiter); RFC 9112 §2.2 lets a server ignore CRLFs before
    # a request line. A bare CR or LF left in a line is refused by the line patterns ("\r", "\n" excluded).
    lines = head.lstrip(b"\r\n").split(b"\r\n")
    if len(lines) < 3 or lines[-1] or lines[-2]:
        raise BadMessage("incomplete head")
    return lines[0], lines[1:-2]


def _scan(lines: list[bytes]) -> tuple[dict[bytes, list[bytes]], list[tuple[bytes, bytes]]]:
    """Fields by lowercased name (only those the proxy reads) and every (name, line) pair."""
    wanted: dict[bytes, list[bytes]] = {}
    pairs: list[tuple[bytes, bytes]] = []
    for line in lines:
        match = _FIELD.fullmatch(line)
        if match is None:
            raise BadMessage("malformed header line (or an obsolete folded one)")
        name = match[1].lower()
        pairs.append((name, line))
        if name in _READ:
            wanted.setdefault(name, []).append(match[2])
    return wanted, pairs


_READ = frozenset({b"connection", b"content-length", b"transfer-encoding", b"x-forwarded-for", b"expect"})


def _tokens(values: list[bytes]) -> set[bytes]:
    return {t.strip().lower() for v in values for t in v.split(b",") if t.strip()}


def _content_length(values: list[bytes]) -> int:
    lengths = {v.strip() for value in values for v in value.split(b",")}
    if len(lengths) != 1:
        raise BadMessage("differing Content-Length values")
    (text,) = lengths
    if not text.isdigit() or len(text) > 18:
        raise BadMessage("Content-Length is not a number")
    return int(text)


def _forwarded(
    pairs: list[tuple[bytes, bytes]],
    connection: set[bytes],
    *,
    drop: frozenset[bytes],
) -> tuple[bytes, ...]:
    gone = _HOP_BY_HOP | connection | drop
    return tuple(line for name, line in pairs if name not in gone)


def parse_request(head: bytes) -> Request:
    start, lines = _split_head(head)
    match = _REQUEST_LINE.fullmatch(start)
    if match is None:
        raise BadMessage("malformed request line")
    method, target, minor = match[1], match[2], int(match[3])
    if method == b"CONNECT":
        raise BadMessage("CONNECT is not proxied", status=405)
    wanted, pairs = _scan(lines)
    connection = _tokens(wanted.get(b"connection", []))
    te = wanted.get(b"transfer-encoding")
    cl = wanted.get(b"content-length")
    if te is not None and cl is not None:
        raise BadMessage("both Transfer-Encoding and Content-Length")
    if te is not None:
        codings = [c.strip().lower() for v in te for c in v.split(b",")]
        if minor == 0 or codings[-1] != b"chunked" or codings.count(b"chunked") != 1:
            raise BadMessage("Transfer-Encoding must end with chunked, once, on HTTP/1.1", status=400)
        framing, length = Framing.CHUNKED, 0
    elif cl is not None:
        length = _content_length(cl)
        framing = Framing.LENGTH if length else Framing.NONE
    else:
        framing, length = Framing.NONE, 0
    keep_alive = b"close" not in connection and (minor == 1 or b"keep-alive" in connection)
    return Request(
        method=method,
        target=target,
        minor=minor,
        fields=_forwarded(pairs, connection, drop=frozenset({b"x-forwarded-for"})),
        forwarded_for=b", ".join(wanted.get(b"x-forwarded-for", [])),
        framing=framing,
        length=length,
        keep_alive=keep_alive,
        expects_continue=minor == 1 and b"100-continue" in _tokens(wanted.get(b"expect", [])),
    )


def parse_response(head: bytes, *, method: bytes) -> Response:
    """A response head to ``method``; raises :class:`BadMessage` (the proxy answers 502)."""
    start, lines = _split_head(head)
    match = _STATUS_LINE.fullmatch(start)
    if match is None:
        raise BadMessage("malformed status line", status=502)
    minor, status = int(match[1]), int(match[2])
    try:
        wanted, pairs = _scan(lines)
    except BadMessage as e:
        raise BadMessage(e.reason, status=502) from None
    connection = _tokens(wanted.get(b"connection", []))
    te = wanted.get(b"transfer-encoding")
    cl = wanted.get(b"content-length")
    framing, length = Framing.UNTIL_CLOSE, 0
    if method == b"HEAD" or status < 200 or status in _NO_BODY_STATUS:
        framing = Framing.NONE
    elif te is not None:
        codings = [c.strip().lower() for v in te for c in v.split(b",")]
        if codings[-1] == b"chunked":
            framing = Framing.CHUNKED
    elif cl is not None:
        try:
            length = _content_length(cl)
        except BadMessage as e:
            raise BadMessage(e.reason, status=502) from None
        framing = Framing.LENGTH if length else Framing.NONE
    keep_alive = (
        framing is not Framing.UNTIL_CLOSE
        and b"close" not in connection
        and (minor == 1 or b"keep-alive" in connection)
    )
    # With Transfer-Encoding the body is framed by it; a Content-Length beside it is not forwarded.
    fields = _forwarded(pairs, connection, drop=frozenset({b"content-length"}) if te is not None else frozenset())
    return Response(
        status=status, minor=minor, start=start, fields=fields, framing=framing, length=length, keep_alive=keep_alive
    )


def plain_response(status: int, text: str, *, close: bool) -> bytes:
    """A short ``text/plain`` response the proxy answers itself (4xx/5xx)."""
    body = text.encode()
    head = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(body)}",
        *(["Connection: close"] if close else []),
        "",
        "",
    ]
    return "\r\n".join(head).encode() + body


def parse_chunk_size(line: bytes) -> int:
    """The size on a chunk line (``1a;ext=v\\r\\n``); raises :class:`BadMessage` on anything else."""
    text = line[:-2].split(b";", 1)[0].strip(b" \t")
    if not text or len(text) > 15 or text.strip(b"0123456789abcdefABCDEF"):
        raise BadMessage("malformed chunk size line")
    return int(text, 16)


def is_field_line(line: bytes) -> bool:
    return _FIELD.fullmatch(line) is not None
