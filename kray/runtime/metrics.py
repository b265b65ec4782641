"""controller-runtime's Prometheus metrics for kray's runtime, so KubeRay dashboards and alerts keep working.

KubeRay's operator is built on controller-runtime (v0.24), which exports one fixed set of series
for every controller, work queue and leader election; Grafana dashboards and alerts are written
against those names. kray's runtime therefore exports the same names, label sets, and histogram
buckets, with the same meanings:

* ``controller_runtime_reconcile_total{controller,result}`` (result: ``success``, ``error``,
  ``requeue``, ``requeue_after``), ``controller_runtime_reconcile_errors_total{controller}``,
  ``controller_runtime_terminal_reconcile_errors_total{controller}``,
  ``controller_runtime_reconcile_panics_total{controller}`` (always 0: Python has no panics; any
  exception a reconcile raises is an error), ``controller_runtime_reconcile_time_seconds{controller}``,
  ``controller_runtime_max_concurrent_reconciles{controller}``, ``controller_runtime_active_workers{controller}``;
* ``workqueue_depth{name,controller,priority}`` (priority is always "": no priority queue),
  ``workqueue_adds_total``, ``workqueue_queue_duration_seconds``, ``workqueue_work_duration_seconds``,
  ``workqueue_unfinished_work_seconds``, ``workqueue_longest_running_processor_seconds``,
  ``workqueue_retries_total`` (all ``{name,controller}``; both labels carry the controller's name, as
  controller-runtime sets them);
* ``leader_election_master_status{name}`` (1 while leading the Lease ``name``, else 0).

Metrics live in a :class:`RuntimeMetrics` bound to one ``CollectorRegistry`` — never the global
default registry — so the operator owns exactly one and tests build fresh ones. Everything that
accepts metrics takes ``metrics: RuntimeMetrics | None = None``; ``None`` (local mode) records
nothing. The two "unfinished work" gauges are computed at scrape time from the queue's in-flight
start times (client-go refreshes them every 500 ms; at scrape time they are never stale).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

RECONCILE_RESULTS = ("success", "error", "requeue", "requeue_after")

# controller-runtime's buckets (pkg/internal/controller/metrics): reconcile time 5 ms .. 60 s.
RECONCILE_BUCKETS = (
    *(0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
    *(1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 40, 50, 60),
)
# client-go's work queue buckets: ExponentialBuckets(10e-9, 10, 12), i.e. 10 ns .. 1000 s.
QUEUE_BUCKETS = tuple(1e-8 * 10**i for i in range(12))


class QueueMetrics:
    """One work queue's series (labels ``name`` and ``controller`` both = the queue's name).

    Follows client-go's queue metrics: ``add`` when a key becomes dirty (counted in depth until a
    worker takes it, even while an earlier copy is still processing), ``get`` when a worker takes
    it, ``done`` when the worker finishes, ``retry`` on every rate-limited re-add.
    """

    def __init__(self, metrics: RuntimeMetrics, name: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._depth = metrics.queue_depth.labels(name=name, controller=name, priority="")
        self._adds = metrics.queue_adds.labels(name=name, controller=name)
        self._latency = metrics.queue_latency.labels(name=name, controller=name)
        self._work = metrics.work_duration.labels(name=name, controller=name)
        self._retries = metrics.queue_retries.labels(name=name, controller=name)
        # Invariant: _added holds the keys counted in depth (dirty, not yet taken by a worker);
        # _started holds the keys a worker took and has not finished.
        self._added: dict[Hashable, float] = {}
        self._started: dict[Hashable, float] = {}
        metrics.unfinished_work.labels(name=name, controller=name).set_function(self._unfinished)
        metrics.longest_running.labels(name=name, controller=name).set_function(self._longest)

    def add(self, key: Hashable) -> None:
        self._adds.inc()
        self._depth.inc()
        self._added.setdefault(key, self._clock())

    def get(self, key: Hashable) -> None:
        self._depth.dec()
        now = self._clock()
        added = self._added.pop(key, None)
        if added is not None:
            self._latency.observe(now - added)
        self._started[key] = now

    def done(self, key: Hashable) -> None:
        started = self._started.pop(key, None)
        if started is not None:
            self._work.observe(self._clock() - started)

    def retry(self) -> None:
        self._retries.inc()

    def _unfinished(self) -> float:
        now = self._clock()
        return sum(now - started for started in list(self._started.values()))

    def _longest(self) -> float:
        now = self._clock()
        return max((now - started for started in list(self._started.values())), default=0.0)


@dataclass(frozen=True, slots=True)
class ControllerMetrics:
    """One controller's series; created (and zero-initialised, as controller-runtime does) by the controller."""

    reconcile_total: dict[str, Counter]
    reconcile_errors: Counter
    terminal_errors: Counter
    panics: Counter
    reconcile_time: Histogram
    max_concurrent: Gauge
    active_workers: Gauge

    def result(self, result: str) -> None:
        self.reconcile_total[result].inc()


class RuntimeMetrics:
    """controller-runtime's metric families, registered on ``registry`` (a fresh one by default).

    ``process=True`` also registers the standard ``process_*`` collector, as controller-runtime does.
    Serve with :meth:`render` (text exposition) or ``prometheus_client.make_asgi_app(m.registry)``.
    One instance per registry: registering the same names twice on one registry raises ValueError.
    """

    def __init__(self, registry: CollectorRegistry | None = None, *, process: bool = True) -> None:
        # prometheus_client's extra ``*_created`` series exist in no Go exporter; the switch is
        # process-wide and only ever built in the operator, which exports nothing that needs them.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry = registry if registry is not None else CollectorRegistry()
        controller = ("controller",)
        queue = ("name", "controller")
        self.reconcile_total = Counter(
            "controller_runtime_reconcile_total",
            "Total number of reconciliations per controller",
            ("controller", "result"),
            registry=registry,
        )
        self.reconcile_errors = Counter(
            "controller_runtime_reconcile_errors_total",
            "Total number of reconciliation errors per controller",
            controller,
            registry=registry,
        )
        self.terminal_errors = Counter(
            "controller_runtime_terminal_reconcile_errors_total",
            "Total number of terminal reconciliation errors per controller",
            controller,
            registry=registry,
        )
        self.panics = Counter(
            "controller_runtime_reconcile_panics_total",
            "Total number of reconciliation panics per controller",
            controller,
            registry=registry,
        )
        self.reconcile_time = Histogram(
            "controller_runtime_reconcile_time_seconds",
            "Length of time per reconciliation per controller",
            controller,
            buckets=RECONCILE_BUCKETS,
            registry=registry,
        )
        self.max_concurrent = Gauge(
            "controller_runtime_max_concurrent_reconciles",
            "Maximum number of concurrent reconciles per controller",
            controller,
            registry=registry,
        )
        self.active_workers = Gauge(
            "controller_runtime_active_workers",
            "Number of currently used workers per controller",
            controller,
            registry=registry,
        )
        self.queue_depth = Gauge(
            "workqueue_depth",
            "Current depth of workqueue by workqueue and priority",
            (*queue, "priority"),
            registry=registry,
        )
        self.queue_adds = Counter(
            "workqueue_adds", "Total number of adds handled by workqueue", queue, registry=registry
        )
        self.queue_latency = Histogram(
            "workqueue_queue_duration_seconds",
            "How long in seconds an item stays in workqueue before being requested",
            queue,
            buckets=QUEUE_BUCKETS,
            registry=registry,
        )
        self.work_duration = Histogram(
            "workqueue_work_duration_seconds",
            "How long in seconds processing an item from workqueue takes.",
            queue,
            buckets=QUEUE_BUCKETS,
            registry=registry,
        )
        self.unfinished_work = Gauge(
            "workqueue_unfinished_work_seconds",
            "How many seconds of work has been done that is in progress and hasn't been observed by "
            "work_duration. Large values indicate stuck threads. One can deduce the number of stuck "
            "threads by observing the rate at which this increases.",
            queue,
            registry=registry,
        )
        self.longest_running = Gauge(
            "workqueue_longest_running_processor_seconds",
            "How many seconds has the longest running processor for workqueue been running.",
            queue,
            registry=registry,
        )
        self.queue_retries = Counter(
            "workqueue_retries", "Total number of retries handled by workqueue", queue, registry=registry
        )
        self.leader_status = Gauge(
            "leader_election_master_status",
            "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, "
            "1 indicates master. 'name' is the string used to identify the lease. Please make sure "
            "to group by name.",
            ("name",),
            registry=registry,
        )
        if process:
            ProcessCollector(registry=registry)

    def queue(self, name: str, *, clock: Callable[[], float] = time.monotonic) -> QueueMetrics:
        return QueueMetrics(self, name, clock=clock)

    def controller(self, name: str, *, workers: int) -> ControllerMetrics:
        """The controller's series, initialised as controller-runtime does when a controller starts."""
        bound = ControllerMetrics(
            reconcile_total={result: self.reconcile_total.labels(name, result) for result in RECONCILE_RESULTS},
            reconcile_errors=self.reconcile_errors.labels(name),
            terminal_errors=self.terminal_errors.labels(name),
            panics=self.panics.labels(name),
            reconcile_time=self.reconcile_time.labels(name),
            max_concurrent=self.max_concurrent.labels(name),
            active_workers=self.active_workers.labels(name),
        )
        bound.max_concurrent.set(workers)
        bound.active_workers.set(0)
        return bound

    def leader(self, name: str, *, leading: bool) -> None:
        self.leader_status.labels(name).set(1.0 if leading else 0.0)

    def render(self) -> bytes:
        """The registry in Prometheus' text exposition format."""
        return generate_latest(self.registry)
