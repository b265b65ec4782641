"""What the RayJob reconcile writes to a store: KubeRay's status form and its events for what it did.

Runs the reconciler on the embedded store (no control plane needed: nothing here is Kubernetes'
behaviour, only what kray writes), with the Kubernetes environment.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kray.controllers.environment import KubernetesEnvironment
from kray.controllers.rayjob.plan import FINALIZER
from kray.controllers.rayjob.reconcile import RayJobReconciler
from kray.local.store import EmbeddedSettings, EmbeddedStore, open_embedded_store
from kray.store import EVENT, RAYCLUSTER, RAYJOB, Obj

CONTAINER = {"name": "ray", "image": "rayproject/ray:2.60.0"}
CLUSTER_SPEC = {
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
}
EMPTY_CLUSTER_STATUS = {"desiredCPU": "0", "desiredMemory": "0", "desiredGPU": "0", "desiredTPU": "0", "head": {}}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EmbeddedStore]:
    async with await open_embedded_store(tmp_path / "store.db", settings=EmbeddedSettings(poll_interval=0.05)) as s:
        yield s


def reconciler(store: EmbeddedStore) -> RayJobReconciler:
    return RayJobReconciler(store=store, environment=KubernetesEnvironment())


async def create_job(store: EmbeddedStore, spec: dict[str, Any], status: dict[str, Any] | None = None) -> Obj:
    body = {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": "demo", "namespace": "default", "finalizers": [FINALIZER]},
        "spec": {"entrypoint": "python x.py", "rayClusterSpec": CLUSTER_SPEC, **spec},
    }
    created = await store.create(RAYJOB, body)
    if status is not None:
        created = await store.replace_status(RAYJOB, {**created, "status": status})
    return created


async def test_an_invalid_rayjob_is_written_as_kuberay_writes_validation_failed(store: EmbeddedStore) -> None:
    await create_job(store, {"shutdownAfterJobFinishes": False, "ttlSecondsAfterFinished": 10})
    await reconciler(store)(("default", "demo"))
    status = (await store.get(RAYJOB, "demo", namespace="default"))["status"]
    assert status["jobDeploymentStatus"] == "ValidationFailed"
    assert status["rayJobInfo"] == {}
    assert status["rayClusterStatus"] == EMPTY_CLUSTER_STATUS
    assert "jobStatus" not in status


async def test_delete_workers_records_updated_ray_cluster(store: EmbeddedStore) -> None:
    cluster = {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": "demo-abcde", "namespace": "default"},
        "spec": CLUSTER_SPEC,
    }
    await store.create(RAYCLUSTER, cluster)
    rules = {"deletionRules": [{"policy": "DeleteWorkers", "condition": {"jobStatus": "SUCCEEDED", "ttlSeconds": 0}}]}
    done = {
        "jobDeploymentStatus": "Complete",
        "jobStatus": "SUCCEEDED",
        "jobId": "demo-abcde",
        "rayClusterName": "demo-abcde",
        "startTime": "2026-11-25T12:00:00Z",
        "endTime": "2026-11-25T12:00:00Z",
    }
    await create_job(store, {"deletionStrategy": rules}, done)
    await reconciler(store)(("default", "demo"))
    groups = (await store.get(RAYCLUSTER, "demo-abcde", namespace="default"))["spec"]["workerGroupSpecs"]
    assert [g.get("suspend") for g in groups] == [True]
    events = (await store.list(EVENT, namespace="default")).items
    updated = [e for e in events if e["reason"] == "UpdatedRayCluster"]
    assert [(e["type"], e["message"]) for e in updated] == [
        ("Normal", "Set the `suspend` field to true for all worker groups in cluster default/demo-abcde")
    ]
    assert updated[0]["involvedObject"]["kind"] == "RayJob"
