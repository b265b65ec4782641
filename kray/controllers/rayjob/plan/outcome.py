"""How a RayJob ends: the status fields every terminal transition writes, and the deadline checks.

One place for the counters and ``endTime`` so that each path into Complete/Failed (deadlines, the
submitter, the Ray job itself, the grace periods) books the outcome the same way KubeRay does:
``failed`` counts every Failed, ``succeeded`` only a Complete whose Ray job SUCCEEDED.
"""

from __future__ import annotations

from typing import Any

from kray.api.v1.enums import JobDeploymentStatus, JobFailedReason, JobStatus
from kray.controllers.rayjob.plan.model import JobPlan, Observed, parse_time, rfc3339


def finish(
    observed: Observed,
    status: dict[str, Any],
    *,
    deployment: JobDeploymentStatus,
    reason: JobFailedReason | None,
    message: str | None,
    event: tuple[str, str, str] | None = None,
) -> JobPlan:
    """Complete or Failed now; ``message`` None keeps the one already there, ``reason`` None clears it."""
    new = dict(status)
    new["jobDeploymentStatus"] = deployment.value
    if reason is None:
        new.pop("reason", None)
    else:
        new["reason"] = reason.value
    if message is not None:
        if message:
            new["message"] = message
        else:
            new.pop("message", None)
    new["endTime"] = rfc3339(observed.now)
    if deployment is JobDeploymentStatus.FAILED:
        new["failed"] = int(new.get("failed") or 0) + 1
    elif new.get("jobStatus") == JobStatus.SUCCEEDED.value:
        new["succeeded"] = int(new.get("succeeded") or 0) + 1
    events = (event,) if event is not None else ()
    return JobPlan(status=new, requeue_after=0.0, events=events)


def fail(observed: Observed, status: dict[str, Any], *, reason: JobFailedReason, message: str) -> JobPlan:
    return finish(
        observed,
        status,
        deployment=JobDeploymentStatus.FAILED,
        reason=reason,
        message=message,
        event=("Warning", reason.value, message),
    )


def active_deadline_exceeded(observed: Observed, status: dict[str, Any]) -> bool:
    seconds = observed.job.spec.active_deadline_seconds
    started = parse_time(status.get("startTime"))
    return seconds is not None and started is not None and (observed.now - started).total_seconds() >= seconds


def pre_running_deadline_exceeded(observed: Observed, status: dict[str, Any]) -> bool:
    seconds = observed.job.spec.pre_running_deadline_seconds
    started = parse_time(status.get("startTime"))
    return seconds is not None and started is not None and (observed.now - started).total_seconds() >= seconds


def active_deadline_message(observed: Observed) -> str:
    return f"The RayJob has passed its activeDeadlineSeconds ({observed.job.spec.active_deadline_seconds} s)"


def pre_running_message(observed: Observed) -> str:
    seconds = observed.job.spec.pre_running_deadline_seconds
    return f"The RayJob did not start running within preRunningDeadlineSeconds ({seconds} s)"


def with_report(message: str, report: str) -> str:
    return f"{message}; pods not ready:\n{report}" if report else message
