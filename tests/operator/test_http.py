"""The probe/metrics responder answers as controller-runtime's does and never hangs on a bad client."""

from __future__ import annotations

import asyncio

from kray.dev.procs import free_port
from kray.operator.config import BindAddress
from kray.operator.http import HttpServer, Response, checks_route


async def _request(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    writer.write_eof()
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    return data


async def test_health_ready_metrics_and_errors() -> None:
    synced = {"value": False}
    server = HttpServer(
        address=BindAddress("127.0.0.1", free_port()),
        routes={
            "/healthz": checks_route({"ping": lambda: True}),
            "/readyz": checks_route({"informers-synced": lambda: synced["value"]}),
            "/metrics": lambda: Response(200, b"x 1\n", "text/plain; version=0.0.4"),
        },
    )
    await server.start()
    try:
        port = server.port
        assert (await _request(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")).endswith(b"\r\n\r\nok")
        not_ready = await _request(port, b"GET /readyz HTTP/1.1\r\n\r\n")
        assert not_ready.startswith(b"HTTP/1.1 500")
        assert b"[-]informers-synced failed" in not_ready
        synced["value"] = True
        assert (await _request(port, b"GET /readyz?verbose HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 200")
        assert (await _request(port, b"GET /metrics HTTP/1.1\r\n\r\n")).endswith(b"x 1\n")
        assert (await _request(port, b"GET /nope HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 404")
        assert (await _request(port, b"POST /healthz HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 405")
        assert (await _request(port, b"garbage\r\n\r\n")).startswith(b"HTTP/1.1 400")
        assert await _request(port, b"GET /healthz HTTP/1.1\r\n") == b""  # incomplete head: closed, no answer
    finally:
        await server.close()
