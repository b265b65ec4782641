"""The RayJob state machine (reference §3.1, conformance items 13 and 15), transition by transition."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from kray.api.v1.enums import JobStatus
from kray.api.v1.rayjob import RayJob
from kray.controllers.rayjob.plan import (
    AddFinalizer,
    CreateCluster,
    DeleteCluster,
    DeleteSelf,
    Observed,
    RayJobInfo,
    RemoveFinalizer,
    StopJob,
    SubmitJob,
    SuspendWorkers,
    plan,
)
from tests.controllers.rayjob.support import T0, job, running


def observe(j: RayJob, *, at: float = 0, **kw: Any) -> Observed:
    kw.setdefault("job_service_target", "demo-abcde")  # <rayjob>-head-svc already points at the cluster
    return Observed(job=j, now=T0 + timedelta(seconds=at), random_suffix="abcde", **kw)


def test_new_gets_a_finalizer_ids_and_a_start_time() -> None:
    result = plan(observe(job(finalizers=False)))
    assert result.actions == (AddFinalizer(),)
    assert result.status["jobDeploymentStatus"] == "Initializing"
    assert result.status["jobId"] == "demo-abcde"
    assert result.status["rayClusterName"] == "demo-abcde"
    assert result.status["startTime"] == "2026-11-25T12:00:00Z"


def test_spec_job_id_and_cluster_selector_name_win() -> None:
    result = plan(observe(job(jobId="fixed", clusterSelector={"ray.io/cluster": "shared"}, rayClusterSpec=None)))
    assert (result.status["jobId"], result.status["rayClusterName"]) == ("fixed", "shared")


def test_interactive_mode_has_no_job_id_until_the_user_sets_one() -> None:
    result = plan(observe(job(submissionMode="InteractiveMode")))
    assert "jobId" not in result.status


def test_initializing_creates_the_cluster_then_waits_until_ready() -> None:
    init = {**running(), "jobDeploymentStatus": "Initializing"}
    assert plan(observe(job(init))).actions == (CreateCluster("demo-abcde"),)
    waiting = plan(observe(job(init), cluster_exists=True))
    assert waiting.actions == ()
    assert waiting.status["jobDeploymentStatus"] == "Initializing"
    ready = plan(observe(job(init), cluster_exists=True, cluster_ready=True, dashboard_url="127.0.0.1:8265"))
    assert ready.status["jobDeploymentStatus"] == "Running"
    assert ready.status["dashboardURL"] == "127.0.0.1:8265"


def test_running_submits_only_after_the_dashboard_says_not_found() -> None:
    assert plan(observe(job(running()), cluster_exists=True, ray_job_missing=True)).actions == (
        SubmitJob("demo-abcde"),
    )
    pending = plan(observe(job(running()), cluster_exists=True, ray_job=RayJobInfo(JobStatus.PENDING)))
    assert pending.actions == ()
    assert pending.status["jobStatus"] == "PENDING"


@pytest.mark.parametrize(
    ("ray_status", "deployment", "reason", "counter"),
    [
        (JobStatus.SUCCEEDED, "Complete", None, "succeeded"),
        (JobStatus.FAILED, "Failed", "AppFailed", "failed"),
        (JobStatus.STOPPED, "Complete", None, None),
    ],
)
def test_a_terminal_ray_job_ends_the_rayjob(
    ray_status: JobStatus, deployment: str, reason: str | None, counter: str | None
) -> None:
    result = plan(
        observe(job(running()), at=30, cluster_exists=True, ray_job=RayJobInfo(ray_status, "done", 1000, 2000))
    )
    assert result.status["jobDeploymentStatus"] == deployment
    assert result.status.get("reason") == reason
    assert (result.status["succeeded"], result.status["failed"]) == (
        int(counter == "succeeded"),
        int(counter == "failed"),
    ), "KubeRay counts a STOPPED job neither succeeded nor failed"
    assert result.status["endTime"] == "2026-11-25T12:00:30Z"
    assert result.status["rayJobInfo"] == {"startTime": "1970-01-01T00:00:01Z", "endTime": "1970-01-01T00:00:02Z"}


def test_active_deadline_fails_the_job_and_stops_the_ray_job() -> None:
    result = plan(observe(job(running(), activeDeadlineSeconds=10), at=11, cluster_exists=True))
    assert result.status["reason"] == "DeadlineExceeded"
    assert result.actions == (StopJob("demo-abcde"),)


def test_pre_running_deadline_fails_a_job_stuck_initializing() -> None:
    init = {**running(), "jobDeploymentStatus": "Initializing"}
    result = plan(observe(job(init, preRunningDeadlineSeconds=60), at=61, cluster_exists=True))
    assert result.status["reason"] == "PreRunningDeadlineExceeded"


def test_an_unreachable_dashboard_fails_the_job_after_the_status_check_timeout() -> None:
    first = plan(observe(job(running()), cluster_exists=True, dashboard_error="refused"))
    assert first.status["jobDeploymentStatus"] == "Running"
    assert first.status["jobStatusCheckFailureStartTime"] == "2026-11-25T12:00:00Z"
    later = plan(observe(job(first.status), at=301, cluster_exists=True, dashboard_error="refused"))
    assert later.status["reason"] == "JobStatusCheckTimeoutExceeded"


@pytest.mark.parametrize(("failed", "limit", "retry"), [(1, 1, True), (2, 1, False), (1, 0, False)])
def test_failures_retry_while_failed_is_within_backoff_limit(failed: int, limit: int, retry: bool) -> None:
    status = running(jobDeploymentStatus="Failed", reason="AppFailed", failed=failed, endTime="2026-11-25T12:00:00Z")
    result = plan(observe(job(status, backoffLimit=limit), cluster_exists=True))
    assert (result.status["jobDeploymentStatus"] == "Retrying") is retry


def test_deadline_failures_never_retry() -> None:
    status = running(jobDeploymentStatus="Failed", reason="DeadlineExceeded", failed=1, endTime="2026-11-25T12:00:00Z")
    assert plan(observe(job(status, backoffLimit=3))).status["jobDeploymentStatus"] == "Failed"


def test_retrying_deletes_the_cluster_then_starts_over_with_new_ids() -> None:
    status = running(jobDeploymentStatus="Retrying", failed=1)
    assert plan(observe(job(status), cluster_exists=True)).actions == (DeleteCluster("demo-abcde"),)
    reset = plan(observe(job(status), cluster_exists=False))
    assert "jobDeploymentStatus" not in reset.status, 'New is "", which KubeRay\'s omitempty leaves out'
    assert reset.status["failed"] == 1
    fresh = plan(Observed(job=job(reset.status), now=T0, random_suffix="fghij"))
    assert fresh.status["jobId"] == "demo-fghij"


def test_suspend_from_running_tears_down_and_resume_starts_over() -> None:
    suspending = plan(observe(job(running(), suspend=True, shutdownAfterJobFinishes=True), cluster_exists=True))
    assert suspending.status["jobDeploymentStatus"] == "Suspending"
    gone = plan(observe(job(suspending.status, suspend=True, shutdownAfterJobFinishes=True)))
    assert gone.status["jobDeploymentStatus"] == "Suspended"
    resumed = plan(observe(job(gone.status, suspend=False, shutdownAfterJobFinishes=True)))
    assert "jobDeploymentStatus" not in resumed.status


def test_shutdown_after_finish_deletes_the_cluster_after_the_ttl() -> None:
    done = running(jobDeploymentStatus="Complete", jobStatus="SUCCEEDED", endTime="2026-11-25T12:00:00Z")
    early = plan(
        observe(job(done, shutdownAfterJobFinishes=True, ttlSecondsAfterFinished=60), at=10, cluster_exists=True)
    )
    assert early.actions == ()
    assert early.requeue_after == pytest.approx(52), "due time + KubeRay's 2 s margin"
    due = plan(
        observe(job(done, shutdownAfterJobFinishes=True, ttlSecondsAfterFinished=60), at=60, cluster_exists=True)
    )
    assert due.actions == (DeleteCluster("demo-abcde"),)


def test_deletion_rules_run_the_most_impactful_overdue_policy() -> None:
    done = running(jobDeploymentStatus="Complete", jobStatus="SUCCEEDED", endTime="2026-11-25T12:00:00Z")
    rules = {
        "deletionRules": [
            {"policy": "DeleteWorkers", "condition": {"jobStatus": "SUCCEEDED", "ttlSeconds": 0}},
            {"policy": "DeleteCluster", "condition": {"jobStatus": "SUCCEEDED", "ttlSeconds": 10}},
            {"policy": "DeleteSelf", "condition": {"jobStatus": "SUCCEEDED", "ttlSeconds": 100}},
        ]
    }
    assert plan(observe(job(done, deletionStrategy=rules), at=5, cluster_exists=True)).actions == (
        SuspendWorkers("demo-abcde"),
    )
    assert plan(observe(job(done, deletionStrategy=rules), at=20, cluster_exists=True)).actions == (
        DeleteCluster("demo-abcde"),
    )
    assert plan(observe(job(done, deletionStrategy=rules), at=200, cluster_exists=True)).actions == (DeleteSelf(),)


def test_a_cluster_selector_job_never_deletes_the_cluster() -> None:
    done = running(jobDeploymentStatus="Complete", jobStatus="SUCCEEDED", endTime="2026-11-25T12:00:00Z")
    selected = job(
        done, clusterSelector={"ray.io/cluster": "shared"}, rayClusterSpec=None, shutdownAfterJobFinishes=True
    )
    assert plan(observe(selected, at=100, cluster_exists=True)).actions == ()


def test_deleting_a_running_job_stops_it_and_removes_the_finalizer() -> None:
    result = plan(observe(job(running(jobStatus="RUNNING"), deleting=True), cluster_exists=True))
    assert result.actions == (StopJob("demo-abcde"), RemoveFinalizer())
    finished = plan(observe(job(running(jobStatus="SUCCEEDED"), deleting=True), cluster_exists=True))
    assert finished.actions == (RemoveFinalizer(),)


def test_validation_failed_is_terminal() -> None:
    result = plan(observe(job({"jobDeploymentStatus": "ValidationFailed"})))
    assert result.actions == ()
    assert result.requeue_after is None
