"""The ``Running`` state: follow the Ray job (and, on Kubernetes, its submitter) until both are done.

KubeRay's order of checks is kept, because each one may end the reconcile: suspend, activeDeadline,
the deployment-status grace period, the cluster (re-created when it vanished), ``<rayjob>-head-svc``,
the submitter (K8sJobMode's Job, SidecarMode's container), then the dashboard. With a submitter the
RayJob is terminal only once the Ray job is terminal *and* the submitter finished, so the driver's
logs are complete before anything is cleaned up; a submitter that finished 30 s ago without a
terminal Ray job fails the RayJob.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kray.api.v1.enums import JobDeploymentStatus, JobFailedReason, JobStatus, JobSubmissionMode
from kray.controllers.rayjob.plan.model import (
    SUBMITTER_FINISHED_TIMEOUT,
    Action,
    CreateCluster,
    EnsureJobService,
    JobPlan,
    Observed,
    StopJob,
    SubmitJob,
    SubmitterState,
    go_datetime,
    parse_time,
    rfc3339,
)
from kray.controllers.rayjob.plan.outcome import active_deadline_exceeded, active_deadline_message, fail, finish

GRACE_PERIOD_MESSAGE = (
    "JobDeploymentStatus does not transition to Complete or Failed within the grace period "
    "after JobStatus reaches a terminal state."
)
NOT_FOUND_AFTER_SUBMITTER = "Submitter completed but Ray job not found in RayCluster."
HEAD_POD_NOT_FOUND = "Ray head pod not found."


def running(observed: Observed, status: dict[str, Any]) -> JobPlan:
    spec = observed.job.spec
    if spec.suspend:
        return JobPlan(
            status={**status, "jobDeploymentStatus": JobDeploymentStatus.SUSPENDING.value}, requeue_after=0.0
        )
    if active_deadline_exceeded(observed, status):
        job_id = status.get("jobId")
        deadline = fail(
            observed, status, reason=JobFailedReason.DEADLINE_EXCEEDED, message=active_deadline_message(observed)
        )
        # kray also stops the Ray job (KubeRay leaves it to the cleanup policy).
        stop = (StopJob(job_id),) if job_id else ()
        return JobPlan(status=deadline.status, actions=stop, requeue_after=0.0, events=deadline.events)
    grace = _transition_grace_period_exceeded(observed, status)
    if grace is not None:
        return grace
    new = dict(status)
    if not observed.cluster_exists:
        return _cluster_gone(observed, new)
    actions = _job_service(observed, status)
    mode = observed.mode()
    finished_at: datetime | None = None
    if mode in (JobSubmissionMode.K8S_JOB, JobSubmissionMode.SIDECAR):
        submitter = observed.submitter
        if submitter is None:  # K8sJobMode: the Job is not there (yet); KubeRay retries until it is
            return JobPlan(status=new, actions=actions)
        ended: JobPlan | None = _submitter_outcome(observed, new, submitter, mode)
        finished_at = submitter.finished_at if submitter.head_pod_found else None
        if finished_at is not None and observed.now >= finished_at + timedelta(seconds=SUBMITTER_FINISHED_TIMEOUT):
            message = (
                f"The RayJob submitter finished at {go_datetime(finished_at)} "
                f"but the ray job did not reach terminal state within {SUBMITTER_FINISHED_TIMEOUT:.0f}s"
            )
            ended = fail(
                observed,
                {**new, "jobStatus": JobStatus.FAILED.value},
                reason=JobFailedReason.JOB_DEPLOYMENT_STATUS_TRANSITION_GRACE_PERIOD_EXCEEDED,
                message=message,
            )
        if ended is not None:
            return JobPlan(status=ended.status, actions=actions, requeue_after=0.0, events=ended.events)
    return _follow_ray_job(observed, new, actions=actions, mode=mode, finished_at=finished_at)


def _transition_grace_period_exceeded(observed: Observed, status: dict[str, Any]) -> JobPlan | None:
    """A terminal Ray job left in Running too long (its ``rayJobInfo.endTime`` + the grace period) ends it."""
    ray_status = JobStatus(status.get("jobStatus", ""))
    ended = parse_time((status.get("rayJobInfo") or {}).get("endTime"))
    if not ray_status.is_terminal() or ended is None:
        return None
    if observed.now < ended + timedelta(seconds=observed.settings.transition_grace_period):
        return None
    failed = ray_status is JobStatus.FAILED
    return finish(
        observed,
        status,
        deployment=JobDeploymentStatus.FAILED if failed else JobDeploymentStatus.COMPLETE,
        reason=JobFailedReason.JOB_DEPLOYMENT_STATUS_TRANSITION_GRACE_PERIOD_EXCEEDED,
        message=GRACE_PERIOD_MESSAGE,
    )


def _cluster_gone(observed: Observed, status: dict[str, Any]) -> JobPlan:
    """KubeRay's get-or-create: a vanished cluster is made again (a selected one must come back by itself)."""
    namespace = observed.job.metadata.namespace or "default"
    name = status.get("rayClusterName", "")
    if observed.job.spec.cluster_selector:
        message = f"RayCluster {namespace}/{name} set in the clusterSelector is not found. It must be created manually"
        return JobPlan(status=status, events=(("Warning", "RayClusterNotFound", message),))
    return JobPlan(
        status=status,
        actions=(CreateCluster(name),),
        events=(("Normal", "CreatedRayCluster", f"Created RayCluster {namespace}/{name}"),),
    )


def _job_service(observed: Observed, status: dict[str, Any]) -> tuple[Action, ...]:
    """``<rayjob>-head-svc`` follows the job's own cluster; a clusterSelector job has none (KubeRay)."""
    if not observed.manages_job_service or observed.job.spec.cluster_selector:
        return ()
    cluster = status.get("rayClusterName", "")
    if observed.job_service_target == cluster:
        return ()
    return (EnsureJobService(cluster, update=observed.job_service_target is not None),)


def _submitter_outcome(
    observed: Observed, status: dict[str, Any], submitter: SubmitterState, mode: JobSubmissionMode
) -> JobPlan | None:
    """The Failed plan a failed submitter (or a vanished SidecarMode head) calls for, else None."""
    if mode is JobSubmissionMode.SIDECAR and not submitter.head_pod_found:
        return fail(observed, status, reason=JobFailedReason.APP_FAILED, message=HEAD_POD_NOT_FOUND)
    if not submitter.failed:
        return None
    if status.get("jobStatus") == JobStatus.FAILED.value:  # the user's code failed; its message is already there
        return finish(
            observed,
            status,
            deployment=JobDeploymentStatus.FAILED,
            reason=JobFailedReason.APP_FAILED,
            message=None,
            event=("Warning", JobFailedReason.APP_FAILED.value, status.get("message") or "the Ray job failed"),
        )
    if mode is JobSubmissionMode.SIDECAR:
        message = (
            f"Ray head pod container {submitter.container} terminated with exit code "
            f"{submitter.exit_code}: {submitter.reason}"
        )
    else:
        message = f"Job submission has failed. Reason: {submitter.reason}. Message: {submitter.message}"
    return fail(observed, status, reason=JobFailedReason.SUBMISSION_FAILED, message=message)


def _follow_ray_job(
    observed: Observed,
    status: dict[str, Any],
    *,
    actions: tuple[Action, ...],
    mode: JobSubmissionMode,
    finished_at: datetime | None,
) -> JobPlan:
    job_id = str(status.get("jobId", ""))
    if observed.dashboard_error is not None:
        first = parse_time(status.get("jobStatusCheckFailureStartTime")) or observed.now
        status["jobStatusCheckFailureStartTime"] = rfc3339(first)
        if (observed.now - first).total_seconds() >= observed.settings.status_check_timeout:
            timeout = observed.settings.status_check_timeout
            ended = fail(
                observed,
                status,
                reason=JobFailedReason.JOB_STATUS_CHECK_TIMEOUT_EXCEEDED,
                message=f"Failed to get the Ray job status for over {timeout:.0f} s: {observed.dashboard_error}",
            )
            return JobPlan(status=ended.status, actions=actions, requeue_after=0.0, events=ended.events)
        return JobPlan(status=status, actions=actions)
    status.pop("jobStatusCheckFailureStartTime", None)
    if observed.ray_job_missing:
        if mode is JobSubmissionMode.HTTP:
            return JobPlan(
                status=status,
                actions=(*actions, SubmitJob(job_id)),
                events=(("Normal", "SubmittedRayJob", f"Submitted Ray job {job_id}"),),
            )
        if finished_at is not None:
            ended = fail(observed, status, reason=JobFailedReason.APP_FAILED, message=NOT_FOUND_AFTER_SUBMITTER)
            return JobPlan(status=ended.status, actions=actions, requeue_after=0.0, events=ended.events)
        return JobPlan(status=status, actions=actions)  # the submitter has not submitted it yet
    info = observed.ray_job
    if info is None:
        return JobPlan(status=status, actions=actions)
    # KubeRay copies the cluster's status only together with the Ray job's (each time the dashboard answers).
    status["rayClusterStatus"] = observed.cluster_status or {}
    status["jobStatus"] = info.status.value
    times = dict(status.get("rayJobInfo") or {})
    if info.start_time_ms:
        times["startTime"] = rfc3339(datetime.fromtimestamp(info.start_time_ms / 1000, tz=UTC))
    if info.end_time_ms:
        times["endTime"] = rfc3339(datetime.fromtimestamp(info.end_time_ms / 1000, tz=UTC))
    if times:
        status["rayJobInfo"] = times
    terminal = info.status.is_terminal()
    if mode in (JobSubmissionMode.K8S_JOB, JobSubmissionMode.SIDECAR):
        terminal = terminal and finished_at is not None
    if not terminal:
        status.pop("reason", None)
        if info.message:
            status["message"] = info.message
        else:
            status.pop("message", None)
        return JobPlan(status=status, actions=actions)
    if info.status is JobStatus.FAILED:
        event = ("Warning", JobFailedReason.APP_FAILED.value, info.message or f"Ray job {job_id} failed")
        ended = finish(
            observed,
            status,
            deployment=JobDeploymentStatus.FAILED,
            reason=JobFailedReason.APP_FAILED,
            message=info.message,
            event=event,
        )
    else:  # SUCCEEDED, and STOPPED too: KubeRay's Complete is any terminal Ray job that did not fail
        event = ("Normal", "Completed", f"Ray job {job_id} {info.status.value.lower()}")
        ended = finish(
            observed, status, deployment=JobDeploymentStatus.COMPLETE, reason=None, message=info.message, event=event
        )
    return JobPlan(status=ended.status, actions=actions, requeue_after=0.0, events=ended.events)
