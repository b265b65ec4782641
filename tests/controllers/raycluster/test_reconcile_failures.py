"""A pod creation the apiserver refuses: KubeRay's Warning Event and the ReplicaFailure condition.

The refusal is what Kubernetes' ServiceAccount admission plugin answers for a pod naming a missing
ServiceAccount (KubeRay's sample ``ray-cluster.gke-bucket.yaml``); the store here is the embedded
one, refusing pods the same way, so the reconcile's reaction is checked without a control plane
(the differential suite checks it against the real apiserver).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kray.controllers.environment import KubernetesEnvironment
from kray.controllers.raycluster.reconcile import RayClusterReconciler
from kray.local.store import EmbeddedSettings, EmbeddedStore, open_embedded_store
from kray.store import EVENT, POD, RAYCLUSTER, Obj, Resource
from kray.store.errors import Forbidden

CONTAINER = {"name": "ray", "image": "rayproject/ray:2.60.0"}
REFUSAL = (
    'pods "{name}" is forbidden: error looking up service account default/missing-sa: '
    'serviceaccount "missing-sa" not found'
)


class RefusingPods:
    """The embedded store, except that creating a pod of the chosen role fails as admission refuses it."""

    def __init__(self, store: EmbeddedStore, *, role: str) -> None:
        self._store = store
        self._role = role

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def create(self, resource: Resource, obj: Obj) -> Obj:
        meta = obj.get("metadata") or {}
        if resource == POD and (meta.get("labels") or {}).get("ray.io/node-type") == self._role:
            raise Forbidden(REFUSAL.format(name=meta.get("name") or meta.get("generateName")))
        return await self._store.create(resource, obj)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EmbeddedStore]:
    async with await open_embedded_store(tmp_path / "store.db", settings=EmbeddedSettings(poll_interval=0.05)) as s:
        yield s


async def _reconcile_once(store: EmbeddedStore, *, role: str) -> tuple[Obj, list[Obj]]:
    cluster = {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": "mini", "namespace": "default"},
        "spec": {
            "headGroupSpec": {"rayStartParams": {}, "template": {"spec": {"containers": [CONTAINER]}}},
            "workerGroupSpecs": [
                {
                    "groupName": "g",
                    "replicas": 1,
                    "minReplicas": 1,
                    "maxReplicas": 1,
                    "rayStartParams": {},
                    "template": {"spec": {"containers": [CONTAINER]}},
                }
            ],
        },
    }
    await store.create(RAYCLUSTER, cluster)
    reconciler = RayClusterReconciler(
        store=RefusingPods(store, role=role),  # type: ignore[arg-type]
        environment=KubernetesEnvironment(),
        redis_cleanup=False,
    )
    await reconciler(("default", "mini"))
    events = (await store.list(EVENT, namespace="default")).items
    return await store.get(RAYCLUSTER, "mini", namespace="default"), events


async def test_a_refused_head_pod_records_failed_to_create_head_pod(store: EmbeddedStore) -> None:
    cluster, events = await _reconcile_once(store, role="head")
    warnings = [e for e in events if e["type"] == "Warning"]
    assert [e["reason"] for e in warnings] == ["FailedToCreateHeadPod"]
    # KubeRay's message names the pod as it sent it: empty, since the head's name is generated.
    assert warnings[0]["message"] == "Failed to create head Pod default/, " + REFUSAL.format(name="mini-head-")
    assert warnings[0]["involvedObject"]["name"] == "mini"
    failure = next(c for c in cluster["status"]["conditions"] if c["type"] == "ReplicaFailure")
    assert (failure["status"], failure["reason"]) == ("True", "FailedCreateHeadPod")
    assert "forbidden" in failure["message"]
    assert not any(e["reason"] == "CreatedHeadPod" for e in events)


async def test_a_refused_worker_pod_records_failed_to_create_worker_pod(store: EmbeddedStore) -> None:
    cluster, events = await _reconcile_once(store, role="worker")
    reasons = sorted(e["reason"] for e in events)
    assert "CreatedHeadPod" in reasons
    warnings = [e for e in events if e["type"] == "Warning"]
    assert [e["reason"] for e in warnings] == ["FailedToCreateWorkerPod"]
    assert warnings[0]["message"].startswith("Failed to create worker Pod for the cluster default/mini, pods ")
    assert warnings[0]["message"].endswith('serviceaccount "missing-sa" not found')
    failure = next(c for c in cluster["status"]["conditions"] if c["type"] == "ReplicaFailure")
    assert (failure["status"], failure["reason"]) == ("True", "FailedCreateWorkerPod")
