"""The apiserver as pods see it: ``kubernetes.default``'s ClusterIP relayed to the apiserver on the host.

Why a relay and not DNAT: the apiserver listens on the host's loopback (127.0.0.1:PORT), which no other network
namespace can reach, and routing to it from a pod is refused by the kernel (martian). So the agent listens on the
ClusterIP (``10.96.0.1:443``, put on the node netns's ``lo``) with a socket made *inside* the node netns -- a socket
keeps the namespace it was created in, so one thread enters the netns (``setns``; Python 3.11 has no
``os.setns``: ctypes), creates, binds and listens, and leaves -- and the agent's event loop relays each connection
to the host apiserver byte for byte. TLS passes through untouched: the apiserver's certificate carries the
ClusterIP as a SAN, so in-pod clients verify it as they would on a real cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import socket
import threading

import structlog

from kray.local.sandbox import SandboxError

__all__ = ["ApiForwarder", "listen_in_netns"]

CLONE_NEWNET = 0x40000000
_CHUNK = 1 << 16
log = structlog.get_logger(__name__)


def listen_in_netns(netns: str, host: str, port: int) -> socket.socket:
    """A non-blocking TCP socket listening on ``host:port`` inside the network namespace file ``netns``."""
    result: list[socket.socket | BaseException] = []

    def enter_and_listen() -> None:
        # Only this short-lived thread changes namespace; the socket keeps it after the thread is gone.
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({netns}): {os.strerror(err)}")
            finally:
                os.close(fd)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((host, port))
                sock.listen(128)
                sock.setblocking(False)
            except BaseException:
                sock.close()
                raise
            result.append(sock)
        except BaseException as e:
            result.append(e)

    thread = threading.Thread(target=enter_and_listen, name="kray-netns-listen", daemon=True)
    thread.start()
    thread.join()
    got = result[0] if result else RuntimeError("the listening thread returned nothing")
    if isinstance(got, BaseException):
        raise SandboxError(f"listening on {host}:{port} in {netns}: {got}") from got
    return got


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


class ApiForwarder:
    """Relays connections accepted on a socket (made by :func:`listen_in_netns`) to ``target`` on the host."""

    def __init__(self, *, sock: socket.socket, target: tuple[str, int]) -> None:
        self._sock = sock
        self._target = target
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, sock=self._sock)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            try:
                up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(*self._target), 10)
            except (OSError, TimeoutError) as e:
                log.warning("apiserver unreachable for a pod", target=self._target, error=str(e))
                return
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                up_writer.close()
        finally:
            writer.close()
            self._conns.discard(task)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._conns):
            task.cancel()
        for task in list(self._conns):
            with contextlib.suppress(BaseException):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
        self._sock.close()
