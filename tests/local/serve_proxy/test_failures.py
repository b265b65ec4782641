"""What a client sees when the proxy cannot forward: 502 naming the RayService when the backend refuses
(after one retry on another backend of the table, if any), 503 with no backend, 504 when the backend is
silent past the read timeout -- short plain text, never a traceback. Closing a service frees its port;
the proxy binds loopback only.
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Callable

import pytest

from kray.local.serveproxy import Backend, ServeProxy, Timeouts
from tests.local.serve_proxy.support import Upstream, client

KEY = "team-a/summarizer"


def _refusing_address() -> str:
    """A loopback port nothing listens on (bound, then closed without listen: connects are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def _plain(body: str) -> None:
    assert "Traceback" not in body
    assert len(body) < 300
    assert body.endswith("\n")


async def test_a_refusing_backend_is_a_502_naming_the_rayservice(proxy: ServeProxy) -> None:
    port = await proxy.open(KEY)
    refusing = _refusing_address()
    proxy.route(KEY, [Backend(refusing)])
    async with client(port) as http:
        answer = await http.get("/who")
        assert answer.status_code == 502
        assert answer.headers["content-type"] == "text/plain; charset=utf-8"
        assert f"RayService {KEY}" in answer.text
        assert f"connect to {refusing} failed: connection refused" in answer.text
        _plain(answer.text)
        assert (await http.get("/who")).status_code == 502  # the connection stays usable after a 502


async def test_a_failed_connect_is_retried_once_on_another_backend(
    proxy: ServeProxy, upstreams: Callable[[str], Upstream]
) -> None:
    """The refusing backend has nearly all the weight: every request is first sent there and must
    still be answered, by the other backend."""
    v2 = upstreams("v2")
    port = await proxy.open(KEY)
    proxy.route(KEY, [Backend(_refusing_address(), 99), Backend(v2.address, 1)])
    async with client(port) as http:
        answers = [(await http.get("/who")) for _ in range(30)]
    assert {(a.status_code, a.text) for a in answers} == {(200, "v2")}


async def test_no_backend_is_a_503(proxy: ServeProxy, upstreams: Callable[[str], Upstream]) -> None:
    v1 = upstreams("v1")
    port = await proxy.open(KEY)
    async with client(port) as http:
        unrouted = await http.get("/who")
        proxy.route(KEY, [Backend(v1.address, 0)])  # drained, nothing else
        drained = await http.post("/who", content=b"body")
    for answer in (unrouted, drained):
        assert answer.status_code == 503
        assert answer.text == f"RayService {KEY}: no backend\n"
    assert v1.requests == 0


async def test_a_silent_backend_is_a_504_after_the_read_timeout(upstreams: Callable[[str], Upstream]) -> None:
    v1 = upstreams("v1")
    async with ServeProxy(timeouts=Timeouts(read=0.5)) as proxy:
        port = await proxy.open(KEY)
        proxy.route(KEY, [Backend(v1.address)])
        async with client(port) as http:
            answer = await http.get("/slow?s=2")
    assert answer.status_code == 504
    assert f"RayService {KEY}" in answer.text
    _plain(answer.text)


async def test_closing_a_service_frees_its_port(proxy: ServeProxy, upstreams: Callable[[str], Upstream]) -> None:
    v1 = upstreams("v1")
    port = await proxy.open(KEY)
    assert await proxy.open(KEY) == port  # opening again is a no-op
    proxy.route(KEY, [Backend(v1.address)])
    async with client(port) as http:
        assert (await http.get("/who")).text == "v1"  # a keep-alive connection stays open
        await asyncio.wait_for(proxy.close(KEY), 5)
    assert proxy.port(KEY) is None
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
    assert await proxy.open(KEY, port) == port  # the same port binds again


async def test_close_lets_a_request_in_flight_finish(proxy: ServeProxy, upstreams: Callable[[str], Upstream]) -> None:
    v1 = upstreams("v1")
    port = await proxy.open(KEY)
    proxy.route(KEY, [Backend(v1.address)])
    async with client(port) as http:
        slow = asyncio.create_task(http.get("/slow?s=0.5"))
        await asyncio.wait_for(asyncio.to_thread(v1.slow_started.wait, 5), 5)
        await asyncio.wait_for(proxy.close(KEY, grace=5), 5)
        answer = await asyncio.wait_for(slow, 5)
    assert (answer.status_code, answer.text) == (200, "v1")


def test_only_loopback_is_served() -> None:
    with pytest.raises(ValueError, match="loopback only"):
        ServeProxy("0.0.0.0")
    ServeProxy("::1")
    ServeProxy("localhost", rng=random.Random(0))
