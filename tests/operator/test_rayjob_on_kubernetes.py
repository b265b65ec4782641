"""A K8sJobMode RayJob on a real kube-apiserver: its RayCluster, its submitter Job, its head Service.

The RayJob and RayCluster controllers run as in local mode (shared runtime, informers) but with
KubeRay's environment (:class:`~kray.controllers.environment.KubernetesEnvironment`). The cluster's
pods land on kwok nodes, which report them Running and Ready but run nothing, so the dashboard never
answers: as in KubeRay v1.7 the RayJob then stays Running with ``jobStatusCheckFailureStartTime`` set
(it would fail with JobStatusCheckTimeoutExceeded after 300 s), after creating the submitter Job.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import pytest

from kray._kube.store import KubeStore
from kray.controllers.environment import KubernetesEnvironment
from kray.controllers.raycluster.reconcile import RayClusterReconciler
from kray.controllers.rayjob.reconcile import RayJobReconciler
from kray.runtime.controller import Controller
from kray.runtime.informer import Informer
from kray.store import JOB, POD, RAYCLUSTER, RAYJOB, SERVICE, Obj, Store
from kray.store.errors import NotFound

pytestmark = [pytest.mark.k8s]
NAME = "rayjob-k8s"
IMAGE = "rayproject/ray:2.52.0"


def manifest(namespace: str) -> Obj:
    head = {"name": "ray-head", "image": IMAGE, "resources": {"limits": {"cpu": "1", "memory": "2Gi"}}}
    worker = {"name": "ray-worker", "image": IMAGE, "resources": {"limits": {"cpu": "1", "memory": "2Gi"}}}
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": NAME, "namespace": namespace},
        "spec": {
            "entrypoint": "python -c 'print(1)'",
            "submitterConfig": {"backoffLimit": 1},
            "rayClusterSpec": {
                "rayVersion": "2.52.0",
                "headGroupSpec": {"rayStartParams": {}, "template": {"spec": {"containers": [head]}}},
                "workerGroupSpecs": [
                    {
                        "groupName": "workers",
                        "replicas": 1,
                        "minReplicas": 0,
                        "maxReplicas": 2,
                        "rayStartParams": {},
                        "template": {"spec": {"containers": [worker]}},
                    }
                ],
            },
        },
    }


async def wait_for(probe: Any, *, timeout: float, what: str) -> Any:
    """Poll ``probe`` (returns (value, seen)) until value is truthy; the failure says what it last saw."""
    deadline = time.monotonic() + timeout
    seen: Any = None
    while time.monotonic() < deadline:
        value, seen = await probe()
        if value:
            return value
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last saw {seen!r}")


async def run_controllers(store: Store, namespace: str, stop: asyncio.Event) -> None:
    environment = KubernetesEnvironment()
    clusters = Informer(store, RAYCLUSTER, namespace=namespace)
    jobs = Informer(store, RAYJOB, namespace=namespace)
    pods = Informer(store, POD, namespace=namespace, label_selector="ray.io/is-ray-node=yes")
    cluster_controller = Controller(
        "raycluster", RayClusterReconciler(store=store, environment=environment, requeue_idle=5.0)
    )
    cluster_controller.watches(clusters)
    cluster_controller.owns(pods, owner_kind="RayCluster")
    job_controller = Controller("rayjob", RayJobReconciler(store=store, environment=environment))
    job_controller.watches(jobs)
    job_controller.owns(clusters, owner_kind="RayJob")
    await asyncio.gather(
        clusters.run(stop), jobs.run(stop), pods.run(stop), cluster_controller.run(stop), job_controller.run(stop)
    )


async def test_k8s_job_mode_rayjob_makes_its_cluster_submitter_job_and_head_service(
    k8s_control_plane: Any, ray_crds: Any, k8s_namespace: str, kwok_nodes: Any
) -> None:
    kwok_nodes(2)
    store = KubeStore.from_kubeconfig(Path(k8s_control_plane.kubeconfig))
    stop = asyncio.Event()
    runner = asyncio.create_task(run_controllers(store, k8s_namespace, stop))
    try:
        created = await store.create(RAYJOB, manifest(k8s_namespace))

        async def submitter() -> tuple[Obj | None, Any]:
            job = await store.get(RAYJOB, NAME, namespace=k8s_namespace)
            try:
                return await store.get(JOB, NAME, namespace=k8s_namespace), job.get("status")
            except NotFound:
                return None, job.get("status")

        batch_job = await wait_for(submitter, timeout=150, what="the submitter Job")
        job = await store.get(RAYJOB, NAME, namespace=k8s_namespace)
        status = job["status"]
        cluster_name = status["rayClusterName"]
        assert cluster_name.startswith(f"{NAME}-")
        assert status["jobId"].startswith(f"{NAME}-")
        assert status["dashboardURL"] == f"{cluster_name}-head-svc.{k8s_namespace}.svc.cluster.local:8265"

        cluster = await store.get(RAYCLUSTER, cluster_name, namespace=k8s_namespace)
        assert cluster["status"]["state"] == "ready"
        assert cluster["metadata"]["labels"]["ray.io/job-submission-mode"] == "K8sJobMode"
        assert cluster["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]

        assert batch_job["metadata"]["ownerReferences"][0] == {
            "apiVersion": "ray.io/v1",
            "kind": "RayJob",
            "name": NAME,
            "uid": created["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
        assert batch_job["metadata"]["labels"]["app.kubernetes.io/created-by"] == "kuberay-operator"
        spec = batch_job["spec"]
        assert spec["backoffLimit"] == 1, "submitterConfig.backoffLimit"
        pod_spec = spec["template"]["spec"]
        assert pod_spec["restartPolicy"] == "Never"
        container = pod_spec["containers"][0]
        assert (container["name"], container["image"]) == ("ray-job-submitter", IMAGE)
        assert container["command"] == ["/bin/bash", "-ce", "--"]
        address = f"http://{status['dashboardURL']}"
        assert f"ray job submit --address {address} --no-wait" in container["args"][0]
        assert container["args"][0].endswith(f"ray job logs --address {address} --follow {status['jobId']}")
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["RAY_JOB_SUBMISSION_ID"] == status["jobId"]
        assert env["RAY_DASHBOARD_ADDRESS"] == status["dashboardURL"]

        async def running_with_service() -> tuple[Any, Any]:
            job = await store.get(RAYJOB, NAME, namespace=k8s_namespace)
            st = job.get("status") or {}
            try:
                service = await store.get(SERVICE, f"{NAME}-head-svc", namespace=k8s_namespace)
            except NotFound:
                return None, st
            done = st.get("jobDeploymentStatus") == "Running" and st.get("jobStatusCheckFailureStartTime")
            return (service, st) if done else None, st

        service, final = await wait_for(running_with_service, timeout=60, what="Running with <rayjob>-head-svc")
        assert service["spec"]["selector"]["ray.io/cluster"] == cluster_name
        assert service["metadata"]["labels"]["ray.io/originated-from-crd"] == "RayJob"
        assert "jobStatus" not in final, "the dashboard never answered: jobStatus stays unset (omitted)"
        assert final.get("reason") is None
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(runner, timeout=30)
        await store.close()
