"""Cleanup rules where KubeRay applies them, and the Kubernetes objects a RayJob reads and makes.

clusterSelector skips every deletion (DeleteSelf too); the legacy onSuccess/onFailure policies act
only for SUCCEEDED/FAILED. The submitter Job's conditions and the sidecar's container status become
the planner's SubmitterState; the dashboard URL honours a custom head Service name.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from kray.api.v1 import RayCluster, RayJob
from kray.controllers.common.service import build_head_service
from kray.controllers.environment import KubernetesEnvironment
from kray.controllers.rayjob.kube import sidecar_state, submitter_job_state
from kray.controllers.rayjob.plan import DeleteCluster, DeleteSelf, Observed, SubmitterState, plan
from tests.controllers.rayjob.support import T0, job, running

SAMPLES = Path("/work/shared/kuberay-samples")


def observe(j: RayJob, *, at: float = 0, **kw: Any) -> Observed:
    return Observed(job=j, now=T0 + timedelta(seconds=at), cluster_exists=True, **kw)


def done(job_status: str, deployment: str = "Complete") -> dict[str, Any]:
    failed = int(deployment == "Failed")
    return running(jobDeploymentStatus=deployment, jobStatus=job_status, endTime="2026-11-25T12:00:00Z", failed=failed)


def test_a_cluster_selector_job_deletes_nothing_not_even_itself() -> None:
    rules = {"deletionRules": [{"policy": "DeleteSelf", "condition": {"jobStatus": "SUCCEEDED", "ttlSeconds": 0}}]}
    selected = job(
        done("SUCCEEDED"), clusterSelector={"ray.io/cluster": "shared"}, rayClusterSpec=None, deletionStrategy=rules
    )
    result = plan(observe(selected, at=100))
    assert (result.actions, result.requeue_after) == ((), None)


@pytest.mark.parametrize(
    ("job_status", "deployment", "actions"),
    [
        ("SUCCEEDED", "Complete", (DeleteSelf(),)),
        ("FAILED", "Failed", (DeleteCluster("demo-abcde"),)),
        ("STOPPED", "Complete", ()),
        ("", "Failed", ()),
    ],
)
def test_legacy_policies_act_only_on_their_own_job_status(job_status: str, deployment: str, actions: tuple) -> None:
    legacy = {"onSuccess": {"policy": "DeleteSelf"}, "onFailure": {"policy": "DeleteCluster"}}
    result = plan(observe(job(done(job_status, deployment), deletionStrategy=legacy), at=10))
    assert result.actions == actions


def test_delete_workers_is_not_repeated_once_every_group_is_suspended() -> None:
    rules = {"deletionRules": [{"policy": "DeleteWorkers", "condition": {"jobStatus": "SUCCEEDED", "ttlSeconds": 0}}]}
    result = plan(observe(job(done("SUCCEEDED"), deletionStrategy=rules), at=5, workers_suspended=True))
    assert (result.actions, result.requeue_after) == ((), None)


def test_submitter_job_conditions() -> None:
    running_job: dict[str, Any] = {"status": {"active": 1}}
    assert submitter_job_state(running_job) == SubmitterState()
    complete = {
        "status": {
            "conditions": [
                {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": "2026-11-25T12:00:01Z"},
                {"type": "Complete", "status": "True", "lastTransitionTime": "2026-11-25T12:00:02Z"},
            ]
        }
    }
    assert submitter_job_state(complete) == SubmitterState(finished_at=T0 + timedelta(seconds=2))
    failed = {
        "status": {
            "conditions": [
                {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded"},
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit",
                    "lastTransitionTime": "2026-11-25T12:00:03Z",
                },
            ]
        }
    }
    state = submitter_job_state(failed)
    assert (state.failed, state.reason, state.finished_at) == (True, "BackoffLimitExceeded", T0 + timedelta(seconds=3))


def head_pod(*statuses: dict[str, Any]) -> dict[str, Any]:
    return {"status": {"containerStatuses": list(statuses)}}


def test_sidecar_container_status() -> None:
    assert sidecar_state([]) == SubmitterState(head_pod_found=False)
    assert sidecar_state([head_pod(), head_pod()]) is None, "two heads: KubeRay retries"
    alive = {"name": "ray-job-submitter", "state": {"running": {}}}
    assert sidecar_state([head_pod({"name": "ray-head", "state": {}}, alive)]) == SubmitterState()
    exited = {
        "name": "ray-job-submitter",
        "state": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": "2026-11-25T12:00:04Z"}},
    }
    state = sidecar_state([head_pod(exited)])
    assert state == SubmitterState(failed=True, reason="Error", exit_code=1, finished_at=T0 + timedelta(seconds=4))


def test_dashboard_url_uses_the_custom_head_service_name() -> None:
    docs = yaml.safe_load_all((SAMPLES / "ray-job.custom-head-svc.yaml").read_text())
    manifest = next(d for d in docs if d and d.get("kind") == "RayJob")
    cluster = RayCluster.model_validate(
        {
            "metadata": {"name": "rayjob-sample-abcde", "namespace": "ns", "uid": "u"},
            "spec": manifest["spec"]["rayClusterSpec"],
        }
    )
    service = build_head_service(cluster=cluster)
    assert service["metadata"]["name"] == "custom-ray-head-service-name"
    environment = KubernetesEnvironment()
    address = environment.dashboard_address(cluster=cluster, head_service=service)
    assert address == "custom-ray-head-service-name.ns.svc.cluster.local:8265"
    assert environment.dashboard_address(cluster=cluster, head_service=None) is None, "KubeRay waits for the Service"
    no_port = {**service, "spec": {**service["spec"], "ports": [{"name": "gcs-server", "port": 6379}]}}
    assert environment.dashboard_address(cluster=cluster, head_service=no_port) is None
