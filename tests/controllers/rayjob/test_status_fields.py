"""RayJob status fields as KubeRay writes them: Go's ``omitempty`` and when ``rayClusterStatus`` is copied.

KubeRay (v1.6.1 ``rayjob_controller.go``) copies its RayCluster's status into the RayJob while
Initializing with a cluster that is not ready yet, in Running only together with the Ray job's status
from the dashboard, and resets it (with ``rayJobInfo``) when a new attempt tears the cluster down.
``rayJobInfo`` and ``rayClusterStatus`` are structs, always written; ``jobStatus`` "" (NEW) is omitted.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from kray.api.v1.enums import JobStatus
from kray.api.v1.rayjob import RayJob
from kray.controllers.raycluster.status import kuberay_json as cluster_json
from kray.controllers.rayjob.plan import Observed, RayJobInfo, SubmitterState, kuberay_json, plan
from tests.controllers.rayjob.support import T0, initializing, job, running

EMPTY_CLUSTER_STATUS = {"desiredCPU": "0", "desiredMemory": "0", "desiredGPU": "0", "desiredTPU": "0", "head": {}}
PROVISIONING = {
    "desiredCPU": "2",
    "desiredMemory": "4Gi",
    "desiredGPU": "0",
    "desiredTPU": "0",
    "desiredWorkerReplicas": 1,
    "maxWorkerReplicas": 1,
    "minWorkerReplicas": 1,
    "head": {"podName": "demo-abcde-head-xyz12", "serviceName": "demo-abcde-head-svc"},
    "observedGeneration": 1,
}
READY = {**PROVISIONING, "state": "ready", "readyWorkerReplicas": 1, "availableWorkerReplicas": 1}


def observe(j: RayJob, *, at: float = 0, **kw: Any) -> Observed:
    kw.setdefault("job_service_target", "demo-abcde")
    return Observed(job=j, now=T0 + timedelta(seconds=at), random_suffix="abcde", **kw)


def test_a_new_rayjob_omits_the_new_job_status_and_writes_the_empty_structs() -> None:
    status = plan(observe(job(finalizers=False))).status
    assert "jobStatus" not in status, 'JobStatusNew is "", which omitempty leaves out'
    assert status["rayJobInfo"] == {}
    assert status["rayClusterStatus"] == EMPTY_CLUSTER_STATUS
    assert (status["succeeded"], status["failed"]) == (0, 0), "pointers: a 0 is written"


def test_initializing_copies_a_cluster_that_is_not_ready_on_each_pass() -> None:
    created = plan(observe(job(initializing())))
    assert created.status["rayClusterStatus"] == EMPTY_CLUSTER_STATUS, "the cluster made now has no status"
    first = plan(observe(job(initializing()), cluster_exists=True, cluster_status={}))
    assert first.status["rayClusterStatus"] == EMPTY_CLUSTER_STATUS
    later = plan(observe(job(first.status), cluster_exists=True, cluster_status=PROVISIONING))
    assert later.status["rayClusterStatus"] == PROVISIONING
    assert later.status["jobDeploymentStatus"] == "Initializing"


def test_a_ready_cluster_is_not_copied_when_the_job_starts_running() -> None:
    seen = initializing(rayClusterStatus=PROVISIONING)
    ready = plan(
        observe(job(seen), cluster_exists=True, cluster_ready=True, cluster_status=READY, dashboard_url="h:8265")
    )
    assert ready.status["jobDeploymentStatus"] == "Running"
    assert ready.status["rayClusterStatus"] == PROVISIONING, "KubeRay keeps the last copy taken while not ready"


def test_running_copies_the_cluster_only_with_the_ray_jobs_status() -> None:
    before = running(rayClusterStatus=PROVISIONING)
    silent = plan(observe(job(before), cluster_exists=True, cluster_status=READY, dashboard_error="refused"))
    assert silent.status["rayClusterStatus"] == PROVISIONING
    assert "jobStatus" not in silent.status
    missing = plan(observe(job(before), cluster_exists=True, cluster_status=READY, ray_job_missing=True))
    assert missing.status["rayClusterStatus"] == PROVISIONING, "a submission is not the Ray job's status"
    answered = plan(
        observe(
            job(before),
            cluster_exists=True,
            cluster_status=READY,
            ray_job=RayJobInfo(JobStatus.RUNNING, start_time_ms=1000),
        )
    )
    assert answered.status["rayClusterStatus"] == READY
    assert answered.status["jobStatus"] == "RUNNING"
    assert answered.status["rayJobInfo"] == {"startTime": "1970-01-01T00:00:01Z"}


def test_a_failed_submitter_ends_the_job_without_copying_the_cluster() -> None:
    before = running(rayClusterStatus=PROVISIONING)
    failed = SubmitterState(failed=True, reason="BackoffLimitExceeded", message="Job has reached the backoff limit")
    ended = plan(
        observe(job(before, submissionMode="K8sJobMode"), cluster_exists=True, cluster_status=READY, submitter=failed)
    )
    assert ended.status["jobDeploymentStatus"] == "Failed"
    assert ended.status["rayClusterStatus"] == PROVISIONING


def test_a_new_attempt_resets_the_cluster_status_and_the_ray_job_info() -> None:
    for state, then in (("Retrying", None), ("Suspending", "Suspended")):
        before = running(
            jobDeploymentStatus=state,
            jobStatus="FAILED",
            rayClusterStatus=READY,
            rayJobInfo={"startTime": "2026-11-25T12:00:00Z", "endTime": "2026-11-25T12:01:00Z"},
            failed=1,
        )
        reset = plan(observe(job(before, suspend=state == "Suspending"))).status
        assert reset.get("jobDeploymentStatus") == then
        assert reset["rayClusterStatus"] == EMPTY_CLUSTER_STATUS
        assert reset["rayJobInfo"] == {}
        assert "jobStatus" not in reset
        assert "rayClusterName" not in reset
        assert reset["failed"] == 1


def test_kuberay_json_is_idempotent_and_keeps_the_copy_in_kuberays_form() -> None:
    raw = {
        "jobStatus": "",
        "jobDeploymentStatus": "Running",
        "message": "",
        "succeeded": 0,
        "rayClusterStatus": {"readyWorkerReplicas": 0, "state": "", "desiredCPU": "1"},
        "rayJobInfo": {"startTime": None},
    }
    once = kuberay_json(raw)
    assert once == {
        "jobDeploymentStatus": "Running",
        "succeeded": 0,
        "rayClusterStatus": cluster_json({"desiredCPU": "1"}),
        "rayJobInfo": {},
    }
    assert kuberay_json(once) == once
