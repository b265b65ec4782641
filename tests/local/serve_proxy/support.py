"""Real upstreams for the serve proxy tests: stdlib ``http.server`` on loopback port 0, one thread per
connection, each answering which version it is; and a keep-alive client of the proxy.

Why stdlib and not the proxy's own parser: the upstream and the client (httpx2/h11, or raw sockets) are
independent HTTP implementations, so a framing mistake in the proxy shows as a failure on one side
instead of being agreed with.
"""

from __future__ import annotations

import hashlib
import json
import random
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import httpx2


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Upstream

    def setup(self) -> None:
        super().setup()
        # Head and body go out in two writes; without NODELAY Nagle holds the body for the peer's delayed ACK.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.lock:
            self.server.open_connections += 1
            self.server.connections_seen += 1

    def finish(self) -> None:
        super().finish()
        with self.server.lock:
            self.server.open_connections -= 1

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower().endswith("chunked"):
            parts = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b""):
                pass
            return b"".join(parts)
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def _send(self, status: int, body: bytes, *, head_only: bool = False, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Backend", self.server.name)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        if not head_only:
            self.wfile.write(body)

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        body = self._body() if self.command not in ("GET", "HEAD") else b""
        with self.server.lock:
            self.server.requests += 1
        if url.path == "/slow":
            self.server.slow_started.set()
            time.sleep(float(query["s"]))
        if url.path == "/echo":
            echo = {
                "method": self.command,
                "path": self.path,
                "headers": [[k.lower(), v] for k, v in self.headers.items()],
                "body_len": len(body),
                "body_sha256": hashlib.sha256(body).hexdigest(),
                "backend": self.server.name,
            }
            self._send(200, json.dumps(echo).encode(), Content_Type="application/json")
        elif url.path == "/big":
            self._send(200, random.Random(int(query["seed"])).randbytes(int(query["n"])))
        elif url.path == "/stream":
            self._stream(int(query["n"]))
        elif url.path == "/drop":  # closes the connection after the response without saying so
            self._send(200, self.server.name.encode())
            self.close_connection = True
        else:
            self._send(200, self.server.name.encode(), head_only=self.command == "HEAD")

    def _stream(self, n: int) -> None:
        """``n`` chunks, then a trailer; after the first chunk it waits until the test has seen it."""
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Trailer", "X-Checksum")
        self.end_headers()
        for i in range(n):
            piece = f"{self.server.name}-{i};".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.flush()
            if i == 0 and not self.server.first_chunk_seen.wait(10):
                return  # the proxy held the first chunk back: the test fails on its own wait
        self.wfile.write(b"0\r\nX-Checksum: done\r\n\r\n")

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch


class Upstream(ThreadingHTTPServer):
    """A stdlib HTTP/1.1 server on 127.0.0.1:0 whose every answer names it (body and ``X-Backend``)."""

    daemon_threads = True

    def __init__(self, name: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.name = name
        self.lock = threading.Lock()
        self.open_connections = 0
        self.connections_seen = 0
        self.requests = 0
        self.slow_started = threading.Event()
        self.first_chunk_seen = threading.Event()
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def handle_error(self, request: object, client_address: object) -> None:
        """Quiet: the proxy aborting a connection (after a read timeout, a drain) is expected here."""

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)


def client(port: int, **kwargs: object) -> httpx2.AsyncClient:
    """A keep-alive client of the proxy; no proxy of its own (``trust_env=False``)."""
    return httpx2.AsyncClient(base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=10, **kwargs)  # type: ignore[arg-type]
