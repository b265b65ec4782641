"""`kray get` tables, compared as text: kubectl's plain layout, never a value cut to fit a terminal.

The renderers are checked directly, and the real command is checked piped (no TTY) at 80 and 200
columns and in an 80-column pseudo-terminal, with names longer than the terminal allows.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from kray.cli.render import age, cluster_table, job_rows, job_table
from kray.local.history import JobHistory
from kray.local.paths import LocalPaths
from kray.store import RAYCLUSTER
from tests.local_mode.conftest import KRAY, Local, raycluster, start_local, wait_for

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)

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
LONG = ("rayjob-sample-with-a-long-name-" + "x" * 40)[:47]
"""As long as a RayJob name may be (KubeRay caps RayCluster names at 53, RayJob names at 47)."""


def test_cluster_table() -> None:
    assert cluster_table([CLUSTER], now=NOW) == "\n".join(
        [
            "NAME   DESIRED WORKERS   AVAILABLE WORKERS   CPUS   MEMORY   GPUS   STATUS   AGE",
            "demo   1                 1                   2      4Gi      0      ready    2m",
        ]
    )


def test_wide_cluster_table_shows_where_the_dashboard_is() -> None:
    text = cluster_table([CLUSTER], now=NOW, wide=True)
    assert text.splitlines()[0].endswith("NAMESPACE   HEAD POD IP   DASHBOARD")
    assert text.splitlines()[1].endswith("default     127.0.0.1     127.0.0.1:28265")


def test_columns_are_as_wide_as_their_widest_value_and_nothing_is_cut() -> None:
    long = {**CLUSTER, "metadata": {**CLUSTER["metadata"], "name": LONG}}
    text = cluster_table([CLUSTER, long], now=NOW)
    pad = " " * (len(LONG) - len("NAME"))
    assert text == "\n".join(
        [
            f"NAME{pad}   DESIRED WORKERS   AVAILABLE WORKERS   CPUS   MEMORY   GPUS   STATUS   AGE",
            f"demo{' ' * (len(LONG) - 4)}   1                 1                   2      4Gi      0      ready    2m",
            f"{LONG}   1                 1                   2      4Gi      0      ready    2m",
        ]
    )
    assert "…" not in text


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
    assert job_table(rows, now=NOW) == "\n".join(
        [
            "NAME   JOB STATUS   DEPLOYMENT STATUS    RAY CLUSTER   START TIME             END TIME               AGE",
            "a      RUNNING      Running              a-1           2026-11-25T11:59:31Z   -                      30s",
            "b      SUCCEEDED    Complete (history)   b-1           2026-11-25T10:00:01Z   2026-11-25T10:01:00Z   2h",
        ]
    )


def test_age_is_compact() -> None:
    assert [age(t, now=NOW) for t in ("2026-11-25T11:59:55Z", "2026-11-23T12:00:00Z", None)] == ["5s", "2d", "-"]


# -- the real command, piped and in a terminal -----------------------------------------------------------------


@pytest.fixture(scope="module")
def listed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Local]:
    """A server holding a suspended RayCluster (no Ray starts) and a finished job only history remembers,
    both with 47-character names."""
    home = tmp_path_factory.mktemp("tables").resolve()
    history = JobHistory(LocalPaths(home).ensure())
    # A record as the RayJob controller leaves one, without running Ray.
    history._upsert(
        {
            "uid": f"u/{LONG}-1",
            "namespace": "default",
            "name": LONG,
            "submission_id": f"{LONG}-1",
            "cluster": f"{LONG}-c",
            "entrypoint": "python -c 'print(1)'",
            "job_status": "SUCCEEDED",
            "deployment_status": "Complete",
            "created": "2026-11-25T10:00:00Z",
            "start_time": "2026-11-25T10:00:01Z",
            "end_time": "2026-11-25T10:01:00Z",
        }
    )
    server = start_local(home)
    local = next(server)
    try:
        suspended = raycluster(LONG, workers=0)
        suspended["spec"]["suspend"] = True
        local.create(RAYCLUSTER, suspended)
        wait_for(
            lambda: ((local.get(RAYCLUSTER, LONG) or {}).get("status") or {}).get("state") == "suspended",
            timeout=30,
            what=f"RayCluster {LONG} suspended",
        )
        yield local
    finally:
        server.close()  # stops the server


def _env(local: Local, columns: int) -> dict[str, str]:
    env = {**local.env(), "COLUMNS": str(columns)}
    env.pop("NO_COLOR", None)
    return env


def _in_terminal(local: Local, args: list[str], *, columns: int) -> str:
    """``kray ARGS`` on a pseudo-terminal ``columns`` wide, as a user's shell runs it; returns what it showed."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = _env(local, columns)
    env.pop("COLUMNS")
    proc = subprocess.Popen([KRAY, *args], env=env, stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's last writer is gone
                break
            if not chunk:
                break
            chunks.append(chunk)
        elif proc.poll() is not None:
            break
    os.close(leader)
    assert proc.wait(timeout=10) == 0, b"".join(chunks)
    return b"".join(chunks).decode().replace("\r\n", "\n")


def _plain(text: str) -> str:
    """Without colour codes (a terminal may get them), and with every age as ``<age>`` (it moves on)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    return re.sub(r"\b\d+[smhd]$", "<age>", text, flags=re.MULTILINE)


@pytest.mark.parametrize("kind", ["clusters", "jobs"])
def test_kray_get_never_cuts_a_value_piped_or_in_a_narrow_terminal(listed: Local, kind: str) -> None:
    shown = {}
    for columns in (80, 200):
        result = subprocess.run(
            [KRAY, "get", kind], env=_env(listed, columns), capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stderr
        shown[f"piped at {columns}"] = _plain(result.stdout)
    shown["terminal at 80"] = _plain(_in_terminal(listed, ["get", kind], columns=80))
    first = shown["piped at 80"]
    header, row = first.splitlines()
    assert header.startswith(f"NAME{' ' * (len(LONG) - 4)}   "), first
    assert row.startswith(f"{LONG}   "), first
    expected_values = ["suspended"] if kind == "clusters" else ["SUCCEEDED", "Complete (history)", f"{LONG}-c"]
    for value in expected_values:
        assert f"   {value}   " in row, first
    assert "…" not in first
    for where, text in shown.items():
        assert text == first, f"{where} differs from piped at 80:\n{text}\n---\n{first}"
