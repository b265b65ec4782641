"""Rendered `kray get` tables, compared as text (rich renders to a string, as in rich's own tests)."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, RenderableType

from kray.cli.render import age, cluster_table, job_rows, job_table

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)


def render(renderable: RenderableType) -> str:
    console = Console(width=140, file=io.StringIO(), color_system=None)
    console.print(renderable)
    output = console.file.getvalue()  # type: ignore[attr-defined]
    return "\n".join(line.rstrip() for line in output.splitlines())


CLUSTER: dict[str, Any] = {
    "metadata": {"name": "demo", "namespace": "default", "creationTimestamp": "2026-11-25T11:58:00Z"},
    "status": {
        "desiredWorkerReplicas": 1,
        "availableWorkerReplicas": 1,
        "desiredCPU": "2",
        "desiredMemory": "4Gi",
        "desiredGPU": "0",
        "state": "ready",
        "head": {"podIP": "127.0.0.1"},
        "endpoints": {"dashboard": "28265"},
    },
}


def test_cluster_table() -> None:
    assert render(cluster_table([CLUSTER], now=NOW)) == "\n".join(
        [
            "NAME   DESIRED WORKERS   AVAILABLE WORKERS   CPUS   MEMORY   GPUS   STATUS   AGE",
            "────────────────────────────────────────────────────────────────────────────────",
            "demo   1                 1                   2      4Gi      0      ready    2m",
        ]
    )


def test_wide_cluster_table_shows_where_the_dashboard_is() -> None:
    text = render(cluster_table([CLUSTER], now=NOW, wide=True))
    assert "HEAD POD IP" in text
    assert "127.0.0.1:28265" in text


def test_job_table_lists_live_jobs_then_history_only_jobs() -> None:
    live = {
        "metadata": {"name": "a", "namespace": "default", "creationTimestamp": "2026-11-25T11:59:30Z"},
        "spec": {"entrypoint": "python a.py"},
        "status": {
            "jobId": "a-1",
            "jobStatus": "RUNNING",
            "jobDeploymentStatus": "Running",
            "rayClusterName": "a-1",
            "startTime": "2026-11-25T11:59:31Z",
        },
    }
    gone = {
        "uid": "u/b-1",
        "namespace": "default",
        "name": "b",
        "submission_id": "b-1",
        "cluster": "b-1",
        "entrypoint": "python b.py",
        "job_status": "SUCCEEDED",
        "deployment_status": "Complete",
        "created": "2026-11-25T10:00:00Z",
        "start_time": "2026-11-25T10:00:01Z",
        "end_time": "2026-11-25T10:01:00Z",
    }
    duplicate = {**gone, "name": "a", "submission_id": "a-1"}
    rows = job_rows([live], [gone, duplicate])
    assert [r["name"] for r in rows] == ["a", "b"], "a history row of a live job is not listed twice"
    assert render(job_table(rows, now=NOW)) == "\n".join(
        [
            "NAME   JOB STATUS   DEPLOYMENT STATUS    RAY CLUSTER   START TIME             END TIME               AGE",
            "────────────────────────────────────────────────────────────────────────────────────────────────────────",
            "a      RUNNING      Running              a-1           2026-11-25T11:59:31Z   -                      30s",
            "b      SUCCEEDED    Complete (history)   b-1           2026-11-25T10:00:01Z   2026-11-25T10:01:00Z   2h",
        ]
    )


def test_age_is_compact() -> None:
    assert [age(t, now=NOW) for t in ("2026-11-25T11:59:55Z", "2026-11-23T12:00:00Z", None)] == ["5s", "2d", "-"]
