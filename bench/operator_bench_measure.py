"""What ``bench/operator_bench.py`` measures and how it reports: the operator's process tree (RSS, CPU),
its requests in the apiserver's audit log, its RayCluster controller's own metrics, and the table.

Why apart from the run: these are the parts whose meaning must stay fixed from one run (and one N) to the
next, and they need no control plane, so they can be read -- and checked -- on their own.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
from prometheus_client.parser import text_string_to_metric_families

OPERATORS = {"kray": "kray", "kuberay": "KubeRay"}
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived", "ResponseStarted"],  # one event per request, when it finishes
    "rules": [
        {"level": "None", "resources": [{"group": "coordination.k8s.io", "resources": ["leases"]}]},
        {"level": "None", "nonResourceURLs": ["/healthz*", "/readyz*", "/livez*"]},
        {"level": "Metadata"},
    ],
}
VERBS = ("get", "list", "watch", "create", "update", "patch", "delete")


def is_operator_agent(operator: str, agent: str) -> bool:
    """Whether an audit event's userAgent is that operator's client."""
    if operator == "kray":
        return agent.startswith("python-httpx2/")
    return agent.startswith(("kuberay-operator/", "ray-operator/"))


# ---- the process tree's resources --------------------------------------------------------------------
class TreeSampler:
    """Peak RSS of a process and its descendants, sampled every ``interval`` s on a thread."""

    def __init__(self, pid: int, *, interval: float = 0.2) -> None:
        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak_rss = 0
        self.samples = 0
        self.cpu_seconds: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rss-{pid}", daemon=True)
        self._thread.start()

    def _tree(self) -> list[psutil.Process]:
        with contextlib.suppress(psutil.Error):
            return [self.root, *self.root.children(recursive=True)]
        return []

    def _run(self) -> None:
        while True:
            rss = 0
            for proc in self._tree():
                with contextlib.suppress(psutil.Error):
                    rss += proc.memory_info().rss
            self.peak_rss, self.samples = max(self.peak_rss, rss), self.samples + 1
            if self._stop.wait(self.interval):
                return

    def finish(self) -> float:
        """Stop sampling (idempotent); the tree's CPU seconds at the first call (reaped children included)."""
        if self.cpu_seconds is not None:
            return self.cpu_seconds
        self._stop.set()
        self._thread.join(timeout=5)
        total = 0.0
        for proc in self._tree():
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                total += t.user + t.system + (t.children_user + t.children_system if proc is self.root else 0)
        self.cpu_seconds = total
        return total


def raycluster_samples(url: str) -> dict[str, float]:
    """The RayCluster controller's samples on an operator's /metrics (controller-runtime's names, which
    both operators export), summed over the other labels."""
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=10) as response:
        text = response.read().decode()
    sums: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if "raycluster" in (sample.labels.get("controller"), sample.labels.get("name")):
                sums[sample.name] += sample.value
    return sums


def controller_stats(url: str) -> dict[str, float]:
    """Reconciles, mean reconcile time and mean wait in the work queue, by the operator's own account."""
    sums = raycluster_samples(url)
    reconciles = sums["controller_runtime_reconcile_total"]
    waits = sums["workqueue_queue_duration_seconds_count"]
    return {
        "reconciles": reconciles,
        "reconcile_mean_ms": 1000 * sums["controller_runtime_reconcile_time_seconds_sum"] / max(reconciles, 1),
        "queue_wait_mean_ms": 1000 * sums["workqueue_queue_duration_seconds_sum"] / max(waits, 1),
    }


# ---- the audit log -----------------------------------------------------------------------------------
@dataclass
class Requests:
    """The audit events after a byte offset: the operator's own by verb and by verb+resource, the
    apiserver time they took (watches excluded: they last as long as the client keeps them), and every
    userAgent's count (to show what else talked to the apiserver meanwhile)."""

    by_verb: Counter[str] = field(default_factory=Counter)
    by_target: Counter[str] = field(default_factory=Counter)
    agents: Counter[str] = field(default_factory=Counter)
    server_seconds: float = 0.0
    server_by_target: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    @classmethod
    def read(cls, path: Path, *, start: int, operator: str) -> Requests:
        found = cls()
        with path.open("rb") as f:
            f.seek(start)
            for line in f:
                with contextlib.suppress(ValueError, KeyError):
                    found.add(json.loads(line), operator=operator)
        return found

    def add(self, event: dict[str, Any], *, operator: str) -> None:
        agent = str(event.get("userAgent", ""))
        self.agents[agent] += 1
        if not is_operator_agent(operator, agent):
            return
        ref = event.get("objectRef") or {}
        resource = ref.get("resource", event.get("requestURI", "?"))
        if ref.get("subresource"):
            resource += "/" + ref["subresource"]
        verb = event["verb"]
        self.by_verb[verb] += 1
        self.by_target[f"{verb} {resource}"] += 1
        if verb != "watch":
            began = datetime.fromisoformat(event["requestReceivedTimestamp"])
            took = (datetime.fromisoformat(event["stageTimestamp"]) - began).total_seconds()
            self.server_seconds += took
            self.server_by_target[f"{verb} {resource}"] += took

    def server_mean_ms(self) -> dict[str, float]:
        """Mean apiserver milliseconds per request, by verb+resource (a list that grows with N shows here)."""
        return {k: round(1000 * v / self.by_target[k], 2) for k, v in sorted(self.server_by_target.items())}


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default) of sorted ``values``."""
    if not values:
        return math.nan
    k = (len(values) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


# ---- the report ----------------------------------------------------------------------------------------
ROWS = (
    ("time to all ready (s)", "time_to_ready_s", "{:.1f}"),
    ("all worker pods created (s)", "all_workers_created_s", "{:.1f}"),
    ("queue empty, after all ready (s)", "queue_drained_s", "{:.1f}"),
    ("scale 3->4 latency p50 (ms)", "scale_p50_ms", "{:.0f}"),
    ("scale 3->4 latency p99 (ms)", "scale_p99_ms", "{:.0f}"),
    ("peak RSS (MiB)", "peak_rss_mib", "{:.0f}"),
    ("CPU (s)", "cpu_s", "{:.1f}"),
    ("RayCluster reconciles", "reconciles", "{:.0f}"),
    ("mean reconcile time (ms)", "reconcile_mean_ms", "{:.1f}"),
    ("mean work-queue wait (ms)", "queue_wait_mean_ms", "{:.1f}"),
    ("apiserver time of its requests (s)", "api_server_s", "{:.1f}"),
    ("API requests", "api_requests", "{:.0f}"),
)


def table(results: dict[str, dict[str, Any]]) -> str:
    rows = [(label, key, fmt) for label, key, fmt in ROWS]
    verbs = sorted({v for r in results.values() for v in r["api_by_verb"]}, key=lambda v: (v not in VERBS, v))
    rows += [(f"  API requests: {verb}", f"api:{verb}", "{:.0f}") for verb in verbs]

    def value(op: str, key: str) -> float | None:
        if op not in results:
            return None
        r = results[op]
        return float(r["api_by_verb"].get(key[4:], 0)) if key.startswith("api:") else float(r[key])

    lines = [f"{'metric':<36} | {'kray':>10} | {'KubeRay':>10} | kray/KubeRay"]
    lines.append("-" * len(lines[0]))
    for label, key, fmt in rows:
        a, b = value("kray", key), value("kuberay", key)
        ratio = f"{a / b:.2f}" if a is not None and b else "-"
        cells = [fmt.format(x) if x is not None else "-" for x in (a, b)]
        lines.append(f"{label:<36} | {cells[0]:>10} | {cells[1]:>10} | {ratio}")
    return "\n".join(lines)


def goals(results: dict[str, dict[str, Any]]) -> str:
    if set(results) != set(OPERATORS):
        return "goals: need both operators"
    kray, kuberay = results["kray"], results["kuberay"]
    time_ratio = kray["time_to_ready_s"] / kuberay["time_to_ready_s"]
    rss_ratio = kray["peak_rss_mib"] / kuberay["peak_rss_mib"]
    return (
        f"goal time-to-ready <= 0.8x KubeRay: {time_ratio:.2f}x ({'met' if time_ratio <= 0.8 else 'NOT met'}); "
        f"goal peak RSS <= KubeRay: {rss_ratio:.2f}x ({'met' if rss_ratio <= 1.0 else 'NOT met'})"
    )
