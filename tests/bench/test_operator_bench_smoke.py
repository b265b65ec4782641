"""``bench/operator_bench.py`` still runs end to end and reports every metric (N=3, kray only).

Why: a benchmark nobody runs rots silently -- a renamed flag, a changed label or User-Agent and the long
N=1000 run fails after an hour. This runs it as a user does (its own control plane with the audit log,
kwok nodes, ``kray operator`` as a process) at the smallest size and checks the table and the JSON.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.tables import table_rows

pytestmark = [pytest.mark.k8s, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
METRICS = (
    "time to all ready (s)",
    "all worker pods created (s)",
    "queue empty, after all ready (s)",
    "scale 3->4 latency p50 (ms)",
    "scale 3->4 latency p99 (ms)",
    "peak RSS (MiB)",
    "CPU (s)",
    "RayCluster reconciles",
    "mean reconcile time (ms)",
    "mean work-queue wait (ms)",
    "apiserver time of its requests (s)",
    "API requests",
    "API requests: create",
    "API requests: list",
    "API requests: watch",
)


@pytest.mark.timeout(180)
def test_operator_bench_runs_for_kray_and_reports_every_metric(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    argv = [sys.executable, str(ROOT / "bench" / "operator_bench.py"), "--n", "3", "--m", "2", "--only", "kray",
            "--scale-interval", "0.2", "--json", str(out), "--log-dir", str(tmp_path / "logs")]  # fmt: skip
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=140, check=False)
    assert done.returncode == 0, f"bench exited {done.returncode}\n{done.stdout}\n{done.stderr[-3000:]}"

    rows = table_rows(done.stdout, width=4)
    assert rows.get("metric") == ["kray", "KubeRay", "kray/KubeRay"], done.stdout
    for metric in METRICS:
        assert metric in rows, f"table lacks {metric!r}:\n{done.stdout}"
        kray, kuberay, _ = rows[metric]
        assert kuberay == "-", f"{metric}: KubeRay was not run, yet has {kuberay!r}"
        assert math.isfinite(float(kray)), f"{metric}: kray value {kray!r}"

    result = json.loads(out.read_text())["results"]["kray"]
    assert 0 < result["time_to_ready_s"] < 60
    assert result["scale_samples"] == 2
    assert 0 < result["scale_p50_ms"] <= result["scale_p99_ms"] < 30_000
    assert result["peak_rss_mib"] > 20, "RSS sampled from the wrong process?"
    assert result["cpu_s"] > 0
    assert result["reconciles"] >= 3, "the operator's own /metrics count at least one reconcile per cluster"
    # 3 heads + 9 workers + 2 scale-ups, all created by kray's own client (seen in the audit log).
    assert result["api_top"].get("create pods") == 14, result["api_top"]
    assert result["api_by_verb"]["watch"] >= 5, "one watch per informer (5 kinds) at least"
