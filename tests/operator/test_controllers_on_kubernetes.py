"""The same RayCluster controller that runs local mode drives a real kube-apiserver.

Store: the plain Kubernetes adapter (:class:`~kray._kube.store.KubeStore`); environment:
KubeRay's (:class:`~kray.controllers.environment.KubernetesEnvironment`); pods are bound by the
real scheduler to kwok nodes, which report them Running and Ready. The controller runs with the
shared runtime (informers + work queue), exactly as in local mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from kray._kube.store import KubeStore
from kray.controllers.environment import KubernetesEnvironment
from kray.controllers.raycluster.reconcile import RayClusterReconciler
from kray.runtime.controller import Controller
from kray.runtime.informer import Informer
from kray.store import POD, RAYCLUSTER, SERVICE, Store

pytestmark = [pytest.mark.k8s]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "raycluster.yaml"


async def wait_for(predicate: Any, *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


async def run_controller(store: Store, namespace: str, stop: asyncio.Event) -> None:
    clusters = Informer(store, RAYCLUSTER, namespace=namespace)
    pods = Informer(store, POD, namespace=namespace, label_selector="ray.io/is-ray-node=yes")
    controller = Controller(
        "raycluster", RayClusterReconciler(store=store, environment=KubernetesEnvironment(), requeue_idle=5.0)
    )
    controller.watches(clusters)
    controller.owns(pods, owner_kind="RayCluster")
    await asyncio.gather(clusters.run(stop), pods.run(stop), controller.run(stop))


async def test_raycluster_becomes_ready_on_a_real_apiserver(
    k8s_control_plane: Any, ray_crds: Any, k8s_namespace: str, kwok_nodes: Any
) -> None:
    kwok_nodes(2)
    manifest = yaml.safe_load(EXAMPLE.read_text())
    manifest["metadata"]["namespace"] = k8s_namespace
    store = KubeStore.from_kubeconfig(Path(k8s_control_plane.kubeconfig))
    stop = asyncio.Event()
    runner = asyncio.create_task(run_controller(store, k8s_namespace, stop))
    try:
        await store.create(RAYCLUSTER, manifest)

        async def ready() -> dict[str, Any] | None:
            cluster = await store.get(RAYCLUSTER, "raycluster-sample", namespace=k8s_namespace)
            status = cluster.get("status") or {}
            return status if status.get("state") == "ready" else None

        status = await wait_for(ready, timeout=120, what="RayCluster state ready")
        conditions = {c["type"]: c["status"] for c in status["conditions"]}
        assert conditions["HeadPodReady"] == "True"
        assert conditions["RayClusterProvisioned"] == "True"
        assert status["desiredWorkerReplicas"] == status["readyWorkerReplicas"] == 1
        assert status["head"]["serviceName"] == "raycluster-sample-head-svc"

        pods = (await store.list(POD, namespace=k8s_namespace, label_selector="ray.io/cluster=raycluster-sample")).items
        assert sorted(p["metadata"]["labels"]["ray.io/node-type"] for p in pods) == ["head", "worker"]
        head = next(p for p in pods if p["metadata"]["labels"]["ray.io/node-type"] == "head")
        assert head["metadata"]["generateName"] == "raycluster-sample-head-"
        assert "ray start --head" in head["spec"]["containers"][0]["args"][0]
        assert head["metadata"]["ownerReferences"][0]["kind"] == "RayCluster"
        service = await store.get(SERVICE, "raycluster-sample-head-svc", namespace=k8s_namespace)
        assert service["spec"]["clusterIP"] == "None", "KubeRay's head Service is headless by default"

        await store.delete(RAYCLUSTER, "raycluster-sample", namespace=k8s_namespace)

        async def pods_gone() -> bool:
            left = await store.list(POD, namespace=k8s_namespace, label_selector="ray.io/cluster=raycluster-sample")
            return not left.items

        await wait_for(pods_gone, timeout=90, what="the controller-manager to garbage-collect the pods")
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(runner, timeout=30)
        await store.close()
