"""The local server process: ``python -m kray.local.server.daemon --home DIR``.

Holds an exclusive lock on ``server.lock`` (one server per state dir), hosts the local control
plane, serves the API on 127.0.0.1 (a random port, written to ``server.json``), and on SIGTERM
stops every pod's processes before it exits. The API token is ``server.token`` (mode 0600).
Beside it, on another loopback port, the Kubernetes API that Ray's autoscaler uses, over TLS
(:mod:`kray.local.server.kube_api`; ``kube_api_url`` and ``kube_api_ca`` in ``server.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import logging
import os
import secrets
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import structlog
import uvicorn

from kray.local import config
from kray.local.environment import KubeApiEndpoint
from kray.local.paths import LocalPaths
from kray.local.runtime import LocalControlPlane
from kray.local.server.api import build_app
from kray.local.server.kube_api import build_kube_app
from kray.local.server.kube_tls import ensure_serving_tls
from kray.local.server.routes import build_routes

SWITCH_INTERVAL = 0.0005
"""Seconds a thread may hold the GIL while another waits (Python's default: 0.005). The serve proxies run on
their own thread (:mod:`kray.local.serveproxy.threaded`); each request crosses a few awaits, and at each one
the proxy may wait for the control plane's thread to give up the GIL: with the default, up to 5 ms each time,
which issue 10's benchmark saw as p99 +8-12 ms against straight to Serve at 100 requests/s."""


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM after serving, which would kill us before the pods are stopped:
    here a signal only asks the server to exit, and :func:`serve` then stops every pod."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def request_exit(self) -> None:
        self.should_exit = True


def read_or_create_token(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        token = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token)
        return token


async def serve(paths: LocalPaths, token: str) -> None:
    # The Kubernetes API for Ray's autoscaler sidecars: HTTPS only (its client refuses http://). Its address is
    # known before the control plane starts, which hands it to the head pods it makes.
    tls = ensure_serving_tls(paths.home / "kube-api")
    kube_sock, kube_port = _kept_loopback_socket(paths.home / "kube-api" / "port")
    plane = LocalControlPlane(
        paths=paths,
        job_settings=config.job_settings(os.environ),
        runner_settings=config.runner_settings(os.environ, state_dir=paths.home),
        kube_api=KubeApiEndpoint(host="127.0.0.1", port=kube_port, ca_cert=tls.ca_cert),
    )
    await plane.start()
    assert plane.store is not None
    assert plane.history is not None
    app = build_app(
        store=plane.store, token=token, extra_routes=build_routes(store=plane.store, history=plane.history, paths=paths)
    )
    sock, port = _loopback_socket()
    server = _Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
    kube_server = _Server(
        uvicorn.Config(
            build_kube_app(store=plane.store),
            log_level="warning",
            lifespan="off",
            access_log=False,
            ssl_certfile=str(tls.cert),
            ssl_keyfile=str(tls.key),
        )
    )
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, server.request_exit)
    info = {
        "pid": os.getpid(),
        "port": port,
        "url": f"http://127.0.0.1:{port}",
        "kube_api_url": f"https://127.0.0.1:{kube_port}",
        "kube_api_ca": str(tls.ca_cert),
    }
    tmp = paths.server_info.with_suffix(".tmp")
    tmp.write_text(json.dumps(info))
    tmp.replace(paths.server_info)
    try:
        kube_serving = asyncio.create_task(kube_server.serve(sockets=[kube_sock]))
        try:
            await server.serve(sockets=[sock])
        finally:
            # Without waiting for its connections: a TLS connection the client closed lingers until asyncio's
            # 30 s SSL shutdown timeout, and the autoscaler retries whatever a stop cuts short.
            kube_server.should_exit = kube_server.force_exit = True
            await kube_serving
    finally:
        paths.server_info.unlink(missing_ok=True)
        await plane.stop(kill_pods=True)


def _kept_loopback_socket(record: Path) -> tuple[socket.socket, int]:
    """A loopback socket on the port ``record`` names (a previous server's), else on a new one, recorded.

    The head pods' autoscalers keep the Kubernetes API's address in their environment, and they outlive a server
    restart (it adopts running pods): the API must come back where they look for it.
    """
    with contextlib.suppress(FileNotFoundError, ValueError, OSError):
        port = int(record.read_text().strip())
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            sock.close()
            raise
        return sock, port
    sock, port = _loopback_socket()
    record.write_text(f"{port}\n")
    return sock, port


def _loopback_socket() -> tuple[socket.socket, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock, int(sock.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kray-server")
    parser.add_argument("--home", type=Path, required=True)
    args = parser.parse_args(argv)
    try:  # refuse bad knobs before taking the state dir
        config.job_settings(os.environ)
        config.runner_settings(os.environ, state_dir=args.home)
    except config.ConfigError as error:
        print(f"kray server: {error}", file=sys.stderr)
        return 2
    paths = LocalPaths(args.home.resolve()).ensure()
    lock = paths.lock.open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"kray server: another server already runs for {paths.home}", file=sys.stderr)
        return 1
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    token = read_or_create_token(paths.token)
    sys.setswitchinterval(SWITCH_INTERVAL)
    asyncio.run(serve(paths, token))
    return 0


if __name__ == "__main__":
    sys.exit(main())
