"""The controller's concurrency and shutdown rules: one key never runs twice at once, different keys
run in parallel, and a stop lets reconciles in flight finish (within the drain timeout)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import pytest

from kray.runtime.controller import Controller, Reconcile, Result
from kray.runtime.informer import ObjectKey

A = ObjectKey(("ns", "a"))
B = ObjectKey(("ns", "b"))


async def until(predicate: Callable[[], bool], *, timeout: float, what: str, seen: Callable[[], object]) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last saw {seen()!r}")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running(controller: Controller) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(controller.run(stop))
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)


class Recorder:
    """A reconcile that logs start/end per key and blocks each key on a gate until released."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.active: set[str] = set()
        self.max_active_per_key: dict[str, int] = {}
        self.overlapped: set[frozenset[str]] = set()
        self.gates: dict[str, asyncio.Event] = {}

    def gate(self, name: str) -> asyncio.Event:
        return self.gates.setdefault(name, asyncio.Event())

    async def __call__(self, key: ObjectKey) -> Result:
        name = key[1]
        count = sum(1 for _, n in self.events if n == name) // 2
        if name in self.active:
            self.max_active_per_key[name] = 2  # a second reconcile of the same key started: the bug
        self.active.add(name)
        self.max_active_per_key.setdefault(name, 1)
        if len(self.active) > 1:
            self.overlapped.add(frozenset(self.active))
        self.events.append(("start", name))
        try:
            if count == 0:
                await self.gate(name).wait()
        finally:
            self.active.discard(name)
            self.events.append(("end", name))
        return Result.done()


async def test_one_key_is_never_reconciled_twice_at_once_while_different_keys_run_in_parallel() -> None:
    recorder = Recorder()
    controller = Controller("c", recorder, workers=3)
    async with running(controller):
        controller.queue.add(A)
        await until(lambda: ("start", "a") in recorder.events, timeout=5, what="a started", seen=recorder.events.copy)
        # While a's first reconcile is blocked, a is added again (several times) and b once.
        for _ in range(3):
            controller.queue.add(A)
        controller.queue.add(B)
        await until(lambda: ("start", "b") in recorder.events, timeout=5, what="b started", seen=recorder.events.copy)
        assert recorder.active == {"a", "b"}, "b must run in parallel with a (3 workers, 2 keys)"
        await asyncio.sleep(0.1)  # a free worker exists; it must still not pick a up
        assert recorder.events.count(("start", "a")) == 1
        recorder.gate("a").set()
        recorder.gate("b").set()
        await until(
            lambda: recorder.events.count(("end", "a")) == 2,
            timeout=5,
            what="a's re-queued reconcile",
            seen=lambda: recorder.events,
        )
    assert recorder.max_active_per_key == {"a": 1, "b": 1}
    assert frozenset({"a", "b"}) in recorder.overlapped
    # The three adds during the first reconcile collapse into exactly one more reconcile.
    a_events = [e for e in recorder.events if e[1] == "a"]
    assert a_events == [("start", "a"), ("end", "a"), ("start", "a"), ("end", "a")]


def blocking(seconds: float, log: list[str]) -> Reconcile:
    async def reconcile(key: ObjectKey) -> Result:
        log.append(f"start {key[1]}")
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            log.append(f"cancelled {key[1]}")
            raise
        log.append(f"end {key[1]}")
        return Result.done()

    return reconcile


async def wait_logged(log: list[str], entry: str) -> None:
    await until(lambda: entry in log, timeout=5, what=entry, seen=lambda: log)


async def test_stop_lets_the_reconcile_in_flight_finish_and_takes_no_new_key() -> None:
    log: list[str] = []
    controller = Controller("c", blocking(0.5, log), workers=1, drain_timeout=5)
    stop = asyncio.Event()
    task = asyncio.create_task(controller.run(stop))
    controller.queue.add(A)
    controller.queue.add(B)  # queued behind a (one worker)
    await wait_logged(log, "start a")
    t0 = time.monotonic()
    stop.set()
    controller.queue.add(ObjectKey(("ns", "c")))  # after the stop: never taken
    await asyncio.wait_for(task, timeout=5)
    assert log == ["start a", "end a"], "a finishes; b (queued) and c (added after stop) never start"
    assert 0.3 < time.monotonic() - t0 < 2


async def test_a_reconcile_still_running_at_the_drain_timeout_is_cancelled() -> None:
    log: list[str] = []
    controller = Controller("c", blocking(60, log), workers=2, drain_timeout=0.3)
    stop = asyncio.Event()
    task = asyncio.create_task(controller.run(stop))
    controller.queue.add(A)
    await wait_logged(log, "start a")
    t0 = time.monotonic()
    stop.set()
    await asyncio.wait_for(task, timeout=5)
    elapsed = time.monotonic() - t0
    assert log == ["start a", "cancelled a"]
    assert 0.25 < elapsed < 2, f"run returned {elapsed:.2f}s after stop; the drain timeout is 0.3s"


async def test_idle_workers_stop_at_once() -> None:
    controller = Controller("c", blocking(0, []), workers=4)
    stop = asyncio.Event()
    task = asyncio.create_task(controller.run(stop))
    await asyncio.sleep(0.05)
    t0 = time.monotonic()
    stop.set()
    await asyncio.wait_for(task, timeout=5)
    assert time.monotonic() - t0 < 0.5


async def test_cancelling_run_cancels_reconciles_in_flight() -> None:
    log: list[str] = []
    controller = Controller("c", blocking(60, log), workers=1)
    task = asyncio.create_task(controller.run(asyncio.Event()))
    controller.queue.add(A)
    await wait_logged(log, "start a")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=5)
    assert log == ["start a", "cancelled a"]


async def test_an_informer_survives_an_unexpected_error_and_relists() -> None:
    """Not only store errors: any failure of a list or watch is retried (it once died silently on bad JSON)."""
    from kray.runtime.informer import Informer
    from kray.store import POD, ObjectList

    calls = {"list": 0}

    class Flaky:
        async def list(self, resource: object, **_: object) -> ObjectList:
            calls["list"] += 1
            if calls["list"] == 1:
                raise ValueError("undecodable")
            return ObjectList(
                items=[{"metadata": {"name": "p", "namespace": "n", "resourceVersion": "1"}}], resource_version="1"
            )

        async def watch(self, resource: object, **_: object):  # type: ignore[no-untyped-def]
            await asyncio.sleep(3600)
            yield  # pragma: no cover

    stop = asyncio.Event()
    informer = Informer(Flaky(), POD, retry_delay=0.01)  # type: ignore[arg-type]
    task = asyncio.create_task(informer.run(stop))
    await asyncio.wait_for(informer.synced.wait(), timeout=5)
    assert calls["list"] == 2
    assert informer.get(("n", "p")) is not None  # type: ignore[arg-type]
    stop.set()
    await asyncio.wait_for(task, timeout=5)


def test_kuberays_raycluster_predicate_ignores_status_writes() -> None:
    from kray.runtime.controller import spec_or_metadata_changed

    old = {"metadata": {"generation": 1, "labels": {"a": "1"}}, "status": {"state": ""}}
    assert not spec_or_metadata_changed(old, {**old, "status": {"state": "ready"}})
    assert spec_or_metadata_changed(old, {**old, "metadata": {"generation": 2, "labels": {"a": "1"}}})
    assert spec_or_metadata_changed(old, {**old, "metadata": {"generation": 1, "labels": {"a": "2"}}})
    assert spec_or_metadata_changed(old, {**old, "metadata": {**old["metadata"], "annotations": {"x": "y"}}})
