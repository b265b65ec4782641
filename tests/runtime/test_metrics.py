"""controller-runtime's metric names, labels and meanings, as a controller and its queue record them."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable

import pytest

from kray.runtime.controller import Controller, Result, TerminalError
from kray.runtime.informer import ObjectKey
from kray.runtime.metrics import RuntimeMetrics
from kray.runtime.workqueue import WorkQueue

# controller-runtime v0.24: pkg/internal/controller/metrics, pkg/metrics/workqueue.go, pkg/metrics/leaderelection.go
EXPECTED_FAMILIES = {
    "controller_runtime_reconcile_total": ("counter", {"controller", "result"}),
    "controller_runtime_reconcile_errors_total": ("counter", {"controller"}),
    "controller_runtime_terminal_reconcile_errors_total": ("counter", {"controller"}),
    "controller_runtime_reconcile_panics_total": ("counter", {"controller"}),
    "controller_runtime_reconcile_time_seconds": ("histogram", {"controller"}),
    "controller_runtime_max_concurrent_reconciles": ("gauge", {"controller"}),
    "controller_runtime_active_workers": ("gauge", {"controller"}),
    "workqueue_depth": ("gauge", {"name", "controller", "priority"}),
    "workqueue_adds_total": ("counter", {"name", "controller"}),
    "workqueue_queue_duration_seconds": ("histogram", {"name", "controller"}),
    "workqueue_work_duration_seconds": ("histogram", {"name", "controller"}),
    "workqueue_unfinished_work_seconds": ("gauge", {"name", "controller"}),
    "workqueue_longest_running_processor_seconds": ("gauge", {"name", "controller"}),
    "workqueue_retries_total": ("counter", {"name", "controller"}),
    "leader_election_master_status": ("gauge", {"name"}),
}


def value(metrics: RuntimeMetrics, family: str, /, **labels: str) -> float:
    found = metrics.registry.get_sample_value(family, labels)
    assert found is not None, f"no sample {family}{labels}"
    return found


async def until(predicate: Callable[[], bool], *, timeout: float, what: str, seen: Callable[[], object]) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last saw {seen()!r}")
        await asyncio.sleep(0.01)


def test_exposition_has_controller_runtimes_names_types_and_labels() -> None:
    metrics = RuntimeMetrics()
    metrics.controller("raycluster", workers=1)
    metrics.queue("raycluster").add("k")
    metrics.leader("ray-operator-leader", leading=True)
    text = metrics.render().decode()
    for family, (kind, labels) in EXPECTED_FAMILIES.items():
        assert f"# TYPE {family} {kind}\n" in text, family
        sample = "_bucket" if kind == "histogram" else ""
        line = next((ln for ln in text.splitlines() if ln.startswith(f"{family}{sample}{{")), None)
        assert line is not None, f"no sample of {family}"
        assert set(re.findall(r'(\w+)="', line)) - {"le"} == labels, line
    assert 'workqueue_depth{controller="raycluster",name="raycluster",priority=""} 1.0' in text
    assert "process_cpu_seconds_total" in text
    assert "_created" not in text, "controller-runtime exports no *_created series"


def test_registries_are_independent_and_none_is_the_global_default() -> None:
    from prometheus_client import REGISTRY

    one, two = RuntimeMetrics(process=False), RuntimeMetrics(process=False)
    one.leader("x", leading=True)
    assert two.registry.get_sample_value("leader_election_master_status", {"name": "x"}) is None
    assert REGISTRY.get_sample_value("leader_election_master_status", {"name": "x"}) is None
    with pytest.raises(ValueError, match="Duplicated"):
        RuntimeMetrics(one.registry)


async def test_queue_metrics_follow_client_go() -> None:
    metrics = RuntimeMetrics(process=False)
    now = [100.0]
    queue: WorkQueue[str] = WorkQueue(metrics=metrics.queue("q", clock=lambda: now[0]))
    labels = {"name": "q", "controller": "q"}

    queue.add("a")
    queue.add("a")  # already dirty: not an add
    queue.add("b")
    assert value(metrics, "workqueue_adds_total", **labels) == 2
    assert value(metrics, "workqueue_depth", priority="", **labels) == 2

    now[0] = 101.5
    key = await queue.get()
    assert key == "a"
    assert value(metrics, "workqueue_depth", priority="", **labels) == 1
    assert value(metrics, "workqueue_queue_duration_seconds_count", **labels) == 1
    assert value(metrics, "workqueue_queue_duration_seconds_sum", **labels) == pytest.approx(1.5)

    now[0] = 104.0
    assert value(metrics, "workqueue_unfinished_work_seconds", **labels) == pytest.approx(2.5)
    assert value(metrics, "workqueue_longest_running_processor_seconds", **labels) == pytest.approx(2.5)
    queue.add("a")  # dirty while processing: counted in depth, queued again at done()
    assert value(metrics, "workqueue_depth", priority="", **labels) == 2
    queue.done("a")
    assert value(metrics, "workqueue_work_duration_seconds_sum", **labels) == pytest.approx(2.5)
    assert value(metrics, "workqueue_unfinished_work_seconds", **labels) == 0
    assert value(metrics, "workqueue_longest_running_processor_seconds", **labels) == 0

    queue.add_rate_limited("c")
    queue.add_rate_limited("c")
    assert value(metrics, "workqueue_retries_total", **labels) == 2


async def test_a_controller_counts_results_errors_and_time() -> None:
    outcomes: dict[str, list[Result | Exception]] = {
        "ok": [Result.done()],
        "later": [Result.after(60)],
        "now": [Result.after(0), Result.done()],
        "fails": [RuntimeError("boom"), Result.done()],
        "terminal": [TerminalError("bad spec")],
    }
    calls: list[str] = []
    release = asyncio.Event()

    async def reconcile(key: ObjectKey) -> Result:
        calls.append(key[1])
        if key[1] == "slow":
            await release.wait()
            return Result.done()
        outcome = outcomes[key[1]].pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    metrics = RuntimeMetrics(process=False)
    controller = Controller("raycluster", reconcile, workers=3, metrics=metrics)
    c = {"controller": "raycluster"}
    assert value(metrics, "controller_runtime_max_concurrent_reconciles", **c) == 3
    for result in ("success", "error", "requeue", "requeue_after"):
        assert value(metrics, "controller_runtime_reconcile_total", result=result, **c) == 0
    stop = asyncio.Event()
    task = asyncio.create_task(controller.run(stop))
    try:
        controller.queue.add(ObjectKey(("ns", "slow")))
        await until(lambda: "slow" in calls, timeout=5, what="slow reconcile", seen=calls.copy)
        assert value(metrics, "controller_runtime_active_workers", **c) == 1
        for name in outcomes:
            controller.queue.add(ObjectKey(("ns", name)))
        # "fails" is retried after 5 ms backoff, "now" re-queued at once; "terminal" is not retried.
        await until(lambda: len(calls) == 8, timeout=5, what="8 reconciles", seen=calls.copy)
        await asyncio.sleep(0.1)
        assert sorted(calls) == sorted(["slow", "ok", "later", "now", "now", "fails", "fails", "terminal"])
        release.set()
        await until(
            lambda: value(metrics, "controller_runtime_active_workers", **c) == 0,
            timeout=5,
            what="idle workers",
            seen=lambda: value(metrics, "controller_runtime_active_workers", **c),
        )
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=5)
    total = {
        r: value(metrics, "controller_runtime_reconcile_total", result=r, **c)
        for r in ("success", "error", "requeue", "requeue_after")
    }
    assert total == {"success": 4, "error": 2, "requeue": 1, "requeue_after": 1}  # success: slow, ok, now, fails
    assert value(metrics, "controller_runtime_reconcile_errors_total", **c) == 2
    assert value(metrics, "controller_runtime_terminal_reconcile_errors_total", **c) == 1
    assert value(metrics, "controller_runtime_reconcile_panics_total", **c) == 0
    assert value(metrics, "controller_runtime_reconcile_time_seconds_count", **c) == 8
    q = {"name": "raycluster", "controller": "raycluster"}
    assert value(metrics, "workqueue_retries_total", **q) == 1
    assert value(metrics, "workqueue_work_duration_seconds_count", **q) == 8
