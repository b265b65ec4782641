"""``bench/autoscaler_bench.py`` still runs end to end and prints every metric (v2 and the ``ray start`` baseline).

Why: a benchmark nobody runs rots silently. This runs it as a user does, at its smallest (one round of v2, a 5 s
idle timeout), and checks the table: every number positive, the phases in order, scale-down not before the idle
timeout (Ray's autoscaler waits ``idleTimeoutSeconds`` of idleness), the ratio against ``ray start``. v1 (which
never scales down locally) is left to the full run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.tables import table_rows

pytestmark = [pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
HEADER = ["v1", "v2", "ray start", "v1/ray start", "v2/ray start"]
IDLE = 5
UP = ("replicas raised (s)", "worker pod running (s)", "task on new worker (s)")
DOWN = ("asked down (s)", "worker gone (s)")


@pytest.mark.timeout(480)
def test_autoscaler_bench_runs_v2_and_the_ray_start_baseline() -> None:
    argv = [sys.executable, str(ROOT / "bench" / "autoscaler_bench.py"), "--only", "v2", "--idle", str(IDLE)]
    done = subprocess.run(
        [*argv, "--timeout", "120"], cwd=ROOT, capture_output=True, text=True, timeout=460, check=False
    )
    assert done.returncode == 0, f"bench exited {done.returncode}\n{done.stdout}\n{done.stderr[-3000:]}"
    rows = {metric: dict(zip(HEADER, cells, strict=True)) for metric, cells in table_rows(done.stdout, width=6).items()}
    assert rows.pop("metric", None) == dict(zip(HEADER, HEADER, strict=True)), done.stdout
    assert set(rows) == {*UP, *DOWN}, done.stdout
    v2 = {metric: float(cells["v2"]) for metric, cells in rows.items()}
    assert all(value > 0 for value in v2.values()), done.stdout
    assert [v2[m] for m in UP] == sorted(v2[m] for m in UP), f"scale-up phases out of order:\n{done.stdout}"
    assert IDLE <= v2["asked down (s)"] <= v2["worker gone (s)"], done.stdout
    baseline = rows["task on new worker (s)"]
    assert float(baseline["ray start"]) > 0, done.stdout
    expected = v2["task on new worker (s)"] / float(baseline["ray start"])
    assert abs(float(baseline["v2/ray start"]) - expected) <= 0.02 + 0.02 * expected, baseline
    for metric, cells in rows.items():
        assert cells["v1"] == cells["v1/ray start"] == "-", f"v1 was not run, yet {metric}: {cells}"
        if metric != "task on new worker (s)":
            assert cells["ray start"] == "-", f"{metric}: {cells}"
    assert "load average" in done.stdout, done.stdout
