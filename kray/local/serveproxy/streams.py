"""Both ends of a proxied exchange as asyncio streams, and bodies relayed between them as they arrive.

Why: every read is bounded (a peer that stops sending frees its connection after ``timeout``, see
:class:`Watchdog`) and every
failure says which end failed -- the proxy answers 502 for an upstream that vanished before its response
head, but only closes quietly for a client that went away. Bodies are never buffered whole: a large or
streaming body (Serve's streaming responses, uploads) moves in pieces of at most :data:`PIECE` bytes, with
the writer's flow control (``drain``) holding the reader back.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from dataclasses import dataclass

from kray.local.serveproxy.http1 import MAX_HEAD, BadMessage, Framing, is_field_line, parse_chunk_size

PIECE = 64 * 1024
_CHUNK_LINE = 4096  # a chunk-size line, extensions included, or a trailer field


class PeerGone(Exception):
    """``side`` closed, reset, timed out or broke framing in the middle of an exchange."""

    def __init__(self, side: str, detail: str, *, timed_out: bool = False) -> None:
        super().__init__(f"{side}: {detail}")
        self.side = side
        self.detail = detail
        self.timed_out = timed_out


class Watchdog:
    """Aborts a peer whose pending read has waited longer than its ``timeout``, checked by :meth:`check`
    (the proxy calls it every fraction of a second: a read times out between ``timeout`` and ``timeout``
    plus that period). Why not ``asyncio.timeout`` around each read: its scheduling and cancellation cost
    about a quarter of the proxy's own work per request, for a limit that almost never fires."""

    def __init__(self) -> None:
        self._peers: weakref.WeakSet[Peer] = weakref.WeakSet()

    def watch(self, peer: Peer) -> Peer:
        self._peers.add(peer)
        return peer

    def check(self) -> None:
        now = time.monotonic()
        for peer in list(self._peers):
            if peer.since and now - peer.since > peer.timeout and not peer.expired:
                peer.expired = True
                peer.abort()  # the pending read ends at once (EOF), and reports the timeout


@dataclass(slots=True, eq=False, weakref_slot=True)
class Peer:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    side: str  # "client" or "upstream"
    timeout: float  # longest wait for any one read (enforced by a Watchdog)
    since: float = 0.0  # when the pending read began (time.monotonic()); 0 when none is pending
    expired: bool = False  # the watchdog aborted the connection

    def _gone(self, detail: str) -> PeerGone:
        if self.expired:
            return PeerGone(self.side, f"sent nothing for {self.timeout:g}s", timed_out=True)
        return PeerGone(self.side, detail)

    async def read_head(self) -> bytes | None:
        """The next message head, CRLFCRLF included; None when the peer closed cleanly before a first byte."""
        self.since = time.monotonic()
        try:
            return await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as e:
            if not e.partial.strip(b"\r\n") and not self.expired:
                return None
            raise self._gone("closed in the middle of a head") from None
        except asyncio.LimitOverrunError:
            raise BadMessage(f"head longer than {MAX_HEAD} bytes", status=431) from None
        except OSError as e:
            raise self._gone(f"read failed: {e}") from None
        finally:
            self.since = 0.0

    async def read(self, n: int) -> bytes:
        """Up to ``n`` bytes; b"" at a clean end of stream."""
        self.since = time.monotonic()
        try:
            data = await self.reader.read(n)
        except OSError as e:
            raise self._gone(f"read failed: {e}") from None
        finally:
            self.since = 0.0
        if not data and self.expired:
            raise self._gone("")
        return data

    async def read_exactly(self, n: int) -> bytes:
        self.since = time.monotonic()
        try:
            return await self.reader.readexactly(n)
        except asyncio.IncompleteReadError as e:
            raise self._gone(f"closed with {n - len(e.partial)} body bytes still due") from None
        except OSError as e:
            raise self._gone(f"read failed: {e}") from None
        finally:
            self.since = 0.0

    async def read_line(self) -> bytes:
        self.since = time.monotonic()
        try:
            line = await self.reader.readuntil(b"\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            raise self._gone("closed or overran in a chunked body") from None
        except OSError as e:
            raise self._gone(f"read failed: {e}") from None
        finally:
            self.since = 0.0
        if len(line) > _CHUNK_LINE:
            raise PeerGone(self.side, "chunk line too long")
        return line

    def write(self, data: bytes) -> None:
        if self.writer.is_closing():
            raise PeerGone(self.side, "connection closed")
        self.writer.write(data)

    async def drain(self) -> None:
        try:
            await self.writer.drain()
        except OSError as e:
            raise PeerGone(self.side, f"write failed: {e}") from None

    def abort(self) -> None:
        transport = self.writer.transport
        if not transport.is_closing():
            transport.abort()


async def relay_length(src: Peer, dst: Peer, n: int) -> None:
    while n > 0:
        data = await src.read(min(n, PIECE))
        if not data:
            raise PeerGone(src.side, f"closed with {n} body bytes still due")
        dst.write(data)
        n -= len(data)
        await dst.drain()


async def relay_chunked(src: Peer, dst: Peer) -> None:
    """Chunk lines, data and trailers as received, up to and including the final empty line."""
    while True:
        line = await src.read_line()
        try:
            size = parse_chunk_size(line)
        except BadMessage as e:
            raise PeerGone(src.side, e.reason) from None
        dst.write(line)
        if size == 0:
            break
        await relay_length(src, dst, size)
        if await src.read_line() != b"\r\n":
            raise PeerGone(src.side, "chunk data not followed by CRLF")
        dst.write(b"\r\n")
    while (trailer := await src.read_line()) != b"\r\n":
        if not is_field_line(trailer[:-2]):
            raise PeerGone(src.side, "malformed trailer field")
        dst.write(trailer)
    dst.write(b"\r\n")
    await dst.drain()


async def relay_until_close(src: Peer, dst: Peer) -> None:
    while data := await src.read(PIECE):
        dst.write(data)
        await dst.drain()


async def relay_body(src: Peer, dst: Peer, framing: Framing, length: int) -> None:
    if framing is Framing.LENGTH:
        await relay_length(src, dst, length)
    elif framing is Framing.CHUNKED:
        await relay_chunked(src, dst)
    elif framing is Framing.UNTIL_CLOSE:
        await relay_until_close(src, dst)
