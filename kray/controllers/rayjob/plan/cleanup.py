"""After Complete/Failed: retry, or clean up (reference §3.4) — each rule acting only where KubeRay's does.

A job on a selected cluster (``clusterSelector``) never deletes anything, not even itself: the
cluster is the user's. Otherwise deletion rules (gate ``RayJobDeletionPolicy``) or the legacy
``onSuccess``/``onFailure`` pair, else ``shutdownAfterJobFinishes``. A due time is
``endTime`` + TTL; a job waiting for one is requeued 2 s after it (KubeRay's margin).
"""

from __future__ import annotations

from typing import Any

from kray.api.v1.enums import DeletionPolicyType, JobDeploymentStatus, JobFailedReason, JobStatus
from kray.controllers.rayjob.plan.model import (
    REQUEUE,
    Action,
    DeleteCluster,
    DeleteSelf,
    JobPlan,
    Observed,
    SuspendWorkers,
    parse_time,
)

REQUEUE_MARGIN = 2.0


def finished(observed: Observed, status: dict[str, Any]) -> JobPlan:
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
    return cleanup(observed, status)


def cleanup(observed: Observed, status: dict[str, Any]) -> JobPlan:
    spec = observed.job.spec
    if spec.cluster_selector:
        return JobPlan(status=status, requeue_after=None)
    name = status.get("rayClusterName", "")
    ended = parse_time(status.get("endTime")) or observed.now
    elapsed = (observed.now - ended).total_seconds()
    strategy = spec.deletion_strategy
    job_status = status.get("jobStatus", "")
    if strategy is not None and observed.settings.deletion_rules_enabled:
        if strategy.deletion_rules:
            return _deletion_rules(observed, status, elapsed=elapsed, name=name)
        legacy = {
            JobStatus.SUCCEEDED.value: strategy.on_success,
            JobStatus.FAILED.value: strategy.on_failure,
        }.get(job_status)
        if legacy is None or legacy.policy is None or legacy.policy is DeletionPolicyType.DELETE_NONE:
            return JobPlan(status=status, requeue_after=None)  # e.g. a STOPPED job: no policy applies
        remaining = spec.ttl_seconds_after_finished - elapsed
        if remaining > 0:
            return JobPlan(status=status, requeue_after=remaining + REQUEUE_MARGIN)
        return JobPlan(status=status, actions=_policy_actions(legacy.policy, name, observed), requeue_after=None)
    if spec.shutdown_after_job_finishes:
        remaining = spec.ttl_seconds_after_finished - elapsed
        if remaining > 0:
            return JobPlan(status=status, requeue_after=remaining + REQUEUE_MARGIN)
        if observed.settings.delete_rayjob_after_finish:
            return JobPlan(status=status, actions=(DeleteSelf(),), requeue_after=None)
        if observed.cluster_exists:  # the submitter Job stays: its pod keeps the driver's logs
            return JobPlan(status=status, actions=(DeleteCluster(name),), requeue_after=None)
    return JobPlan(status=status, requeue_after=None)


def _deletion_rules(observed: Observed, status: dict[str, Any], *, elapsed: float, name: str) -> JobPlan:
    """The most impactful overdue rule runs (one per reconcile); the next pending one sets the requeue."""
    strategy = observed.job.spec.deletion_strategy
    assert strategy is not None
    job_status = status.get("jobStatus", "")
    deployment = status.get("jobDeploymentStatus", "")
    overdue: list[DeletionPolicyType] = []
    pending: list[float] = []
    for rule in strategy.deletion_rules or ():
        condition = rule.condition
        matches = (condition.job_status is not None and condition.job_status.value == job_status) or (
            condition.job_deployment_status is not None and condition.job_deployment_status.value == deployment
        )
        if not matches:
            continue
        remaining = condition.ttl_seconds - elapsed
        if remaining > 0:
            pending.append(remaining)
        elif _policy_actions(rule.policy, name, observed):  # KubeRay skips rules whose effect is already there
            overdue.append(rule.policy)
    requeue = min(pending) + REQUEUE_MARGIN if pending else None
    if overdue:
        policy = max(overdue, key=DeletionPolicyType.impact)
        return JobPlan(status=status, actions=_policy_actions(policy, name, observed), requeue_after=requeue or REQUEUE)
    return JobPlan(status=status, requeue_after=requeue)


def _policy_actions(policy: DeletionPolicyType, cluster: str, observed: Observed) -> tuple[Action, ...]:
    if policy is DeletionPolicyType.DELETE_SELF:
        return (DeleteSelf(),)
    if policy is DeletionPolicyType.DELETE_CLUSTER and observed.cluster_exists:
        return (DeleteCluster(cluster),)
    if policy is DeletionPolicyType.DELETE_WORKERS and observed.cluster_exists and not observed.workers_suspended:
        return (SuspendWorkers(cluster),)
    return ()
