"""``bench/serve_proxy_bench.py`` still runs end to end and prints every metric (its shortest run, ~5 s).

Why: a benchmark nobody runs rots silently; this runs it as a user does (three processes: upstream, proxy,
load) with the shortest runs and checks the table: both loads, every metric a finite number, no failed
request either way, and a ratio column for throughput.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.tables import table_rows

ROOT = Path(__file__).resolve().parents[2]
METRICS = (
    "requests/s",
    "p50 latency (ms)",
    "p99 latency (ms)",
    "failed requests",
    "proxy CPU per request (us)",
    "upstream CPU per request (us)",
)
LOADS = ("closed loop, 4 conns", "paced 200/s")


@pytest.mark.timeout(60)
def test_serve_proxy_bench_runs_and_reports_every_metric() -> None:
    argv = [sys.executable, str(ROOT / "bench" / "serve_proxy_bench.py"), "--seconds", "0.3", "--rounds", "1",
            "--connections", "4", "--rate", "200"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=45, check=False)
    assert done.returncode == 0, f"bench exited {done.returncode}\n{done.stdout}\n{done.stderr[-3000:]}"

    rows = table_rows(done.stdout, width=4)
    assert rows.pop("metric") == ["direct", "via proxy", "proxy vs direct"], done.stdout
    for load in LOADS:
        for metric in METRICS:
            direct, proxied, _ = rows[f"{load}: {metric}"]
            assert math.isfinite(float(direct)), (load, metric, done.stdout)
            assert math.isfinite(float(proxied)), (load, metric, done.stdout)
        assert rows[f"{load}: failed requests"][:2] == ["0.000", "0.000"], done.stdout
        assert float(rows[f"{load}: requests/s"][1]) > 0
        assert rows[f"{load}: requests/s"][2].endswith("x")
