"""``bench/autoscaler_node_bench.py`` still runs end to end and prints every phase for v1 and v2 (one round each).

Why: a benchmark nobody runs rots silently -- a changed log line or status field of the autoscaler and the issue's
numbers can no longer be taken. This runs it as a user does (its own control plane, node agent and operator; about
three minutes on an idle machine) and checks the table: every phase a positive number, in the order they happen.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.tables import table_rows

pytestmark = [pytest.mark.k8s, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
IDLE = 5
UP = ("replicas raised (s)", "worker pod running (s)", "task running (s)")
DOWN = ("asked down (s)", "worker gone (s)")


@pytest.mark.timeout(900)
def test_autoscaler_bench_reports_every_phase_for_both_versions() -> None:
    argv = [sys.executable, str(ROOT / "bench" / "autoscaler_node_bench.py"), "--idle", str(IDLE), "--timeout", "240"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=880, check=False)
    assert done.returncode == 0, f"bench exited {done.returncode}\n{done.stdout}\n{done.stderr[-3000:]}"

    rows = table_rows(done.stdout, width=3)
    assert rows.pop("metric", None) == ["v1", "v2"], done.stdout
    assert set(rows) == set(UP + DOWN), done.stdout
    for column, version in enumerate(("v1", "v2")):
        up = [float(rows[metric][column]) for metric in UP]
        down = [float(rows[metric][column]) for metric in DOWN]
        assert all(v > 0 for v in up + down), f"{version}: {dict(zip(UP + DOWN, up + down, strict=True))}"
        assert up == sorted(up), f"{version}: scale-up phases out of order: {dict(zip(UP, up, strict=True))}"
        assert down == sorted(down), f"{version}: scale-down phases out of order: {dict(zip(DOWN, down, strict=True))}"
        # The idle worker is not asked down before Ray's idle timeout has passed.
        assert down[0] >= IDLE, f"{version}: asked down {down[0]}s after the task, idleTimeoutSeconds {IDLE}"
