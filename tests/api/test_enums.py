"""Status enums carry KubeRay's exact strings and the predicates the controllers rely on."""

from __future__ import annotations

import pytest

from kray.api.v1.enums import DeletionPolicyType, JobDeploymentStatus, JobFailedReason, JobStatus, JobSubmissionMode


@pytest.mark.parametrize(
    ("status", "terminal"),
    [("", False), ("PENDING", False), ("RUNNING", False), ("STOPPED", True), ("SUCCEEDED", True), ("FAILED", True)],
)
def test_job_status_terminality_mirrors_ray(status: str, terminal: bool) -> None:
    assert JobStatus(status).is_terminal() is terminal


@pytest.mark.parametrize("status", list(JobDeploymentStatus))
def test_only_complete_and_failed_deployments_are_terminal(status: JobDeploymentStatus) -> None:
    assert status.is_terminal() is (status.value in {"Complete", "Failed"})
    assert status.can_suspend() is (status.value in {"Initializing", "Running"})


def test_deadline_and_status_check_timeouts_never_retry() -> None:
    no_retry = {r.value for r in JobFailedReason if not r.allows_retry()}
    assert no_retry == {"DeadlineExceeded", "JobStatusCheckTimeoutExceeded"}


def test_deletion_policies_order_by_impact() -> None:
    ordered = sorted(DeletionPolicyType, key=DeletionPolicyType.impact)
    assert [p.value for p in ordered] == ["DeleteNone", "DeleteWorkers", "DeleteCluster", "DeleteSelf"]


def test_submission_modes_are_kuberays_strings() -> None:
    assert [m.value for m in JobSubmissionMode] == ["K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"]
    assert {m.value for m in JobSubmissionMode if m.has_submitter()} == {"K8sJobMode", "SidecarMode"}
