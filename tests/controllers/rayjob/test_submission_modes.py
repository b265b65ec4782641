"""Submission modes on Kubernetes (KubeRay v1.7) and in local mode, in the pure planner.

K8sJobMode: a submitter batch Job is created when the cluster is ready, and the RayJob ends only once
the Ray job is terminal and that Job finished. SidecarMode: the head pod's submitter container plays
the same part. Locally (``submits_over_http``) both are plain HTTPMode: same plan, same outcome.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from kray.api.v1.enums import JobStatus
from kray.api.v1.rayjob import RayJob
from kray.controllers.rayjob.plan import (
    CreateCluster,
    CreateSubmitter,
    DeleteCluster,
    DeleteSubmitter,
    EnsureJobService,
    Observed,
    RayJobInfo,
    SubmitJob,
    SubmitterState,
    kuberay_json,
    plan,
)
from tests.controllers.rayjob.support import T0, initializing, job, running

DASHBOARD = "demo-abcde-head-svc.default.svc.cluster.local:8265"


def observe(j: RayJob, *, at: float = 0, **kw: Any) -> Observed:
    kw.setdefault("job_service_target", "demo-abcde")
    kw.setdefault("cluster_exists", True)
    return Observed(job=j, now=T0 + timedelta(seconds=at), random_suffix="abcde", **kw)


def k8s_job(status: dict[str, Any], **spec: Any) -> RayJob:
    return job(status, submissionMode="K8sJobMode", **spec)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_k8s_job_mode_creates_the_submitter_job_once_the_cluster_is_ready() -> None:
    not_ready = plan(observe(k8s_job(initializing())))
    assert not_ready.actions == ()
    ready = plan(observe(k8s_job(initializing()), cluster_ready=True, dashboard_url=DASHBOARD))
    assert ready.actions == (CreateSubmitter(job_id="demo-abcde", dashboard_url=DASHBOARD),)
    assert ready.status["jobDeploymentStatus"] == "Running"
    assert ready.status["dashboardURL"] == DASHBOARD
    again = plan(
        observe(k8s_job(initializing()), cluster_ready=True, dashboard_url=DASHBOARD, submitter_job_exists=True)
    )
    assert again.actions == ()


def test_a_ready_cluster_without_a_dashboard_url_keeps_the_job_initializing() -> None:
    result = plan(observe(job(initializing()), cluster_ready=True, dashboard_url=None))
    assert result.status["jobDeploymentStatus"] == "Initializing"


def test_local_mode_never_creates_a_submitter() -> None:
    result = plan(observe(k8s_job(initializing()), cluster_ready=True, dashboard_url=DASHBOARD, submits_over_http=True))
    assert result.actions == ()
    assert result.status["jobDeploymentStatus"] == "Running"
    missing = plan(observe(k8s_job(running()), ray_job_missing=True, submits_over_http=True))
    assert missing.actions == (SubmitJob("demo-abcde"),)


def test_a_failed_submitter_job_fails_the_rayjob_with_submission_failed() -> None:
    failed = SubmitterState(
        failed=True,
        reason="BackoffLimitExceeded",
        message="Job has reached the specified backoff limit",
        finished_at=T0,
    )
    result = plan(observe(k8s_job(running()), at=5, submitter=failed))
    assert result.status["jobDeploymentStatus"] == "Failed"
    assert result.status["reason"] == "SubmissionFailed"
    assert result.status["message"] == (
        "Job submission has failed. Reason: BackoffLimitExceeded. Message: Job has reached the specified backoff limit"
    )
    assert result.status["failed"] == 1


def test_a_failed_submitter_after_a_failed_ray_job_is_app_failed_and_keeps_rays_message() -> None:
    failed = SubmitterState(failed=True, reason="BackoffLimitExceeded", finished_at=T0)
    result = plan(observe(k8s_job(running(jobStatus="FAILED", message="Traceback: boom")), at=5, submitter=failed))
    assert (result.status["reason"], result.status["message"]) == ("AppFailed", "Traceback: boom")


def test_the_rayjob_ends_only_when_ray_job_and_submitter_are_both_done() -> None:
    done = RayJobInfo(JobStatus.SUCCEEDED, "", 1000, 2000)
    still = plan(observe(k8s_job(running()), submitter=SubmitterState(), ray_job=done))
    assert still.status["jobDeploymentStatus"] == "Running"
    assert still.status["jobStatus"] == "SUCCEEDED"
    finished = plan(observe(k8s_job(running()), at=10, submitter=SubmitterState(finished_at=at(5)), ray_job=done))
    assert finished.status["jobDeploymentStatus"] == "Complete"
    assert finished.status["succeeded"] == 1


def test_a_submitter_finished_30_s_ago_without_a_terminal_ray_job_fails_the_rayjob() -> None:
    submitter = SubmitterState(finished_at=T0)
    pending = RayJobInfo(JobStatus.RUNNING)
    within = plan(observe(k8s_job(running()), at=29, submitter=submitter, ray_job=pending))
    assert within.status["jobDeploymentStatus"] == "Running"
    late = plan(observe(k8s_job(running()), at=30, submitter=submitter, ray_job=pending))
    assert late.status["jobDeploymentStatus"] == "Failed"
    assert late.status["jobStatus"] == "FAILED"
    assert late.status["reason"] == "JobDeploymentStatusTransitionGracePeriodExceeded"
    assert late.status["message"] == (
        "The RayJob submitter finished at 2026-11-25 12:00:00 but the ray job did not reach terminal state within 30s"
    )


def test_a_terminal_job_status_left_running_past_the_grace_period_ends_the_rayjob() -> None:
    status = running(jobStatus="SUCCEEDED", rayJobInfo={"endTime": "2026-11-25T12:00:00Z"})
    assert plan(observe(k8s_job(status), at=299, submitter=SubmitterState())).status["jobDeploymentStatus"] == "Running"
    late = plan(observe(k8s_job(status), at=300, submitter=SubmitterState()))
    assert late.status["jobDeploymentStatus"] == "Complete"
    assert late.status["reason"] == "JobDeploymentStatusTransitionGracePeriodExceeded"
    failed = running(jobStatus="FAILED", rayJobInfo={"endTime": "2026-11-25T12:00:00Z"})
    assert plan(observe(k8s_job(failed), at=300)).status["jobDeploymentStatus"] == "Failed"


def test_a_missing_submitter_job_keeps_the_rayjob_running() -> None:
    result = plan(observe(k8s_job(running()), submitter=None, ray_job=RayJobInfo(JobStatus.SUCCEEDED)))
    assert result.status == kuberay_json(job(running()).status.to_dict())  # type: ignore[union-attr]
    assert result.actions == ()


def test_a_ray_job_not_found_after_the_submitter_finished_is_app_failed() -> None:
    waiting = plan(observe(k8s_job(running()), submitter=SubmitterState(), ray_job_missing=True))
    assert (waiting.actions, waiting.status["jobDeploymentStatus"]) == ((), "Running")
    result = plan(observe(k8s_job(running()), at=5, submitter=SubmitterState(finished_at=T0), ray_job_missing=True))
    assert result.status["reason"] == "AppFailed"
    assert result.status["message"] == "Submitter completed but Ray job not found in RayCluster."


def test_sidecar_mode_head_pod_gone_or_submitter_exit_code_fails_the_rayjob() -> None:
    sidecar = job(running(), submissionMode="SidecarMode")
    gone = plan(observe(sidecar, submitter=SubmitterState(head_pod_found=False)))
    assert (gone.status["reason"], gone.status["message"]) == ("AppFailed", "Ray head pod not found.")
    crashed = SubmitterState(failed=True, exit_code=1, reason="Error", finished_at=T0)
    failed = plan(observe(sidecar, at=1, submitter=crashed))
    assert failed.status["reason"] == "SubmissionFailed"
    assert failed.status["message"] == "Ray head pod container ray-job-submitter terminated with exit code 1: Error"
    ok = SubmitterState(exit_code=0, reason="Completed", finished_at=T0)
    done = plan(observe(sidecar, at=1, submitter=ok, ray_job=RayJobInfo(JobStatus.SUCCEEDED)))
    assert done.status["jobDeploymentStatus"] == "Complete"


def test_suspending_and_retrying_delete_the_submitter_job_and_wait_for_it() -> None:
    for state in ("Suspending", "Retrying"):
        status = running(jobDeploymentStatus=state)
        both = plan(observe(k8s_job(status, suspend=state == "Suspending"), submitter_job_exists=True))
        assert both.actions == (DeleteCluster("demo-abcde"), DeleteSubmitter())
        waiting = plan(observe(k8s_job(status), cluster_exists=False, submitter_job_exists=True))
        assert waiting.actions == (DeleteSubmitter(),)
        assert waiting.status["jobDeploymentStatus"] == state
        done = plan(observe(k8s_job(status), cluster_exists=False))
        assert done.status.get("jobDeploymentStatus", "") in ("Suspended", "")


def test_the_rayjob_head_service_follows_the_jobs_cluster() -> None:
    assert plan(observe(job(running()), job_service_target=None)).actions == (
        EnsureJobService("demo-abcde", update=False),
    )
    assert plan(observe(job(running()), job_service_target="demo-old")).actions == (
        EnsureJobService("demo-abcde", update=True),
    )
    assert plan(observe(job(running()))).actions == ()
    selected = job(running(rayClusterName="shared"), clusterSelector={"ray.io/cluster": "shared"}, rayClusterSpec=None)
    assert plan(observe(selected, job_service_target=None)).actions == (), "KubeRay: no head Service with a selector"
    assert plan(observe(job(running()), job_service_target=None, manages_job_service=False)).actions == ()


def test_a_cluster_deleted_while_running_is_created_again() -> None:
    result = plan(observe(job(running()), cluster_exists=False))
    assert result.actions == (CreateCluster("demo-abcde"),)
    assert result.status["jobDeploymentStatus"] == "Running"
    assert result.events == (("Normal", "CreatedRayCluster", "Created RayCluster default/demo-abcde"),)
    selected = job(running(rayClusterName="shared"), clusterSelector={"ray.io/cluster": "shared"}, rayClusterSpec=None)
    waits = plan(observe(selected, cluster_exists=False))
    assert waits.actions == ()
    assert waits.events[0][1] == "RayClusterNotFound"


STATUSES = st.sampled_from(["Initializing", "Running", "Suspending", "Retrying", "Complete", "Failed"])
RAY = st.sampled_from(list(JobStatus))


@given(
    deployment=STATUSES,
    ray=st.one_of(st.none(), RAY),
    missing=st.booleans(),
    ready=st.booleans(),
    exists=st.booleans(),
    mode=st.sampled_from(["K8sJobMode", "SidecarMode"]),
)
def test_locally_every_mode_plans_exactly_as_http_mode(
    deployment: str, ray: JobStatus | None, missing: bool, ready: bool, exists: bool, mode: str
) -> None:
    status = running(jobDeploymentStatus=deployment, jobStatus="", endTime="2026-11-25T12:00:00Z")
    seen: dict[str, Any] = {
        "at": 10,
        "cluster_exists": exists,
        "cluster_ready": ready,
        "dashboard_url": DASHBOARD,
        "ray_job": RayJobInfo(ray) if ray is not None else None,
        "ray_job_missing": missing and ray is None,
        "submits_over_http": True,
        "manages_job_service": False,
    }
    assert plan(observe(job(status, submissionMode=mode), **seen)) == plan(observe(job(status), **seen))


@given(ray=RAY, finished=st.one_of(st.none(), st.floats(min_value=0, max_value=29)))
def test_k8s_job_mode_is_terminal_iff_the_ray_job_is_terminal_and_the_submitter_finished(
    ray: JobStatus, finished: float | None
) -> None:
    submitter = SubmitterState(finished_at=None if finished is None else at(30 - finished))
    result = plan(observe(k8s_job(running()), at=30, submitter=submitter, ray_job=RayJobInfo(ray)))
    terminal = result.status["jobDeploymentStatus"] in ("Complete", "Failed")
    assert terminal == (ray.is_terminal() and finished is not None)
    if terminal:
        assert (result.status["jobDeploymentStatus"] == "Failed") == (ray is JobStatus.FAILED)
