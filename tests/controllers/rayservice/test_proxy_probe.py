"""The Serve proxy health probe (``CheckProxyActorHealth``) against a loopback server, and what it costs.

Why: the probe runs in the local server's event loop, which also serves every RayService's serve address. A
probe that loaded the CA bundle into a new TLS context each time (httpx's default) blocked that loop for tens
to hundreds of ms per probe under load: kray's serve address p50 went from ~11 ms to ~230 ms at 100
requests/s (bench/serve_proxy_bench.py --serve). The probe's URLs are plain ``http://``; it must load no CA
bundle once kray's shared context exists.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator

import pytest

from kray._tls import trusted_context
from kray.controllers.rayservice.reconcile import probe_proxy


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    healthy = head.startswith(b"GET /-/healthz ")
    status, body = (b"200 OK", b"success") if healthy else (b"503 Service Unavailable", b"no")
    writer.write(b"HTTP/1.1 %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (status, len(body), body))
    await writer.drain()
    writer.close()


@pytest.fixture
async def proxy() -> AsyncIterator[str]:
    server = await asyncio.start_server(_answer, "127.0.0.1", 0)
    async with server:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def test_healthy_proxy_answers_200_and_a_closed_port_is_unhealthy(proxy: str) -> None:
    assert await probe_proxy(proxy) is True
    closed = await asyncio.start_server(_answer, "127.0.0.1", 0)
    port = closed.sockets[0].getsockname()[1]
    closed.close()
    await closed.wait_closed()
    assert await probe_proxy(f"127.0.0.1:{port}") is False


async def test_probes_load_no_ca_bundle(proxy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    trusted_context(trust_env=False)  # kray's one context, built once per process
    loads: list[object] = []
    original = ssl.SSLContext.load_verify_locations

    def counting(self: ssl.SSLContext, *args: object, **kwargs: object) -> None:
        loads.append(args or kwargs)
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counting)
    for _ in range(5):
        assert await probe_proxy(proxy) is True
    assert loads == [], f"{len(loads)} CA bundle loads for 5 probes"
