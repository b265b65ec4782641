"""An informer on a kind the apiserver does not serve (its CRD not installed) says so once and waits for it.

Against a real kube-apiserver: the group is unknown to it (a plain-text 404 from its mux, not a Status), so the
operator's log must name the resource (``widgets.<group>``) and what to do, once, not a retry warning per second;
once the CRD is installed the informer lists and watches the kind with no restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from pathlib import Path
from typing import Any

import pytest
import structlog

from kray._kube.store import KubeStore
from kray.runtime.informer import Informer, ObjectKey
from kray.store import Resource

pytestmark = [pytest.mark.k8s]

CRD = Resource("apiextensions.k8s.io/v1", "CustomResourceDefinition", "customresourcedefinitions", namespaced=False)


def crd(group: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                }
            ],
        },
    }


async def test_an_unserved_kind_is_named_once_and_informed_once_its_crd_is_installed(
    k8s_control_plane: Any, k8s_namespace: str
) -> None:
    group = f"t{secrets.token_hex(4)}.kray.dev"
    widget = Resource(f"{group}/v1", "Widget", "widgets")
    store = KubeStore.from_kubeconfig(Path(k8s_control_plane.kubeconfig))
    informer = Informer(store, widget, namespace=k8s_namespace, retry_delay=0.2)
    stop = asyncio.Event()
    task = asyncio.create_task(informer.run(stop))
    try:
        with structlog.testing.capture_logs() as logs:
            await asyncio.sleep(2.0)  # about ten relists
            said = [e for e in logs if e["event"].startswith("informer.")]
            assert [e["event"] for e in said] == ["informer.kind_not_served"], said
            assert said[0]["resource"] == f"widgets.{group}"
            assert said[0]["log_level"] == "error"
            assert not informer.synced.is_set()

            await store.create(CRD, crd(group))
            obj = {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": k8s_namespace}}
            created: object = None
            deadline = asyncio.get_running_loop().time() + 30
            while informer.get(ObjectKey((k8s_namespace, "w"))) is None:
                if asyncio.get_running_loop().time() > deadline:
                    events = [e["event"] for e in logs]
                    raise AssertionError(f"the informer never saw widget w; create said {created!r}; logs {events}")
                if not isinstance(created, dict):
                    try:  # the new kind takes a moment to be served
                        created = await store.create(widget, obj)
                    except Exception as error:
                        created = error
                await asyncio.sleep(0.2)
            assert "informer.kind_served" in [e["event"] for e in logs]
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, timeout=10)
        with contextlib.suppress(Exception):
            await store.delete(CRD, f"widgets.{group}", namespace=None)
        await store.close()
