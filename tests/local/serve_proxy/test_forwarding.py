"""The serve proxy forwards HTTP/1.1 faithfully: methods, bodies (Content-Length and chunked, large, both
ways, streamed as they arrive), headers (hop-by-hop dropped, X-Forwarded-For added), HEAD,
``Expect: 100-continue`` and ``Connection: close``; malformed or ambiguous requests are refused.

Real sockets throughout: a stdlib upstream on port 0 and httpx2 (h11) or raw-socket clients.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from collections.abc import AsyncIterator, Callable

from kray.local.serveproxy import Backend, ServeProxy
from tests.local.serve_proxy.support import Upstream, client


async def _serve(proxy: ServeProxy, upstream: Upstream) -> int:
    port = await proxy.open("default/rs")
    proxy.route("default/rs", [Backend(upstream.address)])
    return port


async def _raw(port: int, data: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    return reader, writer


async def test_methods_bodies_and_headers_reach_the_upstream(
    proxy: ServeProxy, upstreams: Callable[[str], Upstream]
) -> None:
    port = await _serve(proxy, upstreams("v1"))
    async with client(port) as http:
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
            body = f"{method} body".encode() if method in ("POST", "PUT", "PATCH") else b""
            sent = await http.request(method, "/echo?q=1", content=body, headers={"X-Custom": "yes"})
            echo = sent.json()
            assert (sent.status_code, echo["method"], echo["path"]) == (200, method, "/echo?q=1")
            assert echo["body_sha256"] == hashlib.sha256(body).hexdigest()
            headers = dict(echo["headers"])
            assert headers["x-custom"] == "yes"
            assert headers["x-forwarded-for"] == "127.0.0.1"
            assert sent.headers["x-backend"] == "v1"

        hop = await http.get("/echo", headers={"Connection": "keep-alive, X-Hop", "X-Hop": "1", "Keep-Alive": "5"})
        names = [name for name, _ in hop.json()["headers"]]
        assert "x-hop" not in names
        assert "keep-alive" not in names  # hop-by-hop fields stay on the client's hop

        chained = await http.get("/echo", headers={"X-Forwarded-For": "10.1.2.3"})
        assert dict(chained.json()["headers"])["x-forwarded-for"] == "10.1.2.3, 127.0.0.1"

        head = await http.head("/who")
        assert (head.status_code, head.headers["content-length"], head.content) == (200, "2", b"")
        after_head = await http.get("/who")  # the connection still frames correctly after a bodiless HEAD
        assert after_head.text == "v1"


async def test_chunked_and_large_bodies_both_ways(proxy: ServeProxy, upstreams: Callable[[str], Upstream]) -> None:
    port = await _serve(proxy, upstreams("v1"))
    upload = random.Random(1).randbytes(8 * 1024 * 1024 + 17)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(upload), 100_000):
            yield upload[i : i + 100_000]

    async with client(port) as http:
        chunked = await http.post("/echo", content=chunks())  # no length known: Transfer-Encoding: chunked
        assert dict(chunked.json()["headers"])["transfer-encoding"] == "chunked"
        assert chunked.json()["body_sha256"] == hashlib.sha256(upload).hexdigest()

        sized = await http.put("/echo", content=upload)
        assert (sized.json()["body_len"], sized.json()["body_sha256"]) == (
            len(upload),
            hashlib.sha256(upload).hexdigest(),
        )

        big = await http.get("/big?n=9000001&seed=4")
        assert big.content == random.Random(4).randbytes(9000001)


async def test_a_chunked_response_streams_through_as_it_arrives(
    proxy: ServeProxy, upstreams: Callable[[str], Upstream]
) -> None:
    """The upstream sends its second chunk only once the client has the first: a proxy that buffered
    the response would never deliver it (the upstream gives up after 10 s; this test after 5 s)."""
    upstream = upstreams("v1")
    port = await _serve(proxy, upstream)
    async with client(port) as http, http.stream("GET", "/stream?n=3") as response:
        pieces = response.aiter_raw()
        async with asyncio.timeout(5):
            first = await anext(pieces)
        assert first.startswith(b"v1-0;")
        upstream.first_chunk_seen.set()
        rest = b"".join([piece async for piece in pieces])
    assert first + rest == b"v1-0;v1-1;v1-2;"


async def test_trailers_and_chunk_lines_pass_unchanged(proxy: ServeProxy, upstreams: Callable[[str], Upstream]) -> None:
    upstream = upstreams("v1")
    upstream.first_chunk_seen.set()
    port = await _serve(proxy, upstream)
    reader, writer = await _raw(port, b"GET /stream?n=2 HTTP/1.1\r\nHost: x\r\n\r\n")
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
        body = await reader.readuntil(b"0\r\nX-Checksum: done\r\n\r\n")
    writer.close()
    assert b"Transfer-Encoding: chunked" in head
    assert body == b"5\r\nv1-0;\r\n5\r\nv1-1;\r\n0\r\nX-Checksum: done\r\n\r\n"


async def test_expect_100_continue_passes_through(proxy: ServeProxy, upstreams: Callable[[str], Upstream]) -> None:
    """The client holds its body until it sees ``100 Continue``, which only the upstream sends."""
    port = await _serve(proxy, upstreams("v1"))
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    reader, writer = await _raw(port, head)
    async with asyncio.timeout(5):
        interim = await reader.readuntil(b"\r\n\r\n")
        assert interim.startswith(b"HTTP/1.1 100"), interim
        writer.write(b"hello")
        final = await reader.readuntil(b"\r\n\r\n")
        length = int(next(x for x in final.split(b"\r\n") if x.lower().startswith(b"content-length")).split(b":")[1])
        echo = json.loads(await reader.readexactly(length))
    writer.close()
    assert final.startswith(b"HTTP/1.1 200")
    assert echo["body_sha256"] == hashlib.sha256(b"hello").hexdigest()


async def test_connection_close_is_honoured(proxy: ServeProxy, upstreams: Callable[[str], Upstream]) -> None:
    port = await _serve(proxy, upstreams("v1"))
    reader, writer = await _raw(port, b"GET /who HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    async with asyncio.timeout(5):
        answer = await reader.read()  # to EOF: the proxy closes after the response
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200")
    assert b"\r\nConnection: close\r\n" in answer
    assert answer.endswith(b"\r\n\r\nv1")


async def test_a_server_closed_pooled_connection_is_not_reused(
    proxy: ServeProxy, upstreams: Callable[[str], Upstream]
) -> None:
    """``/drop`` closes the upstream connection after answering without ``Connection: close``: the next
    request must go out on a fresh connection, not fail on the dead one."""
    port = await _serve(proxy, upstreams("v1"))
    async with client(port) as http:
        for _ in range(5):
            assert (await http.get("/drop")).text == "v1"
            assert (await http.get("/who")).text == "v1"


async def test_ambiguous_or_malformed_requests_are_refused(
    proxy: ServeProxy, upstreams: Callable[[str], Upstream]
) -> None:
    upstream = upstreams("v1")
    port = await _serve(proxy, upstream)
    smuggle = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    folded = b"GET /who HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\n\r\n"
    differing = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"
    for request in (smuggle, folded, differing, b"GARBAGE\r\n\r\n"):
        reader, writer = await _raw(port, request)
        async with asyncio.timeout(5):
            answer = await reader.read()
        writer.close()
        assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), (request, answer)
        assert b"RayService default/rs" in answer
    assert upstream.requests == 0
