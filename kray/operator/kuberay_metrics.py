"""KubeRay's own operator metrics (``kuberay_*``), so dashboards and alerts written for KubeRay keep working.

Names and labels are KubeRay v1.7's (``controllers/ray/metrics``): info and status gauges are
produced at scrape time from the informers' caches (KubeRay lists through its cache too, so both
report what the operator currently sees), and the two duration gauges are set when a transition is
observed — ``kuberay_cluster_provisioned_duration_seconds`` when ``RayClusterProvisioned`` first
turns True, ``kuberay_job_execution_duration_seconds`` when a RayJob leaves ``Initializing``/``Running``
for ``Retrying``, ``Complete`` or ``Failed``. A deleted object's duration series are removed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kray.store import Obj

ENDED_DEPLOYMENT_STATES = frozenset({"Retrying", "Complete", "Failed"})


def _meta(obj: Obj) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("name", "")), str(meta.get("namespace", "")), str(meta.get("uid", ""))


def _time(text: object) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _status(obj: Obj | None) -> dict[str, Any]:
    """``obj.status`` when it is an object: under a CRD with validation off it may be any JSON."""
    status = (obj or {}).get("status")
    return status if isinstance(status, dict) else {}


def _provisioned(obj: Obj | None) -> dict[str, object] | None:
    conditions = _status(obj).get("conditions")
    for condition in conditions if isinstance(conditions, list) else ():
        if not isinstance(condition, dict):
            continue
        if condition.get("type") == "RayClusterProvisioned" and condition.get("status") == "True":
            return dict(condition)
    return None


class _CacheCollector(Collector):
    """The info/status gauges, read from ``objects()`` at every scrape."""

    def __init__(self, *, objects: Callable[[], Iterable[Obj]], build: Callable[[Iterable[Obj]], list[Metric]]) -> None:
        self._objects = objects
        self._build = build

    def collect(self) -> Iterator[Metric]:
        yield from self._build(list(self._objects()))

    def describe(self) -> Iterator[Metric]:
        return iter(())


def _cluster_families(clusters: Iterable[Obj]) -> list[Metric]:
    info = GaugeMetricFamily(
        "kuberay_cluster_info", "Metadata information about RayCluster custom resources",
        labels=["name", "namespace", "uid", "owner_kind"],
    )  # fmt: skip
    provisioned = GaugeMetricFamily(
        "kuberay_cluster_condition_provisioned", "Indicates whether the RayCluster is provisioned",
        labels=["name", "namespace", "uid", "condition"],
    )  # fmt: skip
    for cluster in clusters:
        name, namespace, uid = _meta(cluster)
        owner = ((cluster.get("metadata") or {}).get("labels") or {}).get("ray.io/originated-from-crd", "None")
        info.add_metric([name, namespace, uid, str(owner)], 1)
        provisioned.add_metric([name, namespace, uid, "true" if _provisioned(cluster) else "false"], 1)
    return [info, provisioned]


def _job_families(jobs: Iterable[Obj]) -> list[Metric]:
    info = GaugeMetricFamily(
        "kuberay_job_info", "Metadata information about RayJob custom resources", labels=["name", "namespace", "uid"]
    )
    status = GaugeMetricFamily(
        "kuberay_job_deployment_status", "The RayJobs current deployment status",
        labels=["name", "namespace", "uid", "deployment_status"],
    )  # fmt: skip
    for job in jobs:
        name, namespace, uid = _meta(job)
        info.add_metric([name, namespace, uid], 1)
        status.add_metric([name, namespace, uid, str(_status(job).get("jobDeploymentStatus", ""))], 1)
    return [info, status]


class KubeRayMetrics:
    """Registers KubeRay's metrics on ``registry``; feed it the informers' objects and changes."""

    def __init__(
        self,
        *,
        registry: CollectorRegistry,
        clusters: Callable[[], Iterable[Obj]],
        jobs: Callable[[], Iterable[Obj]],
        clock: Callable[[], datetime],
    ) -> None:
        self._clock = clock
        self.provisioned_duration = Gauge(
            "kuberay_cluster_provisioned_duration_seconds",
            "The time, in seconds, when a RayCluster's `RayClusterProvisioned` status transitions "
            "from false (or unset) to true",
            ["name", "namespace", "uid"],
            registry=registry,
        )
        self.job_duration = Gauge(
            "kuberay_job_execution_duration_seconds",
            "Duration from when the RayJob CR's JobDeploymentStatus transitions from Initializing to either "
            "the Retrying state or a terminal state, such as Complete or Failed.",
            ["name", "namespace", "uid", "job_deployment_status", "retry_count"],
            registry=registry,
        )
        self._job_series: dict[tuple[str, str, str], set[tuple[str, str]]] = {}
        registry.register(_CacheCollector(objects=clusters, build=_cluster_families))
        registry.register(_CacheCollector(objects=jobs, build=_job_families))

    def on_cluster(self, old: Obj | None, new: Obj | None) -> None:
        """Informer handler for RayClusters."""
        if new is None:
            if old is not None:
                self.provisioned_duration.remove(*_meta(old))
            return
        condition = _provisioned(new)
        if condition is None or _provisioned(old) is not None:
            return
        created = _time((new.get("metadata") or {}).get("creationTimestamp"))
        became = _time(condition.get("lastTransitionTime")) or self._clock()
        if created is not None:
            self.provisioned_duration.labels(*_meta(new)).set(max(0.0, (became - created).total_seconds()))

    def on_job(self, old: Obj | None, new: Obj | None) -> None:
        """Informer handler for RayJobs."""
        if new is None:
            if old is not None:
                for labels in self._job_series.pop(_meta(old), set()):
                    self.job_duration.remove(*_meta(old), *labels)
            return
        before = str(_status(old).get("jobDeploymentStatus", ""))
        status = _status(new)
        after = str(status.get("jobDeploymentStatus", ""))
        if after == before or after not in ENDED_DEPLOYMENT_STATES or before not in {"Initializing", "Running"}:
            return
        started = _time(status.get("startTime"))
        if started is None:
            return
        failed = status.get("failed")
        retries = failed if isinstance(failed, int) else 0
        elapsed = max(0.0, (self._clock() - started).total_seconds())
        self.job_duration.labels(*_meta(new), after, str(retries)).set(elapsed)
        self._job_series.setdefault(_meta(new), set()).add((after, str(retries)))
