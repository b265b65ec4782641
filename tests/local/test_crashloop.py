"""CrashLoopBackOff as the pod runner does it, read from the pod's status as a user reads it.

The claim (docs/local-mode.md, ``KRAY_POD_BACKOFF``): a failed container restarts after a back-off that starts
at ``backoff_start`` and doubles per restart up to ``backoff_cap``, as the kubelet's (10 s to 300 s), and goes
back to ``backoff_start`` after a run longer than twice the cap (the kubelet's 10 minutes); meanwhile it is
``waiting`` with reason ``CrashLoopBackOff`` and the kubelet's message
(``back-off 1m20s restarting failed container=NAME pod=POD_NAMESPACE(UID)``, the delay as Go prints a
duration), ``restartCount`` counts the restarts and ``lastState.terminated`` keeps the previous exit.
``OnFailure`` does not restart a container that exited 0, ``Never`` restarts nothing.

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

from kray.local.crashloop import go_duration, next_backoff
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


def message(p: Obj, delay: str) -> str:
    """The kubelet's back-off message for this pod's container (``format.Pod``: name_namespace(uid))."""
    meta = p["metadata"]
    return f"back-off {delay} restarting failed container={CONTAINER} pod={meta['name']}_{NAMESPACE}({meta['uid']})"


# -- the pure pieces ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delay", "shown"),
    [
        (10, "10s"),
        (80, "1m20s"),
        (300, "5m0s"),
        (0.5, "500ms"),
        (1.5, "1.5s"),
        (0, "0s"),
        (0.25, "250ms"),
        (0.0015, "1.5ms"),
        (0.000002, "2µs"),
        (60, "1m0s"),
        (3600, "1h0m0s"),
        (3725.5, "1h2m5.5s"),
    ],
)
def test_a_delay_reads_as_go_prints_a_duration(delay: float, shown: str) -> None:
    assert go_duration(delay) == shown


def test_the_back_off_step_doubles_to_the_cap_and_restarts_after_a_run_longer_than_twice_the_cap() -> None:
    start, cap = 10.0, 300.0
    steps: list[float] = []
    step: float | None = None
    for _ in range(7):
        step = next_backoff(step, ran=1.0, start=start, cap=cap)
        steps.append(step)
    assert steps == [10, 20, 40, 80, 160, 300, 300]
    assert next_backoff(300, ran=600.0, start=start, cap=cap) == 300  # the kubelet's: stable only after *more* than 2x
    assert next_backoff(300, ran=600.5, start=start, cap=cap) == 10
    assert next_backoff(40, ran=None, start=start, cap=cap) == 80  # a run of unknown length does not reset
    assert next_backoff(None, ran=None, start=start, cap=cap) == 10
    assert next_backoff(None, ran=1.0, start=500.0, cap=cap) == 300  # never above the cap


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
    assert messages == {n: message(found[n], f"{d}s") for n, d in expected.items()}

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


async def test_a_run_longer_than_twice_the_cap_sends_the_back_off_back_to_its_start(
    store: EmbeddedStore, tmp_path: Path
) -> None:
    """The kubelet forgets a container's back-off once it ran for more than twice the cap (10 minutes at the
    300 s cap): the next crash backs off from the start again, while restartCount keeps counting."""
    start, cap, long_run = 0.5, 1.5, 4.5  # 2 x cap = 3 s: the third run outlives it, the others are far below
    counter = tmp_path / "runs"
    script = (
        f'echo run >> "{counter}"; n=$(wc -l < "{counter}"); echo "started $(date +%s.%N) run $n"; '
        f'if [ "$n" -eq 3 ]; then sleep {long_run}; fi; exit 1'
    )
    # restartCount → the back-off before that restart: doubling 0.5, 1, then back to 0.5 after the long run.
    expected = {1: "500ms", 2: "1s", 3: "500ms", 4: "1s"}
    async with running(store, tmp_path, start=start, cap=cap):
        seen = await versions_until(
            store,
            pod("recovering", script, restart="Always"),
            lambda versions: max(back_offs(versions), default=0) >= len(expected),
            what=f"{len(expected)} back-offs",
        )

    found = back_offs(seen)
    assert sorted(found) == sorted(expected), [summary(p) for p in seen]
    messages = {n: status_of(p)["state"]["waiting"]["message"] for n, p in found.items()}
    assert messages == {n: message(found[n], d) for n, d in expected.items()}
    runs = {n: status_of(p)["lastState"]["terminated"] for n, p in found.items()}
    assert runs[3]["message"].split()[3] == "3", runs[3]  # the long run is the one before restart 3
    lasted = seconds(runs[3]["finishedAt"]) - seconds(runs[3]["startedAt"])
    assert lasted >= 2 * cap, f"the long run lasted only {lasted:.0f}s"
    # After the reset the restart still waited its (first) back-off.
    between = float(runs[4]["message"].split()[1]) - float(runs[3]["message"].split()[1])
    assert between >= long_run + start, f"run 4 started {between:.3f}s after run 3 began"


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
    assert backing_off["state"]["waiting"]["message"] == message(back_offs(seen)[1], "1s")
    assert (backing_off["lastState"]["terminated"]["exitCode"], backing_off["lastState"]["terminated"]["message"]) == (
        2,
        "boom",
    )
    assert seen[-1]["status"]["phase"] == "Running"  # the kubelet's: Running while a container is to be restarted
