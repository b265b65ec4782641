"""The operator bench's accounting (audit-log counting, percentiles, the table), without a control plane.

Why: a miscount here -- another client's requests charged to an operator, a watch's hours counted as
apiserver time, a ratio upside down -- would make every benchmark run wrong without failing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from operator_bench_measure import Requests, TreeSampler, percentile, table


def _event(agent: str, verb: str, resource: str, *, ms: int, sub: str | None = None) -> dict[str, Any]:
    ref = {"resource": resource, **({"subresource": sub} if sub else {})}
    return {
        "stage": "ResponseComplete",
        "userAgent": agent,
        "verb": verb,
        "objectRef": ref,
        "requestReceivedTimestamp": "2026-01-01T00:00:00.000000Z",
        "stageTimestamp": f"2026-01-01T00:00:00.{ms * 1000:06d}Z",
    }


def test_requests_counts_only_the_operators_client_and_not_watch_durations(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    before = json.dumps(_event("python-httpx2/2.16.2", "list", "pods", ms=1)) + "\n"
    events = [
        _event("python-httpx2/2.16.2", "list", "pods", ms=20),
        _event("python-httpx2/2.16.2", "list", "pods", ms=30),
        _event("python-httpx2/2.16.2", "update", "rayclusters", ms=10, sub="status"),
        _event("python-httpx2/2.16.2", "watch", "pods", ms=900),
        _event("kuberay-operator/v1.5.0", "create", "pods", ms=5),
        _event("kwok/v0.8.0 (linux/amd64)", "patch", "pods", ms=5),
    ]
    log.write_text(before + "".join(json.dumps(e) + "\n" for e in events) + "not json\n")

    kray = Requests.read(log, start=len(before), operator="kray")
    assert kray.by_verb == {"list": 2, "update": 1, "watch": 1}
    assert kray.by_target["update rayclusters/status"] == 1
    assert abs(kray.server_seconds - 0.060) < 1e-9, "watch time must not count"
    assert kray.server_mean_ms() == {"list pods": 25.0, "update rayclusters/status": 10.0}
    assert sum(kray.agents.values()) == 6

    kuberay = Requests.read(log, start=len(before), operator="kuberay")
    assert kuberay.by_verb == {"create": 1}


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([10.0], 99) == 10.0
    assert percentile([0.0, 10.0, 20.0, 30.0, 40.0], 50) == 20.0
    assert abs(percentile([float(i) for i in range(101)], 99) - 99.0) < 1e-9
    assert percentile([], 50) != percentile([], 50)  # NaN: no samples is not a latency


def test_table_divides_kray_by_kuberay_and_marks_missing_runs() -> None:
    row: dict[str, Any] = {
        "time_to_ready_s": 8.0, "all_workers_created_s": 7.0, "queue_drained_s": 1.0, "scale_p50_ms": 40.0,
        "scale_p99_ms": 90.0, "peak_rss_mib": 100.0, "cpu_s": 4.0, "reconciles": 10.0, "reconcile_mean_ms": 5.0,
        "queue_wait_mean_ms": 2.0, "api_server_s": 3.0, "api_requests": 50.0, "api_by_verb": {"list": 5},
    }  # fmt: skip
    both = table({"kray": row, "kuberay": {**row, "time_to_ready_s": 10.0, "api_by_verb": {"list": 0}}})
    line = next(x for x in both.splitlines() if x.startswith("time to all ready"))
    assert [c.strip() for c in line.split("|")] == ["time to all ready (s)", "8.0", "10.0", "0.80"]
    listed = next(x for x in both.splitlines() if "API requests: list" in x)
    assert listed.rstrip().endswith("| -"), "no ratio against zero"
    alone = table({"kray": row})
    line = next(x for x in alone.splitlines() if x.startswith("peak RSS"))
    assert [c.strip() for c in line.split("|")] == ["peak RSS (MiB)", "100", "-", "-"]


def test_tree_sampler_sees_this_process() -> None:
    sampler = TreeSampler(psutil.Process().pid, interval=0.01)
    cpu = sampler.finish()
    assert sampler.peak_rss > 10 * 2**20
    assert cpu > 0
    assert sampler.finish() == cpu, "finish is idempotent"
