"""History asks an unreachable dashboard for a job's log less and less often, and says so once an outage.

The real :class:`JobHistory` and a real dashboard client pointed at a port that refuses connections,
driven as the RayJob controller drives it (a status every 0.1 s).
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

import structlog

from kray._ray.dashboard import AsyncDashboardClient
from kray._ray.dashboard_protocol import RetryPolicy
from kray.local.history import JobHistory
from kray.local.paths import LocalPaths

RUNNING = {"jobId": "bo-1", "jobStatus": "RUNNING", "jobDeploymentStatus": "Running", "rayClusterName": "bo-c"}
JOB = {"metadata": {"name": "bo", "namespace": "default", "uid": "u-bo", "creationTimestamp": "2026-11-25T10:00:00Z"}}


class CountingClient(AsyncDashboardClient):
    """The real client, counting the log requests it is asked to make."""

    asked: list[float]

    async def get_job_logs(self, job_id: str) -> str:
        self.asked.append(time.monotonic())
        return await super().get_job_logs(job_id)


def refused_address() -> str:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def drive(history: JobHistory, dashboard: CountingClient, *, seconds: float, status: dict[str, Any]) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await history.observe(job=JOB, status=status, dashboard=dashboard)
        await asyncio.sleep(0.1)


async def test_log_copies_back_off_while_the_dashboard_refuses_and_the_outage_is_logged_once(tmp_path: Path) -> None:
    history = JobHistory(LocalPaths(tmp_path).ensure())
    dashboard = CountingClient(refused_address(), retry=RetryPolicy(attempts=1))
    dashboard.asked = []
    try:
        with structlog.testing.capture_logs() as logs:
            await drive(history, dashboard, seconds=6.5, status=RUNNING)
        started = dashboard.asked[0]
        gaps = [round(b - a, 1) for a, b in zip(dashboard.asked, dashboard.asked[1:], strict=False)]
        # Every 0.1 s without backoff (~60 requests); with it at 0, 1, 3 s (then 7 s).
        assert len(dashboard.asked) == 3, f"asked at {[round(t - started, 1) for t in dashboard.asked]}"
        assert 0.9 <= gaps[0] <= 2.0, gaps
        assert 1.9 <= gaps[1] <= 3.0, gaps
        assert [e["event"] for e in logs if e["event"].startswith("history.")] == ["history.logs_unavailable"]

        # The job ends: its first copy after that is tried at once (it would be the complete one), then the
        # backoff holds again.
        asked = len(dashboard.asked)
        await drive(history, dashboard, seconds=1.0, status={**RUNNING, "jobStatus": "SUCCEEDED"})
        assert len(dashboard.asked) == asked + 1, dashboard.asked

        # The RayJob is deleted: the last copy is tried whatever the backoff says.
        await history.deleted(job=JOB, status={**RUNNING, "jobStatus": "SUCCEEDED"}, dashboard=dashboard)
        assert len(dashboard.asked) == asked + 2, dashboard.asked
    finally:
        await dashboard.aclose()


async def test_the_wait_doubles_to_thirty_seconds_and_a_copy_that_works_resets_it(tmp_path: Path) -> None:
    now = [0.0]
    history = JobHistory(LocalPaths(tmp_path).ensure())
    backoff = history.backoff
    backoff.clock = lambda: now[0]
    waits = []
    for _ in range(8):
        assert backoff.due("u")
        backoff.failed("u")
        step = 0.0
        while not backoff.due("u"):
            step += 0.5
            now[0] += 0.5
        waits.append(step)
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert backoff.succeeded("u")
    assert backoff.failed("u"), "a new outage after a success is reported again"
    now[0] += 1.0
    assert backoff.due("u")
