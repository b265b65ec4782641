"""Decide the RayJob's next step: KubeRay's state machine (reference §3.1) as a pure function.

The reconcile gathers an :class:`Observed` snapshot (the RayJob, its RayCluster, the Ray job as the
dashboard reports it, the clock) and applies the returned :class:`JobPlan`: a status to write and
actions to execute. Every transition, deadline, retry and cleanup rule lives here, so it is tested
without processes, clocks or a store.

Submission is idempotent: the submission id is fixed in ``status.jobId`` before the first attempt,
and a job is submitted only after the dashboard answered "not found" for that id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kray.api.v1.enums import (
    DeletionPolicyType,
    JobDeploymentStatus,
    JobFailedReason,
    JobStatus,
    JobSubmissionMode,
)
from kray.api.v1.rayjob import RayJob
from kray.controllers.common.diagnosis import PodTrouble, startup_failure, unready_report

FINALIZER = "ray.io/rayjob-finalizer"
CLUSTER_SELECTOR_KEY = "ray.io/cluster"
REQUEUE = 3.0


@dataclass(frozen=True, slots=True)
class StartupPolicy:
    """kray's fail-fast for clusters that cannot start (not in KubeRay, which waits without end).

    A RayJob still ``Initializing`` fails with ``RayClusterStartupFailed`` when a pod of its cluster
    reached phase Failed or its Ray container restarted ``crash_loop_restarts`` times, or when the
    cluster is not ready ``timeout`` seconds after the job started and the manifest sets no
    ``preRunningDeadlineSeconds`` of its own. The message names the pod and quotes its last log lines.
    """

    crash_loop_restarts: int = 3
    timeout: float | None = 600.0


@dataclass(frozen=True, slots=True)
class Settings:
    """KubeRay's timing knobs (operator env vars), with its defaults, and kray's startup policy."""

    transition_grace_period: float = 300.0  # RAYJOB_DEPLOYMENT_STATUS_TRANSITION_GRACE_PERIOD_SECONDS
    status_check_timeout: float = 300.0  # RAYJOB_STATUS_CHECK_TIMEOUT_SECONDS
    delete_rayjob_after_finish: bool = False  # DELETE_RAYJOB_CR_AFTER_JOB_FINISHES
    deletion_rules_enabled: bool = True  # feature gate RayJobDeletionPolicy
    startup: StartupPolicy | None = None
    """None: KubeRay's behaviour (an Initializing job waits for its cluster until a deadline)."""


@dataclass(frozen=True, slots=True)
class RayJobInfo:
    """What the dashboard says of the Ray job (``GET /api/jobs/<id>``)."""

    status: JobStatus
    message: str = ""
    start_time_ms: int | None = None
    end_time_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Observed:
    job: RayJob
    now: datetime
    cluster_exists: bool = False
    cluster_ready: bool = False
    cluster_status: dict[str, Any] | None = None
    cluster_troubles: tuple[PodTrouble, ...] = ()
    """The cluster's pods that are not Running and Ready (gathered while Initializing)."""
    dashboard_url: str | None = None
    ray_job: RayJobInfo | None = None
    ray_job_missing: bool = False
    """The dashboard answered 404 for status.jobId."""
    dashboard_error: str | None = None
    """The dashboard could not be asked (unreachable, 5xx)."""
    random_suffix: str = "xxxxx"
    """Five lowercase alphanumerics for generated names, drawn by the caller."""
    settings: Settings = field(default_factory=Settings)


@dataclass(frozen=True, slots=True)
class CreateCluster:
    name: str


@dataclass(frozen=True, slots=True)
class DeleteCluster:
    name: str


@dataclass(frozen=True, slots=True)
class SuspendWorkers:
    name: str


@dataclass(frozen=True, slots=True)
class SubmitJob:
    submission_id: str


@dataclass(frozen=True, slots=True)
class StopJob:
    submission_id: str


@dataclass(frozen=True, slots=True)
class DeleteSelf:
    pass


@dataclass(frozen=True, slots=True)
class AddFinalizer:
    pass


@dataclass(frozen=True, slots=True)
class RemoveFinalizer:
    pass


Action = (
    CreateCluster | DeleteCluster | SuspendWorkers | SubmitJob | StopJob | DeleteSelf | AddFinalizer | RemoveFinalizer
)


@dataclass(frozen=True, slots=True)
class JobPlan:
    status: dict[str, Any]
    actions: tuple[Action, ...] = ()
    requeue_after: float | None = REQUEUE
    events: tuple[tuple[str, str, str], ...] = field(default=())
    """(type, reason, message) events to record."""


def rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def plan(observed: Observed) -> JobPlan:
    """The next status and actions for this RayJob."""
    job = observed.job
    status = job.status.to_dict() if job.status else {}
    if job.metadata.deletion_timestamp:
        return _plan_deletion(observed, status)
    deployment = JobDeploymentStatus(status.get("jobDeploymentStatus", ""))
    handler = _HANDLERS.get(deployment)
    if handler is None:  # ValidationFailed and unknown values are terminal
        return JobPlan(status=status, requeue_after=None)
    return handler(observed, status)


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


def _deadline_exceeded(observed: Observed, status: dict[str, Any]) -> JobFailedReason | None:
    spec = observed.job.spec
    started = parse_time(status.get("startTime"))
    if started is None:
        return None
    elapsed = (observed.now - started).total_seconds()
    if spec.active_deadline_seconds is not None and elapsed >= spec.active_deadline_seconds:
        return JobFailedReason.DEADLINE_EXCEEDED
    return None


def _active_deadline_message(observed: Observed) -> str:
    return f"The RayJob has passed its activeDeadlineSeconds ({observed.job.spec.active_deadline_seconds} s)"


def _pre_running_message(observed: Observed) -> str:
    seconds = observed.job.spec.pre_running_deadline_seconds
    return f"The RayJob did not start running within preRunningDeadlineSeconds ({seconds} s)"


def _pre_running_deadline_exceeded(observed: Observed, status: dict[str, Any]) -> bool:
    deadline = observed.job.spec.pre_running_deadline_seconds
    started = parse_time(status.get("startTime"))
    if deadline is None or started is None:
        return False
    return (observed.now - started).total_seconds() >= deadline


def _fail(observed: Observed, status: dict[str, Any], *, reason: JobFailedReason, message: str) -> JobPlan:
    new = dict(status)
    new["jobDeploymentStatus"] = JobDeploymentStatus.FAILED.value
    new["reason"] = reason.value
    new["message"] = message
    new["endTime"] = rfc3339(observed.now)
    new["failed"] = int(new.get("failed") or 0) + 1
    return JobPlan(status=new, requeue_after=0.0, events=(("Warning", reason.value, message),))


def _suspend_requested(observed: Observed) -> bool:
    return bool(observed.job.spec.suspend)


def _initializing(observed: Observed, status: dict[str, Any]) -> JobPlan:
    spec = observed.job.spec
    if _suspend_requested(observed):
        return JobPlan(
            status={**status, "jobDeploymentStatus": JobDeploymentStatus.SUSPENDING.value}, requeue_after=0.0
        )
    report = unready_report(observed.cluster_troubles) if not observed.cluster_ready else ""
    reason = _deadline_exceeded(observed, status)
    if reason is not None:
        return _fail(observed, status, reason=reason, message=_with_report(_active_deadline_message(observed), report))
    if _pre_running_deadline_exceeded(observed, status):
        return _fail(
            observed,
            status,
            reason=JobFailedReason.PRE_RUNNING_DEADLINE_EXCEEDED,
            message=_with_report(_pre_running_message(observed), report),
        )
    cluster_name = status.get("rayClusterName", "")
    failure = _startup_failure(observed, status, report)
    if failure is not None:
        return _fail(observed, status, reason=JobFailedReason.RAY_CLUSTER_STARTUP_FAILED, message=failure)
    new = dict(status)
    if observed.cluster_status is not None:
        new["rayClusterStatus"] = observed.cluster_status
    if not observed.cluster_exists:
        if spec.cluster_selector:
            return JobPlan(status=new)  # wait for the user's cluster to appear
        return JobPlan(
            status=new,
            actions=(CreateCluster(cluster_name),),
            events=(("Normal", "CreatedRayCluster", f"Created RayCluster {cluster_name}"),),
        )
    if not observed.cluster_ready:
        return JobPlan(status=new)
    if observed.dashboard_url:
        new["dashboardURL"] = observed.dashboard_url
    if spec.submission_mode is JobSubmissionMode.INTERACTIVE:
        new["jobDeploymentStatus"] = JobDeploymentStatus.WAITING.value
    else:
        new["jobDeploymentStatus"] = JobDeploymentStatus.RUNNING.value
    return JobPlan(status=new, requeue_after=0.0)


def _with_report(message: str, report: str) -> str:
    return f"{message}; pods not ready:\n{report}" if report else message


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
    return _with_report(
        f"RayCluster {cluster} was not ready {policy.timeout:.0f} s after the RayJob started "
        "(kray's startup timeout; spec.preRunningDeadlineSeconds replaces it)",
        report,
    )


def _waiting(observed: Observed, status: dict[str, Any]) -> JobPlan:
    spec = observed.job.spec
    if _pre_running_deadline_exceeded(observed, status):
        return _fail(
            observed,
            status,
            reason=JobFailedReason.PRE_RUNNING_DEADLINE_EXCEEDED,
            message=_pre_running_message(observed),
        )
    if spec.job_id:
        return JobPlan(
            status={**status, "jobId": spec.job_id, "jobDeploymentStatus": JobDeploymentStatus.RUNNING.value},
            requeue_after=0.0,
        )
    return JobPlan(status=status)


def _running(observed: Observed, status: dict[str, Any]) -> JobPlan:
    spec = observed.job.spec
    if _suspend_requested(observed):
        return JobPlan(
            status={**status, "jobDeploymentStatus": JobDeploymentStatus.SUSPENDING.value}, requeue_after=0.0
        )
    reason = _deadline_exceeded(observed, status)
    if reason is not None:
        job_id = status.get("jobId")
        plan_ = _fail(
            observed,
            status,
            reason=reason,
            message=f"The RayJob has passed its activeDeadlineSeconds ({spec.active_deadline_seconds} s)",
        )
        return JobPlan(
            status=plan_.status, actions=(StopJob(job_id),) if job_id else (), requeue_after=0.0, events=plan_.events
        )
    new = dict(status)
    if observed.cluster_status is not None:
        new["rayClusterStatus"] = observed.cluster_status
    if not observed.cluster_exists:
        return _fail(
            observed,
            new,
            reason=JobFailedReason.SUBMISSION_FAILED,
            message=f"RayCluster {status.get('rayClusterName')} is gone",
        )
    job_id = str(status.get("jobId", ""))
    if observed.dashboard_error is not None:
        first = parse_time(status.get("jobStatusCheckFailureStartTime")) or observed.now
        new["jobStatusCheckFailureStartTime"] = rfc3339(first)
        if (observed.now - first).total_seconds() >= observed.settings.status_check_timeout:
            return _fail(
                observed,
                new,
                reason=JobFailedReason.JOB_STATUS_CHECK_TIMEOUT_EXCEEDED,
                message=f"Failed to get the Ray job status for over 300 s: {observed.dashboard_error}",
            )
        return JobPlan(status=new)
    new.pop("jobStatusCheckFailureStartTime", None)
    if observed.ray_job_missing:
        return JobPlan(
            status=new,
            actions=(SubmitJob(job_id),),
            events=(("Normal", "SubmittedRayJob", f"Submitted Ray job {job_id}"),),
        )
    info = observed.ray_job
    if info is None:
        return JobPlan(status=new)
    new["jobStatus"] = info.status.value
    if info.message:
        new["message"] = info.message
    times: dict[str, str] = {}
    if info.start_time_ms:
        times["startTime"] = rfc3339(datetime.fromtimestamp(info.start_time_ms / 1000, tz=UTC))
    if info.end_time_ms:
        times["endTime"] = rfc3339(datetime.fromtimestamp(info.end_time_ms / 1000, tz=UTC))
    if times:
        new["rayJobInfo"] = times
    if not info.status.is_terminal():
        return JobPlan(status=new)
    new["endTime"] = rfc3339(observed.now)
    if info.status is JobStatus.SUCCEEDED:
        new["jobDeploymentStatus"] = JobDeploymentStatus.COMPLETE.value
        new["succeeded"] = int(new.get("succeeded") or 0) + 1
        new.pop("reason", None)
        return JobPlan(status=new, requeue_after=0.0, events=(("Normal", "Completed", f"Ray job {job_id} succeeded"),))
    new["jobDeploymentStatus"] = JobDeploymentStatus.FAILED.value
    new["reason"] = JobFailedReason.APP_FAILED.value
    new["failed"] = int(new.get("failed") or 0) + 1
    return JobPlan(
        status=new,
        requeue_after=0.0,
        events=(("Warning", "AppFailed", info.message or f"Ray job {job_id} {info.status}"),),
    )


def _teardown(observed: Observed, status: dict[str, Any], *, then: JobDeploymentStatus) -> JobPlan:
    """Suspending / Retrying: delete the cluster (not a selected one), wait until gone, reset."""
    spec = observed.job.spec
    name = status.get("rayClusterName", "")
    if observed.cluster_exists and not spec.cluster_selector:
        return JobPlan(status=status, actions=(DeleteCluster(name),))
    new = {k: v for k, v in status.items() if k in {"succeeded", "failed", "startTime"}}
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


def _finished(observed: Observed, status: dict[str, Any]) -> JobPlan:
    spec = observed.job.spec
    deployment = JobDeploymentStatus(status["jobDeploymentStatus"])
    reason = status.get("reason")
    retries = spec.backoff_limit or 0
    if (
        deployment is JobDeploymentStatus.FAILED
        and int(status.get("failed") or 0) < retries + 1
        and (reason is None or JobFailedReason(reason).allows_retry())
    ):
        return JobPlan(status={**status, "jobDeploymentStatus": JobDeploymentStatus.RETRYING.value}, requeue_after=0.0)
    return _cleanup(observed, status)


def _cleanup(observed: Observed, status: dict[str, Any]) -> JobPlan:
    """Deletion after Complete/Failed (reference §3.4): selector → rules/legacy → shutdown → nothing."""
    spec = observed.job.spec
    name = status.get("rayClusterName", "")
    ended = parse_time(status.get("endTime")) or observed.now
    elapsed = (observed.now - ended).total_seconds()
    strategy = spec.deletion_strategy
    job_status = status.get("jobStatus", "")
    deployment = status.get("jobDeploymentStatus", "")
    if strategy is not None and observed.settings.deletion_rules_enabled:
        if strategy.deletion_rules:
            due: list[tuple[DeletionPolicyType, float]] = []
            for rule in strategy.deletion_rules:
                condition = rule.condition
                matches = (condition.job_status is not None and condition.job_status.value == job_status) or (
                    condition.job_deployment_status is not None and condition.job_deployment_status.value == deployment
                )
                if matches:
                    due.append((rule.policy, condition.ttl_seconds - elapsed))
            overdue = [p for p, remaining in due if remaining <= 0]
            pending = [remaining for _, remaining in due if remaining > 0]
            requeue = min(pending) + 2 if pending else None
            if overdue:
                policy = max(overdue, key=DeletionPolicyType.impact)
                return JobPlan(
                    status=status, actions=_policy_actions(policy, name, observed), requeue_after=requeue or REQUEUE
                )
            return JobPlan(status=status, requeue_after=requeue)
        if strategy.on_success is not None and strategy.on_failure is not None:
            legacy = strategy.on_success if job_status == JobStatus.SUCCEEDED.value else strategy.on_failure
            remaining = spec.ttl_seconds_after_finished - elapsed
            if legacy.policy is None or remaining > 0:
                return JobPlan(status=status, requeue_after=remaining if remaining > 0 else None)
            return JobPlan(status=status, actions=_policy_actions(legacy.policy, name, observed), requeue_after=None)
    if spec.shutdown_after_job_finishes and not spec.cluster_selector:
        remaining = spec.ttl_seconds_after_finished - elapsed
        if remaining > 0:
            return JobPlan(status=status, requeue_after=remaining)
        if observed.settings.delete_rayjob_after_finish:
            return JobPlan(status=status, actions=(DeleteSelf(),), requeue_after=None)
        if observed.cluster_exists:
            return JobPlan(status=status, actions=(DeleteCluster(name),), requeue_after=None)
    return JobPlan(status=status, requeue_after=None)


def _policy_actions(policy: DeletionPolicyType, cluster: str, observed: Observed) -> tuple[Action, ...]:
    if policy is DeletionPolicyType.DELETE_SELF:
        return (DeleteSelf(),)
    if observed.job.spec.cluster_selector:
        return ()
    if policy is DeletionPolicyType.DELETE_CLUSTER and observed.cluster_exists:
        return (DeleteCluster(cluster),)
    if policy is DeletionPolicyType.DELETE_WORKERS and observed.cluster_exists:
        return (SuspendWorkers(cluster),)
    return ()


_HANDLERS = {
    JobDeploymentStatus.NEW: _new,
    JobDeploymentStatus.INITIALIZING: _initializing,
    JobDeploymentStatus.WAITING: _waiting,
    JobDeploymentStatus.RUNNING: _running,
    JobDeploymentStatus.SUSPENDING: _suspending,
    JobDeploymentStatus.RETRYING: _retrying,
    JobDeploymentStatus.SUSPENDED: _suspended,
    JobDeploymentStatus.COMPLETE: _finished,
    JobDeploymentStatus.FAILED: _finished,
}
