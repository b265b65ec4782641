"""The operator's two small HTTP servers: health probes (``/healthz``, ``/readyz``) and ``/metrics``.

Why not Starlette and uvicorn, as kray's web pages use: these endpoints answer three fixed GETs for
the kubelet and Prometheus, and uvicorn's server takes over the process's signal handlers, which the
operator needs for its own SIGTERM drain. A bounded asyncio responder is all they need: the request
head is read with a size cap and a timeout, every answer closes the connection.

Answers follow controller-runtime's: ``/healthz`` and ``/readyz`` say ``ok`` (200) or list the
failing checks as ``[-]name failed`` (500); ``/metrics`` is Prometheus' text format.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import structlog

from kray.operator.config import BindAddress

log = structlog.get_logger(__name__)

MAX_HEAD_BYTES = 8192
READ_TIMEOUT = 5.0

Check = Callable[[], bool]


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


Route = Callable[[], Response]
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error"}


def checks_route(checks: Mapping[str, Check]) -> Route:
    """controller-runtime's healthz handler: 200 ``ok`` when every check passes, else 500 naming them."""

    def route() -> Response:
        failed = [name for name, check in checks.items() if not _passes(check)]
        if not failed:
            return Response(200, b"ok")
        lines = [f"[{'-' if name in failed else '+'}]{name} {'failed' if name in failed else 'ok'}" for name in checks]
        return Response(500, ("\n".join(lines) + "\nhealthz check failed\n").encode())

    return route


def _passes(check: Check) -> bool:
    try:
        return bool(check())
    except Exception:
        return False


class HttpServer:
    """Serves ``routes`` (path → handler) on ``address`` until :meth:`close`."""

    def __init__(self, *, address: BindAddress, routes: Mapping[str, Route]) -> None:
        self.address = address
        self._routes = dict(routes)
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The bound port (useful with port 0 → an ephemeral one is never used: 0 disables)."""
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.address.host, self.address.port)
        log.info("http.listening", address=str(self.address), paths=sorted(self._routes))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), timeout=5)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=READ_TIMEOUT)
            response = self._answer(head)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            writer.close()
            return
        reason = _REASONS.get(response.status, "")
        header = (
            f"HTTP/1.1 {response.status} {reason}\r\nContent-Type: {response.content_type}\r\n"
            f"Content-Length: {len(response.body)}\r\nConnection: close\r\n\r\n"
        )
        with contextlib.suppress(ConnectionError):
            writer.write(header.encode() + response.body)
            await writer.drain()
        writer.close()

    def _answer(self, head: bytes) -> Response:
        if len(head) > MAX_HEAD_BYTES:
            return Response(400, b"request too large")
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        if len(parts) != 3:
            return Response(400, b"bad request line")
        method, target, _ = parts
        route = self._routes.get(target.split("?", 1)[0])
        if route is None:
            return Response(404, b"404 page not found\n")
        if method not in {"GET", "HEAD"}:
            return Response(405, b"method not allowed\n")
        return route()
