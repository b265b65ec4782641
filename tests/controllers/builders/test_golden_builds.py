"""Regression pin: head pod, worker pods and head Service of KubeRay samples, and RayJob submission objects.

These golden files are kray's own output (generated, then read by hand against KubeRay v1.7's behaviour,
reference §2.2-2.5, §3.2), so they only pin what kray already does: any change to a built object shows
up here, and ``KRAY_UPDATE_GOLDEN=1 pytest tests/controllers/builders`` rewrites them for review. They
are not the judge of correctness: ``test_golden_kuberay.py`` compares the same builders with what
KubeRay's own operator sent for these samples (``golden/kuberay/``, from ``hack/kuberay_goldens.py``).
They stay because they also pin the v1.7-only values that comparison can only accept, not check (the
``RAY_CLUSTER_NAMESPACE`` env var, HTTP probes, the ``authOptions`` sample).
"""

from __future__ import annotations

from typing import Any

import pytest

from kray.api.manifest import parse_object
from kray.api.v1 import RayCluster, RayJob
from kray.controllers.common import labels as keys
from kray.controllers.common.names import fqdn, head_service_name, rayjob_cluster_name, rayjob_job_id
from kray.controllers.common.pod import build_head_pod, build_worker_pod
from kray.controllers.common.service import build_head_service, build_owner_head_service
from kray.controllers.common.submitter import (
    build_sidecar_submitter_container,
    build_submitter_job,
    with_sidecar_submitter,
)
from tests.controllers.builders.support import NAMESPACE, UID, assert_golden, sample_cluster, sample_rayjob

CLUSTER_SAMPLES = [
    "ray-cluster.sample.yaml",
    "ray-cluster.complete.yaml",
    "ray-cluster.autoscaler.yaml",
    "ray-cluster.auth.yaml",
    "ray-cluster.overwrite-command.yaml",
    "ray-cluster.head-command.yaml",
]
CLUSTER_SUFFIX, JOB_SUFFIX = "b9q4r", "m2x7z"
RAYJOB_CLUSTER_UID = "00000000-0000-4000-8000-000000000002"


def cluster_children(cluster: RayCluster) -> dict[str, Any]:
    return {
        "headPod": build_head_pod(cluster=cluster),
        "workerPods": {
            group.group_name: build_worker_pod(cluster=cluster, group=group, replica_index=0)
            for group in cluster.spec.worker_group_specs or []
        },
        "headService": build_head_service(cluster=cluster),
    }


@pytest.mark.parametrize("sample", CLUSTER_SAMPLES)
def test_raycluster_sample(sample: str) -> None:
    assert_golden(sample.removesuffix(".yaml"), cluster_children(sample_cluster(sample)))


def rayjob_cluster(rayjob: RayJob, *, spec: Any = None) -> RayCluster:
    """The RayCluster a RayJob creates (``constructRayClusterForRayJob``), as the API server returns it."""
    name = rayjob_cluster_name(rayjob.metadata.name or "", CLUSTER_SUFFIX)
    labels = {
        **(rayjob.metadata.labels or {}),
        **keys.originated_from(kind="RayJob", name=rayjob.metadata.name or ""),
        keys.JOB_SUBMISSION_MODE: str(rayjob.spec.submission_mode),
    }
    cluster_spec = spec if spec is not None else rayjob.spec.ray_cluster_spec
    assert cluster_spec is not None
    doc = {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": name, "namespace": NAMESPACE, "uid": RAYJOB_CLUSTER_UID, "labels": labels},
        "spec": cluster_spec.to_dict(),
    }
    obj = parse_object(doc)
    assert isinstance(obj, RayCluster)
    return obj


def test_rayjob_k8s_job_mode_sample() -> None:
    rayjob = sample_rayjob("ray-job.sample.yaml")
    cluster = rayjob_cluster(rayjob)
    job_id = rayjob_job_id(rayjob.metadata.name or "", JOB_SUFFIX)
    dashboard = f"{fqdn(head_service_name(cluster.metadata.name or ''), NAMESPACE)}:8265"
    children = {
        "submitterJob": build_submitter_job(rayjob=rayjob, cluster=cluster, job_id=job_id, dashboard_url=dashboard),
        "headPod": build_head_pod(cluster=cluster),
        "rayjobHeadService": build_owner_head_service(
            owner_kind="RayJob", owner_name=rayjob.metadata.name or "", owner_uid=UID, cluster=cluster
        ),
    }
    assert children["submitterJob"]["metadata"]["ownerReferences"][0]["uid"] == UID
    assert_golden("ray-job.sample", children)


def test_rayjob_sidecar_mode_sample() -> None:
    rayjob = sample_rayjob("ray-job.sidecar-mode.yaml")
    spec = rayjob.spec.ray_cluster_spec
    assert spec is not None
    name = rayjob_cluster_name(rayjob.metadata.name or "", CLUSTER_SUFFIX)
    job_id = rayjob_job_id(rayjob.metadata.name or "", JOB_SUFFIX)
    sidecar = build_sidecar_submitter_container(rayjob=rayjob, cluster_spec=spec, cluster_name=name, job_id=job_id)
    cluster = rayjob_cluster(rayjob, spec=with_sidecar_submitter(cluster_spec=spec, container=sidecar))
    assert_golden("ray-job.sidecar-mode", {"headPod": build_head_pod(cluster=cluster)})
