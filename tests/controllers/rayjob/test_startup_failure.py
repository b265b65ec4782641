"""kray's fail-fast for RayJobs whose cluster cannot start (StartupPolicy), and the pod report in deadline messages.

KubeRay waits in Initializing until a deadline; with a StartupPolicy (local mode's default) a crash-looping
or Failed pod ends the job at once with ``RayClusterStartupFailed``, quoting the pod's last log lines.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kray.api.v1.enums import JobFailedReason
from kray.api.v1.rayjob import RayJob
from kray.controllers.common.diagnosis import PodTrouble
from kray.controllers.rayjob.plan import Observed, Settings, StartupPolicy, plan
from tests.controllers.rayjob import support
from tests.controllers.rayjob.support import T0, initializing

LOCAL = Settings(startup=StartupPolicy(crash_loop_restarts=3, timeout=600.0))


def job(**spec: Any) -> RayJob:
    return support.job(initializing(), **spec)


def crash(restarts: int, *, node_type: str = "head", failed: bool = False) -> PodTrouble:
    return PodTrouble(
        pod=f"demo-abcde-{node_type}-x",
        node_type=node_type,
        container="ray-head",
        state="Error" if failed else "CrashLoopBackOff",
        restarts=restarts,
        failed=failed,
        exit_code=1,
        log_tail="OSError: [Errno 98] Address already in use",
    )


def observe(
    j: RayJob, *, at: float = 0, settings: Settings = LOCAL, troubles: tuple[PodTrouble, ...] = (), **kw: Any
) -> Observed:
    return Observed(
        job=j,
        now=T0 + timedelta(seconds=at),
        settings=settings,
        cluster_exists=True,
        cluster_troubles=troubles,
        **kw,
    )


def test_a_crash_looping_head_fails_the_job_with_its_last_log_lines() -> None:
    result = plan(observe(job(), at=40, troubles=(crash(3),)))
    status = result.status
    assert status["jobDeploymentStatus"] == "Failed"
    assert status["reason"] == JobFailedReason.RAY_CLUSTER_STARTUP_FAILED == "RayClusterStartupFailed"
    assert status["message"] == (
        "RayCluster demo-abcde cannot start: head pod demo-abcde-head-x: CrashLoopBackOff after 3 restarts "
        "(last exit code 1); last log lines:\nOSError: [Errno 98] Address already in use"
    )
    assert status["failed"] == 1
    assert status["endTime"] == "2026-11-25T12:00:40Z"
    assert result.events == (("Warning", "RayClusterStartupFailed", status["message"]),)


def test_fewer_restarts_keep_waiting() -> None:
    result = plan(observe(job(), at=40, troubles=(crash(2),)))
    assert result.status["jobDeploymentStatus"] == "Initializing"
    assert result.actions == ()


def test_a_failed_pod_fails_the_job_at_once() -> None:
    result = plan(observe(job(), troubles=(crash(0, node_type="worker", failed=True),)))
    assert result.status["reason"] == "RayClusterStartupFailed"
    assert "worker pod demo-abcde-worker-x: Error" in result.status["message"]


def test_without_a_policy_kuberay_waits() -> None:
    result = plan(observe(job(), at=10_000, settings=Settings(), troubles=(crash(50),)))
    assert result.status["jobDeploymentStatus"] == "Initializing"


def test_a_ready_cluster_is_never_a_startup_failure() -> None:
    result = plan(observe(job(), troubles=(crash(9, node_type="worker"),), cluster_ready=True, dashboard_url="h:1"))
    assert result.status["jobDeploymentStatus"] == "Running"


def test_the_startup_timeout_fails_a_cluster_that_never_gets_ready() -> None:
    stuck = PodTrouble(
        pod="demo-abcde-head-x", node_type="head", container="h", state="Running, not Ready", restarts=0, failed=False
    )
    assert plan(observe(job(), at=599, troubles=(stuck,))).status["jobDeploymentStatus"] == "Initializing"
    result = plan(observe(job(), at=600, troubles=(stuck,)))
    assert result.status["reason"] == "RayClusterStartupFailed"
    assert result.status["message"] == (
        "RayCluster demo-abcde was not ready 600 s after the RayJob started (kray's startup timeout; "
        "spec.preRunningDeadlineSeconds replaces it); pods not ready:\nhead pod demo-abcde-head-x: Running, not Ready"
    )


def test_pre_running_deadline_replaces_the_startup_timeout_and_reports_the_pods() -> None:
    stuck = (crash(1),)
    assert (
        plan(observe(job(preRunningDeadlineSeconds=900), at=700, troubles=stuck)).status["jobDeploymentStatus"]
        == "Initializing"
    )
    result = plan(observe(job(preRunningDeadlineSeconds=900), at=900, troubles=stuck))
    assert result.status["reason"] == "PreRunningDeadlineExceeded"
    assert result.status["message"].startswith(
        "The RayJob did not start running within preRunningDeadlineSeconds (900 s); pods not ready:\n"
        "head pod demo-abcde-head-x: CrashLoopBackOff after 1 restart"
    )
    assert result.status["message"].endswith("Address already in use")


@pytest.mark.parametrize("settings", [Settings(), LOCAL])
def test_active_deadline_messages_report_the_pods_too(settings: Settings) -> None:
    result = plan(observe(job(activeDeadlineSeconds=30), at=30, settings=settings, troubles=(crash(1),)))
    assert result.status["reason"] == "DeadlineExceeded"
    assert "pods not ready:\nhead pod demo-abcde-head-x" in result.status["message"]


def test_a_startup_failure_may_be_retried_on_a_new_cluster() -> None:
    assert JobFailedReason.RAY_CLUSTER_STARTUP_FAILED.allows_retry()
    failed = plan(observe(job(backoffLimit=1), troubles=(crash(3),)))
    again = RayJob.model_validate({**job(backoffLimit=1).to_dict(), "status": failed.status})
    assert plan(observe(again)).status["jobDeploymentStatus"] == "Retrying"


@given(
    restarts=st.lists(st.integers(0, 10), max_size=4),
    threshold=st.integers(1, 6),
    at=st.floats(0, 2000),
)
def test_the_policy_fails_exactly_when_a_pod_is_stuck_or_time_is_up(
    restarts: list[int], threshold: int, at: float
) -> None:
    settings = Settings(startup=StartupPolicy(crash_loop_restarts=threshold, timeout=900.0))
    troubles = tuple(crash(n, node_type=f"w{i}") for i, n in enumerate(restarts))
    result = plan(observe(job(), at=at, settings=settings, troubles=troubles))
    expect_fail = any(n >= threshold for n in restarts) or at >= 900.0
    assert (result.status["jobDeploymentStatus"] == "Failed") is expect_fail
    if expect_fail:
        assert result.status["reason"] == "RayClusterStartupFailed"
        # Deciding again from the failed status changes nothing more (no second failure counted).
        again = RayJob.model_validate({**job().to_dict(), "status": result.status})
        assert plan(observe(again, at=at, settings=settings, troubles=troubles)).status["failed"] == 1
