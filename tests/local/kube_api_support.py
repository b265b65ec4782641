"""The local server's Kubernetes API for Ray's autoscaler (kray.local.server.kube_api), served in-process over TLS on
a kernel-chosen loopback port: the component tests and the autoscaler contract suite's local side both need it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from kray.local.server.kube_api import build_kube_app
from kray.local.server.kube_tls import ensure_serving_tls
from kray.store import Store


@dataclass(frozen=True)
class KubeApi:
    url: str
    ca_cert: Path


@contextlib.asynccontextmanager
async def serving_kube_api(*, store: Store, tls_dir: Path) -> AsyncIterator[KubeApi]:
    """Serve until the block ends (started within 10 s, stopped within 10 s; the store stays open)."""
    tls = ensure_serving_tls(tls_dir)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        build_kube_app(store=store),
        log_level="warning",
        lifespan="off",
        access_log=False,
        ssl_certfile=str(tls.cert),
        ssl_keyfile=str(tls.key),
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                assert not serving.done(), serving
                await asyncio.sleep(0.02)
        yield KubeApi(f"https://127.0.0.1:{sock.getsockname()[1]}", tls.ca_cert)
    finally:
        server.should_exit = server.force_exit = True
        async with asyncio.timeout(10):
            await serving
        sock.close()
