"""The RayCluster controller on a real kube-apiserver: autoscaler RBAC, multi-host replicas, headless Service.

The API server is where these behaviours are Kubernetes': its ServiceAccount admission refuses a
head pod naming an account that does not exist (so the autoscaler's ServiceAccount must come first),
RBAC objects are validated by the rbac.authorization.k8s.io API, and kwok nodes run the four
multi-host worker pods to Running/Ready so the cluster's status can become ``ready``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from kray._kube.store import KubeStore
from kray.controllers.environment import KubernetesEnvironment
from kray.controllers.raycluster.reconcile import RayClusterReconciler
from kray.runtime.controller import Controller
from kray.runtime.informer import Informer
from kray.store import POD, RAYCLUSTER, ROLE, ROLE_BINDING, SERVICE, SERVICE_ACCOUNT, Store

pytestmark = [pytest.mark.k8s]
NAME = "rc-multihost"
CONTAINER = {"image": "rayproject/ray:2.60.0", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}


def manifest(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": NAME, "namespace": namespace},
        "spec": {
            "rayVersion": "2.60.0",
            "enableInTreeAutoscaling": True,
            "headGroupSpec": {
                "rayStartParams": {},
                "template": {"spec": {"containers": [{"name": "ray-head", **CONTAINER}]}},
            },
            "workerGroupSpecs": [
                {
                    "groupName": "tpu",
                    "replicas": 2,
                    "minReplicas": 0,
                    "maxReplicas": 4,
                    "numOfHosts": 2,
                    "rayStartParams": {},
                    "template": {"spec": {"containers": [{"name": "ray-worker", **CONTAINER}]}},
                }
            ],
        },
    }


async def wait_for(probe: Any, *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await probe()
        if last and last[0]:
            return last[0]
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last saw: {last[1] if last else None}")


async def run_controller(store: Store, namespace: str, stop: asyncio.Event) -> None:
    clusters = Informer(store, RAYCLUSTER, namespace=namespace)
    pods = Informer(store, POD, namespace=namespace, label_selector="ray.io/is-ray-node=yes")
    controller = Controller(
        "raycluster", RayClusterReconciler(store=store, environment=KubernetesEnvironment(), requeue_idle=5.0)
    )
    controller.watches(clusters)
    controller.owns(pods, owner_kind="RayCluster")
    await asyncio.gather(clusters.run(stop), pods.run(stop), controller.run(stop))


async def test_autoscaling_multi_host_cluster_gets_rbac_replicas_and_headless_service(
    k8s_control_plane: Any, ray_crds: Any, k8s_namespace: str, kwok_nodes: Any
) -> None:
    kwok_nodes(2)
    store = KubeStore.from_kubeconfig(Path(k8s_control_plane.kubeconfig))
    stop = asyncio.Event()
    runner = asyncio.create_task(run_controller(store, k8s_namespace, stop))
    try:
        await store.create(RAYCLUSTER, manifest(k8s_namespace))

        async def ready() -> tuple[dict[str, Any] | None, Any]:
            status = (await store.get(RAYCLUSTER, NAME, namespace=k8s_namespace)).get("status") or {}
            return (status if status.get("state") == "ready" else None), status

        status = await wait_for(ready, timeout=150, what="RayCluster state ready")
        assert status["desiredWorkerReplicas"] == status["readyWorkerReplicas"] == 4
        conditions = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
        assert conditions["HeadPodReady"] == ("True", "HeadPodRunningAndReady")
        assert conditions["RayClusterProvisioned"] == ("True", "AllPodRunningAndReadyFirstTime")

        account = await store.get(SERVICE_ACCOUNT, NAME, namespace=k8s_namespace)
        assert account["metadata"]["ownerReferences"][0]["kind"] == "RayCluster"
        role = await store.get(ROLE, NAME, namespace=k8s_namespace)
        assert {"apiGroups": ["ray.io"], "resources": ["rayclusters"], "verbs": ["get", "patch"]} in role["rules"]
        assert {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "patch"]} in role["rules"]
        binding = await store.get(ROLE_BINDING, NAME, namespace=k8s_namespace)
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": NAME, "namespace": k8s_namespace}]
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": NAME}

        pods = (await store.list(POD, namespace=k8s_namespace, label_selector=f"ray.io/cluster={NAME}")).items
        head = next(p for p in pods if p["metadata"]["labels"]["ray.io/node-type"] == "head")
        assert head["spec"]["serviceAccountName"] == NAME
        annotations = head["metadata"]["annotations"]
        assert annotations["ray.io/kuberay-version"] == "v1.7.0"
        assert len(annotations["ray.io/upgrade-strategy-recreate-hash"]) == 32
        workers = [p["metadata"]["labels"] for p in pods if p["metadata"]["labels"]["ray.io/node-type"] == "worker"]
        assert len(workers) == 4
        replicas = Counter(labels["ray.io/worker-group-replica-name"] for labels in workers)
        assert sorted(replicas.values()) == [2, 2], f"two whole replicas of two hosts: {replicas}"
        assert all(name.startswith("tpu-") and len(name) == len("tpu-") + 5 for name in replicas)
        for replica in replicas:
            hosts = [labels for labels in workers if labels["ray.io/worker-group-replica-name"] == replica]
            assert sorted(labels["ray.io/replica-host-index"] for labels in hosts) == ["0", "1"]
            assert len({labels["ray.io/worker-group-replica-index"] for labels in hosts}) == 1
        assert sorted({labels["ray.io/worker-group-replica-index"] for labels in workers}) == ["0", "1"]

        headless = await store.get(SERVICE, f"{NAME}-headless", namespace=k8s_namespace)
        assert headless["spec"]["clusterIP"] == "None"
        assert headless["spec"]["selector"] == {"ray.io/cluster": NAME, "ray.io/node-type": "worker"}
        assert headless["metadata"]["ownerReferences"][0]["name"] == NAME
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(runner, timeout=30)
        await store.close()
