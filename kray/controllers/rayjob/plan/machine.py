"""Decide the RayJob's next step: KubeRay's state machine (reference §3.1) as a pure function.

The reconcile gathers an :class:`Observed` snapshot (the RayJob, its RayCluster, the Ray job as the
dashboard reports it, the submitter, the clock) and applies the returned :class:`JobPlan`: a status
to write and actions to execute. Every transition, deadline, retry and cleanup rule lives in this
package, so it is tested without processes, clocks or a store.

Submission is idempotent: the submission id is fixed in ``status.jobId`` before the first attempt,
and a job is submitted over HTTP only after the dashboard answered "not found" for that id (the
K8sJobMode submitter script checks the same way before ``ray job submit``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from kray.api.v1.enums import JobDeploymentStatus, JobFailedReason, JobStatus, JobSubmissionMode
from kray.controllers.common.diagnosis import startup_failure, unready_report
from kray.controllers.rayjob.plan.cleanup import finished
from kray.controllers.rayjob.plan.model import (
    CLUSTER_SELECTOR_KEY,
    FINALIZER,
    Action,
    AddFinalizer,
    CreateCluster,
    CreateSubmitter,
    DeleteCluster,
    DeleteSubmitter,
    JobPlan,
    Observed,
    RemoveFinalizer,
    StopJob,
    parse_time,
    rfc3339,
)
from kray.controllers.rayjob.plan.outcome import (
    active_deadline_exceeded,
    active_deadline_message,
    fail,
    pre_running_deadline_exceeded,
    pre_running_message,
    with_report,
)
from kray.controllers.rayjob.plan.running import running
from kray.controllers.rayjob.plan.wire import kuberay_json


def plan(observed: Observed) -> JobPlan:
    """The next status (in KubeRay's serialised form, :mod:`.wire`) and actions for this RayJob."""
    job = observed.job
    status = job.status.to_dict() if job.status else {}
    if job.metadata.deletion_timestamp:
        return _plan_deletion(observed, status)
    deployment = JobDeploymentStatus(status.get("jobDeploymentStatus", ""))
    handler = _HANDLERS.get(deployment)
    if handler is None:  # ValidationFailed and unknown values are terminal
        return JobPlan(status=status, requeue_after=None)
    planned = handler(observed, status)
    return dataclasses.replace(planned, status=kuberay_json(planned.status))


def _plan_deletion(observed: Observed, status: dict[str, Any]) -> JobPlan:
    actions: list[Action] = []
    job_id = status.get("jobId")
    ray_status = JobStatus(status.get("jobStatus", ""))
    if job_id and not ray_status.is_terminal() and observed.cluster_exists:
        actions.append(StopJob(job_id))
    if FINALIZER in (observed.job.metadata.finalizers or ()):
        actions.append(RemoveFinalizer())
    return JobPlan(status=status, actions=tuple(actions), requeue_after=None)


def _new(observed: Observed, status: dict[str, Any]) -> JobPlan:
    job = observed.job
    spec = job.spec
    name = job.metadata.name or "rayjob"
    actions: list[Action] = []
    if FINALIZER not in (job.metadata.finalizers or ()):
        actions.append(AddFinalizer())
    new = dict(status)
    if spec.submission_mode is not JobSubmissionMode.INTERACTIVE:
        new["jobId"] = spec.job_id or f"{name}-{observed.random_suffix}"
    selector = spec.cluster_selector or {}
    new["rayClusterName"] = selector.get(CLUSTER_SELECTOR_KEY) or f"{name}-{observed.random_suffix}"
    new["jobStatus"] = JobStatus.NEW.value
    new["jobDeploymentStatus"] = JobDeploymentStatus.INITIALIZING.value
    new["startTime"] = rfc3339(observed.now)
    new.setdefault("succeeded", 0)
    new.setdefault("failed", 0)
    for key in ("endTime", "reason", "message", "dashboardURL", "rayJobInfo", "jobStatusCheckFailureStartTime"):
        new.pop(key, None)
    return JobPlan(status=new, actions=tuple(actions), requeue_after=0.0)


def _initializing(observed: Observed, status: dict[str, Any]) -> JobPlan:
    spec = observed.job.spec
    namespace = observed.job.metadata.namespace or "default"
    if spec.suspend:
        return JobPlan(
            status={**status, "jobDeploymentStatus": JobDeploymentStatus.SUSPENDING.value}, requeue_after=0.0
        )
    report = unready_report(observed.cluster_troubles) if not observed.cluster_ready else ""
    if active_deadline_exceeded(observed, status):
        message = with_report(active_deadline_message(observed), report)
        return fail(observed, status, reason=JobFailedReason.DEADLINE_EXCEEDED, message=message)
    if pre_running_deadline_exceeded(observed, status):
        message = with_report(pre_running_message(observed), report)
        return fail(observed, status, reason=JobFailedReason.PRE_RUNNING_DEADLINE_EXCEEDED, message=message)
    cluster_name = status.get("rayClusterName", "")
    failure = _startup_failure(observed, status, report)
    if failure is not None:
        return fail(observed, status, reason=JobFailedReason.RAY_CLUSTER_STARTUP_FAILED, message=failure)
    new = dict(status)
    if not observed.cluster_exists:
        if spec.cluster_selector:  # wait for the user's cluster to appear
            message = (
                f"RayCluster {namespace}/{cluster_name} set in the clusterSelector is not found. "
                "It must be created manually"
            )
            return JobPlan(status=new, events=(("Warning", "RayClusterNotFound", message),))
        new["rayClusterStatus"] = {}  # the cluster created now has no status yet
        return JobPlan(
            status=new,
            actions=(CreateCluster(cluster_name),),
            events=(("Normal", "CreatedRayCluster", f"Created RayCluster {namespace}/{cluster_name}"),),
        )
    if not observed.cluster_ready and not status.get("dashboardURL"):
        # KubeRay reflects a cluster that is not ready yet in the RayJob (each pass); a ready one is
        # copied again only with the Ray job's status, in Running.
        new["rayClusterStatus"] = observed.cluster_status or {}
    if not observed.cluster_ready or not observed.dashboard_url:
        return JobPlan(status=new)  # KubeRay needs the head Service's dashboard port before going on
    new["dashboardURL"] = observed.dashboard_url
    if spec.submission_mode is JobSubmissionMode.INTERACTIVE:
        new["jobDeploymentStatus"] = JobDeploymentStatus.WAITING.value
        return JobPlan(status=new, requeue_after=0.0)
    actions: tuple[Action, ...] = ()
    if observed.mode() is JobSubmissionMode.K8S_JOB and not observed.submitter_job_exists:
        actions = (CreateSubmitter(job_id=str(new.get("jobId", "")), dashboard_url=observed.dashboard_url),)
    new["jobDeploymentStatus"] = JobDeploymentStatus.RUNNING.value
    return JobPlan(status=new, actions=actions, requeue_after=0.0)


def _startup_failure(observed: Observed, status: dict[str, Any], report: str) -> str | None:
    """The message ending a job whose cluster cannot start (kray's :class:`StartupPolicy`), or None."""
    policy = observed.settings.startup
    if policy is None or not observed.cluster_exists or observed.cluster_ready:
        return None
    cluster = status.get("rayClusterName", "")
    stuck = startup_failure(observed.cluster_troubles, crash_loop_restarts=policy.crash_loop_restarts)
    if stuck is not None:
        return f"RayCluster {cluster} cannot start: {stuck.describe()}"
    started = parse_time(status.get("startTime"))
    if policy.timeout is None or started is None or observed.job.spec.pre_running_deadline_seconds is not None:
        return None
    if (observed.now - started).total_seconds() < policy.timeout:
        return None
    return with_report(
        f"RayCluster {cluster} was not ready {policy.timeout:.0f} s after the RayJob started "
        "(kray's startup timeout; spec.preRunningDeadlineSeconds replaces it)",
        report,
    )


def _waiting(observed: Observed, status: dict[str, Any]) -> JobPlan:
    spec = observed.job.spec
    if pre_running_deadline_exceeded(observed, status):
        return fail(
            observed,
            status,
            reason=JobFailedReason.PRE_RUNNING_DEADLINE_EXCEEDED,
            message=pre_running_message(observed),
        )
    if spec.job_id:
        return JobPlan(
            status={**status, "jobId": spec.job_id, "jobDeploymentStatus": JobDeploymentStatus.RUNNING.value},
            requeue_after=0.0,
        )
    return JobPlan(status=status)


def _teardown(observed: Observed, status: dict[str, Any], *, then: JobDeploymentStatus) -> JobPlan:
    """Suspending / Retrying: delete the cluster (not a selected one) and the submitter Job, wait until
    both are gone, then reset. Atomic: a Suspending job finishes suspending whatever ``suspend`` says now."""
    spec = observed.job.spec
    name = status.get("rayClusterName", "")
    actions: list[Action] = []
    if observed.cluster_exists and not spec.cluster_selector:
        actions.append(DeleteCluster(name))
    if observed.submitter_job_exists:
        actions.append(DeleteSubmitter())
    if actions:
        return JobPlan(status=status, actions=tuple(actions))
    new = {k: v for k, v in status.items() if k in {"succeeded", "failed", "startTime", "endTime"}}
    new["jobStatus"] = JobStatus.NEW.value
    new["jobDeploymentStatus"] = then.value
    if then is JobDeploymentStatus.NEW and spec.job_id:
        new["jobId"] = spec.job_id
    return JobPlan(status=new, requeue_after=0.0)


def _suspending(observed: Observed, status: dict[str, Any]) -> JobPlan:
    return _teardown(observed, status, then=JobDeploymentStatus.SUSPENDED)


def _retrying(observed: Observed, status: dict[str, Any]) -> JobPlan:
    return _teardown(observed, status, then=JobDeploymentStatus.NEW)


def _suspended(observed: Observed, status: dict[str, Any]) -> JobPlan:
    if observed.job.spec.suspend:
        return JobPlan(status=status, requeue_after=None)
    return JobPlan(status={**status, "jobDeploymentStatus": JobDeploymentStatus.NEW.value}, requeue_after=0.0)


_HANDLERS = {
    JobDeploymentStatus.NEW: _new,
    JobDeploymentStatus.INITIALIZING: _initializing,
    JobDeploymentStatus.WAITING: _waiting,
    JobDeploymentStatus.RUNNING: running,
    JobDeploymentStatus.SUSPENDING: _suspending,
    JobDeploymentStatus.RETRYING: _retrying,
    JobDeploymentStatus.SUSPENDED: _suspended,
    JobDeploymentStatus.COMPLETE: finished,
    JobDeploymentStatus.FAILED: finished,
}
