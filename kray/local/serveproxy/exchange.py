"""One request forwarded to one backend and its response back: the serve proxy's unit of work.

Why its own module: this is where "switch without dropping a request" is decided. The backend is picked
from the route table as it is when the request's head has arrived, and the exchange keeps that backend
to the end, whatever the table becomes meanwhile (in-flight requests finish where they started; the next
request on the same client connection picks again). Failures map to answers a client can act on:
no backend with weight → 503; no connection to the picked backend → one retry on another backend of the
table, then 502; the upstream gone or silent before its response head → 502 / 504, each with a short
plain-text body naming the RayService. After the response head has gone out nothing can be answered any
more, so a broken upstream then aborts the client connection (the client sees a truncated message, not
a complete wrong one).
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

from kray.local.serveproxy.http1 import BadMessage, Framing, Request, Response, parse_response, plain_response
from kray.local.serveproxy.pool import ConnectFailed, Pool, Upstream
from kray.local.serveproxy.routing import Backend, RouteTable
from kray.local.serveproxy.streams import PIECE, Peer, PeerGone, relay_body

# Safe to send twice (RFC 9110 §9.2.2): a request lost in a reused connection the server was closing
# (no byte of a response came back) is sent once more on a fresh one.
_IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})


@dataclass(frozen=True, slots=True)
class Route:
    """What an exchange needs of its RayService: a name for error bodies, the table, the pool, the dice."""

    service: str
    table: RouteTable
    pool: Pool
    rng: random.Random


async def answer(client: Peer, request: Request | None, status: int, text: str) -> bool:
    """The proxy's own response; keeps the connection only when no request body is left unread."""
    keep = request is not None and request.keep_alive and request.framing is Framing.NONE
    client.write(plain_response(status, text + "\n", close=not keep))
    await client.drain()
    return keep


async def _stop(pump: asyncio.Task[None]) -> BaseException | None:
    """Cancel a body pump that has not finished; what it ended with (None: the whole body went upstream)."""
    if not pump.done():
        pump.cancel()
        await asyncio.wait([pump])
    return asyncio.CancelledError() if pump.cancelled() else pump.exception()


async def _connect(route: Route, backend: Backend, *, fresh: bool) -> Upstream:
    try:
        return await route.pool.acquire(backend, fresh=fresh)
    except ConnectFailed as first:
        other = route.table.pick_other(backend.address, route.rng)
        if other is None:
            raise
        try:
            return await route.pool.acquire(other)
        except ConnectFailed as second:
            raise ConnectFailed(f"{first}; {second}") from None


async def _final_head(up: Upstream, client: Peer, request: Request) -> Response:
    """The upstream's final response head; interim 1xx (100 Continue) go to an HTTP/1.1 client as they come."""
    while True:
        raw = await up.peer.read_head()
        if raw is None:
            raise PeerGone(up.peer.side, "closed before answering")
        response = parse_response(raw, method=request.method)
        if response.status >= 200:
            return response
        if response.status == 101:
            raise BadMessage("101 Switching Protocols to a request without Upgrade", status=502)
        if request.minor == 1:
            client.write(raw)
            await client.drain()


async def _pump(client: Peer, up: Upstream, request: Request) -> None:
    try:
        await relay_body(client, up.peer, request.framing, request.length)
    except PeerGone as e:
        if e.side == client.side:
            up.peer.abort()  # a partial body must not pass for a whole one; the response read fails at once
        raise


async def forward(route: Route, client: Peer, request: Request, client_ip: str) -> bool:
    """Forward ``request``; True when the client connection may carry another request."""
    backend = route.table.pick(route.rng)
    if backend is None:
        return await answer(client, request, 503, f"RayService {route.service}: no backend")
    head = request.upstream_head(client_ip)
    # A small body the client has (nearly always) sent along with its head goes out in one write with the
    # head and can be sent again; a large, chunked or 100-continue body streams beside the response read.
    streamed = request.framing is Framing.CHUNKED or request.expects_continue or request.length > PIECE
    if request.framing is Framing.LENGTH and not streamed:
        head += await client.read_exactly(request.length)  # PeerGone: the connection ends, nobody to answer
    for attempt in (1, 2):
        try:
            up = await _connect(route, backend, fresh=attempt == 2)
        except ConnectFailed as e:
            return await answer(client, request, 502, f"RayService {route.service}: {e}")
        pump = None
        try:
            up.peer.write(head)
            if streamed:
                pump = asyncio.create_task(_pump(client, up, request))
            response = await _final_head(up, client, request)
        except (PeerGone, BadMessage) as e:
            up.peer.abort()
            route.pool.release(up, reusable=False)
            if pump is not None:
                ended = await _stop(pump)
                if isinstance(ended, PeerGone) and ended.side == client.side:
                    return False  # the client left mid-body: nobody to answer
            retry = isinstance(e, PeerGone) and not e.timed_out and up.reused and pump is None
            if retry and attempt == 1 and request.method in _IDEMPOTENT:
                continue
            if isinstance(e, PeerGone) and e.timed_out:
                return await answer(client, None, 504, f"RayService {route.service}: {e}")
            detail = e.reason if isinstance(e, BadMessage) else str(e)
            return await answer(client, None, 502, f"RayService {route.service}: {detail}")
        return await _respond(route, client, request, up=up, response=response, pump=pump)
    raise AssertionError("unreachable: the second attempt returns")


async def _respond(
    route: Route, client: Peer, request: Request, *, up: Upstream, response: Response, pump: asyncio.Task[None] | None
) -> bool:
    # The client connection is kept only when this response's end is framed and the request body is done.
    body_done = pump is None or (pump.done() and not pump.cancelled() and pump.exception() is None)
    keep = request.keep_alive and response.framing is not Framing.UNTIL_CLOSE and body_done
    try:
        if response.framing is Framing.LENGTH and response.length <= PIECE:  # the common case: one write
            body = await up.peer.read_exactly(response.length)
            client.write(response.client_head(close=not keep) + body)
            await client.drain()
        else:
            client.write(response.client_head(close=not keep))
            await relay_body(up.peer, client, response.framing, response.length)
    except PeerGone:
        up.peer.abort()
        client.abort()
        route.pool.release(up, reusable=False)
        if pump is not None:
            await _stop(pump)
        return False
    if pump is not None:
        # Not done: the upstream answered without taking the whole body; neither connection is reusable.
        body_done = await _stop(pump) is None
    route.pool.release(up, reusable=response.keep_alive and request.minor == 1 and body_done)
    return keep
