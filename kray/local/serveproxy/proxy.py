"""kray's local serve address: one loopback port per RayService, forwarding to its clusters' Serve proxies.

Why: on Kubernetes a RayService's clients use ``<rs>-serve-svc``, whose endpoints KubeRay switches from
the old cluster to the new one on an upgrade. Locally there are no Services; the local server owns one
of these proxies and plays their part: :meth:`ServeProxy.open` gives the RayService a port that stays
the same across upgrades, and :meth:`ServeProxy.route` swaps its route table (weights for an incremental
upgrade, weight 0 to drain). Requests are routed one by one (a keep-alive client is not pinned), an
in-flight request finishes on the backend it started on, and idle pooled connections to a backend that
left the table are closed at once. Every listener binds loopback only.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog

from kray.local.serveproxy.exchange import Route, answer, forward
from kray.local.serveproxy.http1 import MAX_HEAD, BadMessage, parse_request
from kray.local.serveproxy.pool import Pool
from kray.local.serveproxy.routing import Backend, RouteTable, is_loopback
from kray.local.serveproxy.streams import Peer, PeerGone, Watchdog

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 5.0  # a backend's TCP connect
    read: float = 300.0  # longest silence of either end inside an exchange (a slow model may think long)
    # (read and client_idle are enforced a few times a second: a read may wait up to 1 s longer)
    client_idle: float = 75.0  # a keep-alive client silent this long between requests is closed
    pool_idle: float = 4.0  # an idle upstream connection is closed after this (below uvicorn's 5 s)


@dataclass(eq=False, slots=True)
class _Service:
    key: str
    pool: Pool
    table: RouteTable = field(default_factory=RouteTable)
    server: asyncio.Server | None = None
    port: int = 0
    closing: bool = False
    handlers: set[asyncio.Task[None]] = field(default_factory=set)
    waiting: set[asyncio.StreamWriter] = field(default_factory=set)  # client connections between requests


class ServeProxy:
    """HTTP/1.1 reverse proxies on ``host`` (a loopback address), one listening port per RayService key."""

    def __init__(self, host: str = "127.0.0.1", *, timeouts: Timeouts | None = None, rng: random.Random | None = None):
        if not is_loopback(host):
            raise ValueError(f"the serve proxy binds loopback only, not {host!r}")
        self.host = host
        self.timeouts = timeouts or Timeouts()
        self._rng = rng or random.Random()
        self._services: dict[str, _Service] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._watchdog = Watchdog()

    def _service(self, key: str) -> _Service:
        if (svc := self._services.get(key)) is None:
            t = self.timeouts
            pool = Pool(
                connect_timeout=t.connect, read_timeout=t.read, idle_timeout=t.pool_idle, watchdog=self._watchdog
            )
            svc = self._services[key] = _Service(key, pool)
        return svc

    async def open(self, service_key: str, port: int = 0) -> int:
        """Listen for ``service_key`` on ``port`` (0: any free one) and return the port. Opening an open
        service returns its port; asking it for another port is an error."""
        svc = self._service(service_key)
        if svc.server is not None:
            if port not in (0, svc.port):
                raise ValueError(f"RayService {service_key} already listens on port {svc.port}, not {port}")
            return svc.port
        server = await asyncio.start_server(
            lambda r, w: self._serve(svc, r, w), self.host, port, limit=MAX_HEAD, reuse_address=True
        )
        svc.server, svc.port = server, int(server.sockets[0].getsockname()[1])
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep(), name="serve-proxy-sweeper")
        log.info("serve address open", service=service_key, address=f"{self.host}:{svc.port}")
        return svc.port

    def port(self, service_key: str) -> int | None:
        svc = self._services.get(service_key)
        return svc.port if svc is not None and svc.server is not None else None

    def route(self, service_key: str, backends: Sequence[Backend]) -> None:
        """Send ``service_key``'s new requests to ``backends`` by weight, from now on. Requests in flight
        finish where they are; idle connections to backends left without weight are closed."""
        svc = self._service(service_key)
        svc.table = RouteTable.of(backends)
        svc.pool.retain(svc.table.routable)

    def table(self, service_key: str) -> RouteTable:
        svc = self._services.get(service_key)
        return svc.table if svc is not None else RouteTable()

    async def close(self, service_key: str, *, grace: float = 5.0) -> None:
        """Stop serving ``service_key`` and free its port: idle clients are closed at once, requests in
        flight get ``grace`` seconds to finish, then their connections are aborted."""
        svc = self._services.pop(service_key, None)
        if svc is None:
            return
        svc.closing = True
        if svc.server is not None:
            svc.server.close()
        for writer in list(svc.waiting):
            writer.close()
        if svc.handlers:
            _, late = await asyncio.wait(set(svc.handlers), timeout=grace)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        svc.pool.close()
        if svc.server is not None:
            await svc.server.wait_closed()
        log.info("serve address closed", service=service_key)

    async def aclose(self) -> None:
        for key in list(self._services):
            await self.close(key)
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    async def __aenter__(self) -> ServeProxy:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _sweep(self) -> None:
        """Times out reads (the watchdog) and closes long-idle pooled connections, a few times a second."""
        t = self.timeouts
        period = max(0.05, min(1.0, t.read / 4, t.client_idle / 4, t.pool_idle / 2))
        while True:
            await asyncio.sleep(period)
            self._watchdog.check()
            for svc in list(self._services.values()):
                svc.pool.sweep()

    async def _serve(self, svc: _Service, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        svc.handlers.add(task)
        client = self._watchdog.watch(Peer(reader, writer, "client", self.timeouts.client_idle))
        peer = writer.get_extra_info("peername")
        client_ip = str(peer[0]) if peer else "unknown"
        try:
            while not svc.closing:
                client.timeout = self.timeouts.client_idle
                svc.waiting.add(writer)
                try:
                    raw = await client.read_head()
                finally:
                    svc.waiting.discard(writer)
                if raw is None or svc.closing:
                    break
                client.timeout = self.timeouts.read
                try:
                    request = parse_request(raw)
                except BadMessage as e:
                    await answer(client, None, e.status, f"RayService {svc.key}: {e.reason}")
                    break
                route = Route(svc.key, svc.table, svc.pool, self._rng)
                if not await forward(route, client, request, client_ip):
                    break
        except BadMessage as e:  # a head longer than MAX_HEAD
            with contextlib.suppress(PeerGone):
                await answer(client, None, e.status, f"RayService {svc.key}")
        except PeerGone as e:
            log.debug("serve proxy connection ended", service=svc.key, reason=str(e))
        except Exception:  # never a traceback to the client; the connection ends
            log.exception("serve proxy connection failed", service=svc.key)
        finally:
            svc.handlers.discard(task)
            if not writer.is_closing():
                writer.close()
