"""The serve proxies on a thread and event loop of their own, apart from the rest of the local server.

Why: in the local server the proxies shared one event loop with the store, the controllers, the informers
and the pod runner, so whatever held that loop (a reconcile, a SQLite write, a status poll's parsing) held
every request in flight with it: issue 10's benchmark measured p99 +280-520 ms against straight to Serve's
proxy, while the same proxy alone added about 1 ms. On its own loop a request waits at most for the
interpreter's switch interval (5 ms by default) when the server's loop runs Python, and not at all while it
waits on I/O.

:class:`ProxyThread` offers :class:`~kray.local.serveproxy.proxy.ServeProxy`'s operations to code on
another loop: the ones that change a proxy (open, route, close) run on the proxy's loop and are awaited
from the caller's; ``port`` and ``table`` read the proxy's current state (plain attribute reads, replaced
whole by the proxy's loop, never mutated in place). The thread starts with the first call and ends with
:meth:`ProxyThread.aclose`; it is a daemon, so a server that dies without closing it leaves nothing.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from kray.local.serveproxy.proxy import ServeProxy, Timeouts
from kray.local.serveproxy.routing import Backend, RouteTable

__all__ = ["ProxyThread"]

T = TypeVar("T")

JOIN_TIMEOUT = 10.0
"""Seconds :meth:`ProxyThread.aclose` waits for the thread once its loop was told to stop."""


class ProxyThread:
    """:class:`ServeProxy` on its own thread; every method is safe to call from any other event loop."""

    def __init__(self, host: str = "127.0.0.1", *, timeouts: Timeouts | None = None) -> None:
        self._proxy = ServeProxy(host, timeouts=timeouts)  # checks the host is loopback, here and now
        self.host = host
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                started = threading.Event()
                thread = threading.Thread(target=self._run, args=(loop, started), name="serve-proxy", daemon=True)
                thread.start()
                started.wait()
                self._loop, self._thread = loop, thread
            return self._loop

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop, started: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(started.set)
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _call(self, work: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, self._running_loop()))

    async def open(self, service_key: str, port: int = 0) -> int:
        return await self._call(self._proxy.open(service_key, port))

    async def route(self, service_key: str, backends: Sequence[Backend]) -> None:
        async def route() -> None:
            self._proxy.route(service_key, backends)

        await self._call(route())

    async def close(self, service_key: str, *, grace: float = 5.0) -> None:
        await self._call(self._proxy.close(service_key, grace=grace))

    def port(self, service_key: str) -> int | None:
        return self._proxy.port(service_key)

    def table(self, service_key: str) -> RouteTable:
        return self._proxy.table(service_key)

    async def aclose(self) -> None:
        """Close every port (requests in flight get their grace), then end the thread."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        try:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._proxy.aclose(), loop))
        finally:
            loop.call_soon_threadsafe(loop.stop)
            await asyncio.to_thread(thread.join, JOIN_TIMEOUT)
