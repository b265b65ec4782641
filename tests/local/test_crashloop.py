"""CrashLoopBackOff as the pod runner does it, read from the pod's status as a user reads it.

The claim (docs/local-mode.md, ``KRAY_POD_BACKOFF``): a failed container restarts after a back-off that starts
at ``backoff_start`` and doubles per restart up to ``backoff_cap``, as the kubelet's (10 s to 300 s); meanwhile
it is ``waiting`` with reason ``CrashLoopBackOff`` and message ``back-off Ns restarting failed container``,
``restartCount`` counts the restarts and ``lastState.terminated`` keeps the previous exit. ``OnFailure`` does
not restart a container that exited 0, ``Never`` restarts nothing.

Every version of the pod is read from a watch (the store's change log), so no state is missed however slow
the machine. Timing is asserted only as lower bounds (a restart never comes before its back-off): on a loaded
machine anything may come later.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from kray.local.podrunner import FINALIZER, PodRunner, RunnerSettings
from kray.local.store import EmbeddedStore
from kray.store import POD, Obj

NAMESPACE = "default"
CONTAINER = "crasher"
WAIT = 40.0
"""Seconds any one wait may take: far above what it needs on an idle machine (the whole module needs ~11 s)."""


@contextlib.asynccontextmanager
async def running(store: EmbeddedStore, home: Path, *, start: float, cap: float) -> AsyncIterator[None]:
    """A pod runner on ``store`` whose back-off starts at ``start`` seconds and stops doubling at ``cap``."""
    settings = RunnerSettings(state_dir=home / "state", backoff_start=start, backoff_cap=cap, poll=0.05, grace=1)
    runner = PodRunner(store=store, settings=settings)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


def pod(name: str, script: str, *, restart: str) -> Obj:
    container = {"name": CONTAINER, "image": "busybox:1.36", "command": ["sh", "-c", script]}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "finalizers": [FINALIZER]},
        "spec": {"restartPolicy": restart, "containers": [container]},
    }


def status_of(p: Obj) -> dict[str, Any]:
    statuses = (p.get("status") or {}).get("containerStatuses") or [{}]
    return dict(statuses[0])


def summary(p: Obj) -> dict[str, Any]:
    s = status_of(p)
    phase = (p.get("status") or {}).get("phase")
    return {"phase": phase, "restartCount": s.get("restartCount"), "state": s.get("state")}


async def versions_until(
    store: EmbeddedStore, manifest: Obj, done: Callable[[list[Obj]], bool], *, what: str
) -> list[Obj]:
    """Create the pod and return every version of it the store held, in order, up to the first for which
    ``done`` (given all of them so far) holds; fails with the last versions seen."""
    since = (await store.list(POD, namespace=NAMESPACE)).resource_version
    await store.create(POD, manifest)
    name = manifest["metadata"]["name"]
    seen: list[Obj] = []
    try:
        async with asyncio.timeout(WAIT):
            async for event in store.watch(POD, namespace=NAMESPACE, resource_version=since):
                if event.object["metadata"]["name"] != name:
                    continue
                seen.append(event.object)
                if done(seen):
                    return seen
    except TimeoutError:
        pass
    last = [summary(p) for p in seen[-4:]]
    raise AssertionError(f"timed out after {WAIT:.0f}s waiting for {what}; pod {name}'s last versions: {last}")


def back_offs(seen: list[Obj]) -> dict[int, Obj]:
    """restartCount → the first version that showed that back-off (waiting in CrashLoopBackOff)."""
    found: dict[int, Obj] = {}
    for p in seen:
        s = status_of(p)
        if ((s.get("state") or {}).get("waiting") or {}).get("reason") == "CrashLoopBackOff":
            found.setdefault(int(s["restartCount"]), p)
    return found


def ended(p: Obj) -> bool:
    return (p.get("status") or {}).get("phase") in {"Succeeded", "Failed"}


def seconds(timestamp: str) -> float:
    return datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S%z").timestamp()


# -- the doubling ---------------------------------------------------------------------------------------


async def test_the_back_off_doubles_per_restart_and_stops_growing_at_the_cap(
    store: EmbeddedStore, tmp_path: Path
) -> None:
    # Whole seconds: the message says whole seconds, and the status timestamps have one-second resolution,
    # so a lower bound on them holds exactly (floor(a + d) - floor(a) >= d for a whole d).
    start, cap = 1.0, 4.0
    expected = {1: 1, 2: 2, 3: 4, 4: 4}  # restartCount → the back-off before that restart
    script = 'echo "started $(date +%s.%N)"; exit 1'
    async with running(store, tmp_path, start=start, cap=cap):
        seen = await versions_until(
            store,
            pod("doubling", script, restart="Always"),
            lambda versions: max(back_offs(versions), default=0) >= len(expected),
            what=f"{len(expected)} back-offs",
        )

    found = back_offs(seen)
    assert sorted(found) == sorted(expected), [summary(p) for p in seen]  # each restart backs off, none skipped
    messages = {n: status_of(p)["state"]["waiting"]["message"] for n, p in found.items()}
    assert messages == {n: f"back-off {d}s restarting failed container" for n, d in expected.items()}

    # restartCount n → the run before the n-th restart, as lastState keeps it while backing off.
    runs = {n: status_of(p)["lastState"]["terminated"] for n, p in found.items()}
    for n, run in runs.items():
        assert (run["exitCode"], run["reason"]) == (1, "Error"), run
        assert run["message"].startswith("started "), run  # FallbackToLogsOnError: this run's own output only
        assert run["startedAt"] <= run["finishedAt"], run
        assert status_of(found[n])["ready"] is False
    for n in list(expected)[1:]:
        previous, current = runs[n - 1], runs[n]
        delay = expected[n - 1]
        # The run after back-off n - 1 began no earlier than that back-off after the previous run finished.
        gap = seconds(current["startedAt"]) - seconds(previous["finishedAt"])
        assert gap >= delay, f"restart {n - 1} came {gap:.0f}s after the exit, within its {delay}s back-off"
        # The same from the container's own clock (sub-second): starts are at least the back-off apart.
        between = float(current["message"].split()[1]) - float(previous["message"].split()[1])
        assert between >= delay, f"a run started {between:.3f}s after the one before, within its {delay}s back-off"


# -- no restart where the policy says so ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("restart", "code", "phase", "reason"),
    [
        ("OnFailure", 0, "Succeeded", "Completed"),
        ("Never", 1, "Failed", "Error"),
        ("Never", 0, "Succeeded", "Completed"),
    ],
)
async def test_a_container_its_policy_does_not_restart_ends_the_pod_without_a_back_off(
    store: EmbeddedStore, tmp_path: Path, restart: str, code: int, phase: str, reason: str
) -> None:
    runs = tmp_path / "runs"
    script = f'echo run >> "{runs}"; exit {code}'
    start = 0.2
    async with running(store, tmp_path, start=start, cap=0.8):
        seen = await versions_until(
            store,
            pod("once", script, restart=restart),
            lambda versions: ended(versions[-1]),
            what=f"phase {phase}",
        )
        # Well past the back-off a restart would have waited: the container must still not have run again.
        await asyncio.sleep(5 * start)
        runs_after = runs.read_text().splitlines()
        final = await store.get(POD, "once", namespace=NAMESPACE)

    assert seen[-1]["status"]["phase"] == phase
    assert runs_after == ["run"], f"the container ran {len(runs_after)} times under restartPolicy {restart}"
    assert back_offs([*seen, final]) == {}, [summary(p) for p in seen]
    for p in (seen[-1], final):
        s = status_of(p)
        assert s["restartCount"] == 0, summary(p)
        assert s["lastState"] == {}, s
        assert (s["state"]["terminated"]["exitCode"], s["state"]["terminated"]["reason"]) == (code, reason), s
    assert final["status"]["phase"] == phase


async def test_a_failed_container_under_on_failure_is_restarted_after_a_back_off(
    store: EmbeddedStore, tmp_path: Path
) -> None:
    """The counterpart of the cases above: OnFailure does restart a container that failed."""
    script = "echo boom; exit 2"
    async with running(store, tmp_path, start=1.0, cap=1.0):
        seen = await versions_until(
            store,
            pod("flaky", script, restart="OnFailure"),
            lambda versions: 1 in back_offs(versions) or ended(versions[-1]),
            what="the first back-off",
        )
    assert 1 in back_offs(seen), f"not restarted: {summary(seen[-1])}"
    backing_off = status_of(back_offs(seen)[1])
    assert backing_off["state"]["waiting"]["message"] == "back-off 1s restarting failed container"
    assert (backing_off["lastState"]["terminated"]["exitCode"], backing_off["lastState"]["terminated"]["message"]) == (
        2,
        "boom",
    )
    assert seen[-1]["status"]["phase"] == "Running"  # the kubelet's: Running while a container is to be restarted
