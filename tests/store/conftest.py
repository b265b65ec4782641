"""Fixtures of the store contract suite: every test runs against both adapters of the Store port.

``store`` is parametrized: ``embedded`` (the SQLite store in a temporary directory) and ``kube`` (the
session's real kube-apiserver with kray's CRDs, marked ``k8s``). ``ns`` is a fresh namespace either
way. Where a real API server and the embedded store could differ, the real one is the reference.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from kray._kube.store import KubeStore
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
    params=[pytest.param("embedded", id="embedded"), pytest.param("kube", id="kube", marks=pytest.mark.k8s)]
)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    if request.param == "embedded":
        return Target("embedded", path=tmp_path / "store.db")
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


@pytest_asyncio.fixture
async def ns(store: Store, target: Target) -> str:
    """A fresh, empty namespace (the kube one is made and removed by ``k8s_namespace``)."""
    if target.namespace is not None:
        return target.namespace
    name = f"t-{secrets.token_hex(3)}"
    await store.create(NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name
