"""Kept-alive connections to one RayService's backends, reused across requests and clients.

Why: a fresh TCP connection per request costs a handshake and, at Serve's proxy, a new uvicorn
connection -- more than the proxy's own work. Invariants: a connection is either lent out (to exactly one
exchange) or idle here, never both; an idle connection is only kept for a backend the route table still
routes to (:meth:`Pool.retain` closes the others the moment the table changes, and a lent one is closed on
return) and for at most ``idle_timeout`` seconds, below uvicorn's 5 s keep-alive so the proxy closes first
and rarely sends a request into a connection the server is closing.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from kray.local.serveproxy.routing import Backend
from kray.local.serveproxy.streams import Peer, Watchdog

MAX_IDLE_PER_BACKEND = 256


class ConnectFailed(Exception):
    """No TCP connection to the backend: refused, unreachable or timed out. Nothing was sent."""


@dataclass(slots=True)
class Upstream:
    peer: Peer
    address: str
    reused: bool = False
    idle_since: float = 0.0


@dataclass(slots=True)
class Pool:
    connect_timeout: float
    read_timeout: float
    idle_timeout: float
    watchdog: Watchdog
    routable: frozenset[str] = frozenset()
    _idle: dict[str, list[Upstream]] = field(default_factory=dict)

    async def acquire(self, backend: Backend, *, fresh: bool = False) -> Upstream:
        """An idle connection to ``backend`` (newest first) or, if none or ``fresh``, a new one; raises
        :class:`ConnectFailed`."""
        idle = None if fresh else self._idle.get(backend.address)
        now = time.monotonic()
        while idle:
            up = idle.pop()
            # A connection the server closed while idle has seen EOF already; one idle too long may be
            # closed by the server at any moment: both are dropped, not risked.
            if up.peer.reader.at_eof() or up.peer.writer.is_closing() or now - up.idle_since > self.idle_timeout:
                up.peer.writer.close()
                continue
            up.reused = True
            return up
        host, port = backend.host_port()
        try:
            async with asyncio.timeout(self.connect_timeout):
                reader, writer = await asyncio.open_connection(host, port, limit=2 * 64 * 1024)
        except TimeoutError:
            raise ConnectFailed(f"connect to {backend.address} timed out after {self.connect_timeout:g}s") from None
        except OSError as e:
            reason = os.strerror(e.errno).lower() if e.errno else str(e)
            raise ConnectFailed(f"connect to {backend.address} failed: {reason}") from None
        return Upstream(self.watchdog.watch(Peer(reader, writer, "upstream", self.read_timeout)), backend.address)

    def release(self, up: Upstream, *, reusable: bool) -> None:
        """Take a lent connection back: kept idle if ``reusable`` and still routed to, else closed."""
        idle = self._idle.setdefault(up.address, [])
        if not reusable or up.address not in self.routable or len(idle) >= MAX_IDLE_PER_BACKEND:
            up.peer.writer.close()
            return
        up.idle_since = time.monotonic()
        idle.append(up)

    def retain(self, routable: Iterable[str]) -> None:
        """From now on only ``routable`` addresses keep idle connections; others' are closed at once."""
        self.routable = frozenset(routable)
        for address in [a for a in self._idle if a not in self.routable]:
            for up in self._idle.pop(address):
                up.peer.writer.close()

    def sweep(self) -> None:
        """Close connections idle longer than ``idle_timeout`` (the oldest are at the front)."""
        deadline = time.monotonic() - self.idle_timeout
        for idle in self._idle.values():
            stale = 0
            while stale < len(idle) and idle[stale].idle_since < deadline:
                idle[stale].peer.writer.close()
                stale += 1
            del idle[:stale]

    def idle_count(self, address: str) -> int:
        return len(self._idle.get(address, ()))

    def close(self) -> None:
        self.retain(())
