"""Fixtures of the store contract suite: every test runs against both adapters of the Store port.

``store`` is parametrized: ``embedded`` (the SQLite store in a temporary directory), ``http`` (the
``HttpStore`` client every CLI command uses, over TCP to the local server's API -- ``build_app``, served
by uvicorn as ``kray server`` serves it -- on such an embedded store; without the control plane, so nothing
reconciles the suite's objects) and ``kube`` (the session's real kube-apiserver with kray's CRDs, marked
``k8s``). ``ns`` is a fresh namespace either
way. Where a real API server and the embedded store could differ, the real one is the reference.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
import uvicorn

from kray._kube.store import KubeStore
from kray.local.server.api import build_app
from kray.local.server.client import HttpStore
from kray.local.store import EmbeddedSettings, open_embedded_store
from kray.store import NAMESPACE, Store

RETAINED_CHANGES = 100
"""The embedded store's watch log in this suite: small, so Gone is reachable with ~150 writes."""


@dataclass(frozen=True)
class Target:
    backend: str
    path: Path | None = None
    kubeconfig: Path | None = None
    namespace: str | None = None


@pytest.fixture(
    params=[
        pytest.param("embedded", id="embedded"),
        pytest.param("http", id="http"),
        pytest.param("kube", id="kube", marks=pytest.mark.k8s),
    ]
)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    if request.param in {"embedded", "http"}:
        return Target(request.param, path=tmp_path / "store.db")
    plane = request.getfixturevalue("k8s_control_plane")
    request.getfixturevalue("ray_crds")
    namespace = request.getfixturevalue("k8s_namespace")
    return Target("kube", kubeconfig=plane.kubeconfig, namespace=namespace)


@pytest.fixture
def backend(target: Target) -> str:
    return target.backend


@pytest_asyncio.fixture
async def store(target: Target) -> AsyncIterator[Store]:
    opened: Store
    if target.backend == "http":
        async for served in _http_store(target):
            yield served
        return
    if target.backend == "embedded":
        assert target.path is not None
        settings = EmbeddedSettings(retained_changes=RETAINED_CHANGES, poll_interval=0.1)
        opened = await open_embedded_store(target.path, settings=settings)
    else:
        opened = KubeStore.from_kubeconfig(target.kubeconfig)
    try:
        yield opened
    finally:
        await opened.close()


async def _http_store(target: Target) -> AsyncIterator[Store]:
    """An ``HttpStore`` talking over TCP to the local server's API on an embedded store, in this event loop."""
    assert target.path is not None
    settings = EmbeddedSettings(retained_changes=RETAINED_CHANGES, poll_interval=0.1)
    embedded = await open_embedded_store(target.path, settings=settings)
    token = secrets.token_urlsafe(16)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(build_app(store=embedded, token=token), log_level="warning", lifespan="off", access_log=False)
    )
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    client = HttpStore(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}", token=token)
    try:
        async with asyncio.timeout(10):
            while not server.started:
                assert not serving.done(), serving
                await asyncio.sleep(0.02)
        yield client
    finally:
        await client.close()
        server.should_exit = server.force_exit = True  # open watch streams must not hold the shutdown
        async with asyncio.timeout(10):
            await serving
        sock.close()
        await embedded.close()


@pytest_asyncio.fixture
async def ns(store: Store, target: Target) -> str:
    """A fresh, empty namespace (the kube one is made and removed by ``k8s_namespace``)."""
    if target.namespace is not None:
        return target.namespace
    name = f"t-{secrets.token_hex(3)}"
    await store.create(NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name
