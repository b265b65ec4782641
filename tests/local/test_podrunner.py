"""The pod runner against the real embedded store, with trivial shell containers (no Ray).

What it writes must read like the kubelet's: a restarted container keeps its previous exit in
``lastState.terminated``, a not-ready pod says ``ContainersNotReady``; and a deleted pod leaves nothing
on disk: its directory goes, and its cluster's Ray temp dir goes with the cluster's last pod, but only
ever inside the kray temp root. Every wait has a deadline and fails with what it last saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from kray.local import procs
from kray.local.paths import UnsafePath, ray_temp_root, remove_tree
from kray.local.podrunner import (
    CREATE_TIME_ANNOTATION,
    FINALIZER,
    PID_ANNOTATION,
    RAY_TEMP_DIR_ANNOTATION,
    TAG_ANNOTATION,
    PodRunner,
    RunnerSettings,
    pod_dir,
)
from kray.local.podstatus import pod_conditions
from kray.local.store import EmbeddedStore
from kray.local.tempdirs import MARKER, mark
from kray.store import POD, Obj
from kray.store.errors import NotFound

NAMESPACE = "default"
CONTAINER = "ray-head"
UNREADY = f"containers with unready status: [{CONTAINER}]"


@pytest.fixture
def settings(tmp_path: Path) -> RunnerSettings:
    return RunnerSettings(state_dir=tmp_path / "state", backoff_start=0.3, poll=0.05, grace=1)


@pytest.fixture
def temp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The kray temp root, moved under tmp_path (ray_temp_root() follows tempfile's directory)."""
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    root = ray_temp_root()
    root.mkdir(parents=True)
    assert root.is_relative_to(tmp_path)
    return root


@contextlib.asynccontextmanager
async def running(store: EmbeddedStore, settings: RunnerSettings) -> AsyncIterator[PodRunner]:
    runner = PodRunner(store=store, settings=settings)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        yield runner
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


@pytest.fixture
async def runner(store: EmbeddedStore, settings: RunnerSettings) -> AsyncIterator[PodRunner]:
    async with running(store, settings) as started:
        yield started


def pod(
    name: str, script: str, *, temp_dir: Path | str | None = None, finalizer: bool = True, restart: str = "Always"
) -> Obj:
    metadata: dict[str, Any] = {"name": name, "namespace": NAMESPACE}
    if finalizer:
        metadata["finalizers"] = [FINALIZER]
    if temp_dir is not None:
        metadata["annotations"] = {RAY_TEMP_DIR_ANNOTATION: str(temp_dir)}
    container = {"name": CONTAINER, "image": "rayproject/ray:2.52.0", "command": ["sh", "-c", script]}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {"restartPolicy": restart, "containers": [container]},
    }


async def get(store: EmbeddedStore, name: str) -> Obj | None:
    try:
        return await store.get(POD, name, namespace=NAMESPACE)
    except NotFound:
        return None


async def wait_pod(
    store: EmbeddedStore, name: str, check: Callable[[Obj | None], bool], *, what: str, timeout: float = 20.0
) -> Obj | None:
    """The pod (or None, once gone) as soon as ``check`` holds; fails with the last version seen."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        seen = await get(store, name)
        if check(seen):
            return seen
        if loop.time() > deadline:
            shown = seen and {"annotations": seen["metadata"].get("annotations"), "status": seen.get("status")}
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; pod {name} last: {shown}")
        await asyncio.sleep(0.02)


def ray(p: Obj | None) -> dict[str, Any]:
    statuses = ((p or {}).get("status") or {}).get("containerStatuses") or [{}]
    return dict(statuses[0])


def state_of(p: Obj | None) -> str:
    return next(iter(ray(p).get("state") or {"": None}))


def conditions(p: Obj | None) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in ((p or {}).get("status") or {}).get("conditions") or ()}


def crash_looping(p: Obj | None) -> bool:
    return ((ray(p).get("state") or {}).get("waiting") or {}).get("reason") == "CrashLoopBackOff"


def assert_last_exit_was_boom(p: Obj | None) -> None:
    last = (ray(p).get("lastState") or {}).get("terminated")
    assert last is not None, ray(p)
    assert last["exitCode"] == 3
    assert last["reason"] == "Error"
    assert "boom" in last["message"]
    assert last["startedAt"] <= last["finishedAt"]


# -- the kubelet's container status ----------------------------------------------------------------


async def test_a_crashed_container_keeps_its_exit_in_last_state_while_backing_off_and_once_running_again(
    store: EmbeddedStore, runner: PodRunner, tmp_path: Path
) -> None:
    marker = tmp_path / "crashed-once"
    script = f'if [ -e "{marker}" ]; then echo again; exec sleep 30; else touch "{marker}"; echo boom; exit 3; fi'
    await store.create(POD, pod("flaky", script))

    waiting = await wait_pod(store, "flaky", crash_looping, what="CrashLoopBackOff after the first exit")
    assert ray(waiting)["restartCount"] == 1
    assert_last_exit_was_boom(waiting)
    assert ray(waiting)["ready"] is False
    for kind in ("Ready", "ContainersReady"):
        assert conditions(waiting)[kind]["status"] == "False"
        assert conditions(waiting)[kind]["reason"] == "ContainersNotReady"
        assert conditions(waiting)[kind]["message"] == UNREADY

    back = await wait_pod(store, "flaky", lambda p: state_of(p) == "running", what="the restarted container")
    assert back is not None
    assert ray(back)["restartCount"] == 1
    assert_last_exit_was_boom(back)
    assert ray(back)["ready"] is True  # no readiness probe: ready once running
    assert back["status"]["phase"] == "Running"
    for kind in ("Ready", "ContainersReady"):
        assert conditions(back)[kind]["status"] == "True"
        assert "reason" not in conditions(back)[kind]
        assert "message" not in conditions(back)[kind]


async def test_every_restart_counts_and_each_back_off_tells_the_last_exit(
    store: EmbeddedStore, runner: PodRunner
) -> None:
    await store.create(POD, pod("crasher", "echo boom; exit 3"))
    counts: list[int] = []
    for expected in (1, 2):
        seen = await wait_pod(
            store,
            "crasher",
            lambda p, n=expected: crash_looping(p) and ray(p)["restartCount"] >= n,
            what=f"back-off number {expected}",
        )
        assert_last_exit_was_boom(seen)
        counts.append(ray(seen)["restartCount"])
    assert counts[0] < counts[1]


async def test_a_completed_container_under_never_ends_the_pod_with_its_exit(
    store: EmbeddedStore, runner: PodRunner
) -> None:
    await store.create(POD, pod("once", "echo done; exit 0", restart="Never"))
    ended = await wait_pod(store, "once", lambda p: (p or {}).get("status", {}).get("phase") == "Succeeded", what="end")
    terminated = ray(ended)["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed")
    assert terminated["startedAt"] <= terminated["finishedAt"]
    assert ray(ended)["lastState"] == {}  # it never ran before
    assert conditions(ended)["Ready"]["reason"] == "PodCompleted"  # the kubelet's, for a Succeeded pod


async def test_main_statuses_are_sorted_by_name_and_init_statuses_keep_spec_order(
    store: EmbeddedStore, runner: PodRunner
) -> None:
    """As the kubelet writes them (``SortedContainerStatuses``, ``SortStatusesOfInitContainers``): Ray's autoscaler
    reads ``containerStatuses[0]`` of a pod, so the order is not cosmetic."""
    manifest = pod("order", "sleep 30")
    manifest["spec"]["containers"] = [
        {"name": name, "image": "busybox", "command": ["sh", "-c", "sleep 30"]}
        for name in ("zeta", "ray-head", "alpha")
    ]
    manifest["spec"]["initContainers"] = [
        {"name": name, "image": "busybox", "command": ["true"]} for name in ("second-by-name", "first-by-name")
    ]
    await store.create(POD, manifest)

    def all_running(p: Obj | None) -> bool:
        statuses = ((p or {}).get("status") or {}).get("containerStatuses") or ()
        return len(statuses) == 3 and all("running" in (s.get("state") or {}) for s in statuses)

    seen = await wait_pod(store, "order", all_running, what="three running containers")
    assert seen is not None
    assert [s["name"] for s in seen["status"]["containerStatuses"]] == ["alpha", "ray-head", "zeta"]
    assert [s["name"] for s in seen["status"]["initContainerStatuses"]] == ["second-by-name", "first-by-name"]


async def test_an_adopted_container_keeps_the_last_state_the_pod_already_had(
    store: EmbeddedStore, settings: RunnerSettings, tmp_path: Path
) -> None:
    handle = procs.spawn(argv=["sleep", "30"], env=dict(os.environ), cwd=tmp_path, log_path=tmp_path / "adopted.log")
    try:
        manifest = pod("adopted", "echo never started; exit 9")
        manifest["metadata"]["annotations"] = {
            PID_ANNOTATION: str(handle.pid),
            CREATE_TIME_ANNOTATION: repr(handle.create_time),
            TAG_ANNOTATION: handle.tag or "",
        }
        await store.create(POD, manifest)
        earlier = {
            "exitCode": 3,
            "reason": "Error",
            "message": "boom\n",
            "startedAt": "2026-01-01T00:00:00Z",
            "finishedAt": "2026-01-01T00:00:05Z",
        }
        status = {
            "phase": "Running",
            "containerStatuses": [
                {
                    "name": CONTAINER,
                    "ready": True,
                    "restartCount": 4,
                    "image": "rayproject/ray:2.52.0",
                    "started": True,
                    "state": {"running": {"startedAt": "2026-01-01T00:00:10Z"}},
                    "lastState": {"terminated": earlier},
                }
            ],
        }
        await store.patch(POD, "adopted", namespace=NAMESPACE, patch={"status": status}, subresource="status")

        async with running(store, settings):
            again = await wait_pod(
                store,
                "adopted",
                lambda p: "ContainersReady" in conditions(p),
                what="the runner to report the adopted container",
            )
            assert ray(again)["state"] == {"running": {"startedAt": "2026-01-01T00:00:10Z"}}
            assert ray(again)["lastState"] == {"terminated": earlier}
            assert ray(again)["restartCount"] == 4
            assert again is not None
            assert again["metadata"]["annotations"][PID_ANNOTATION] == str(handle.pid)  # adopted, not respawned
    finally:
        procs.terminate_tree(handle, grace=1)


def test_a_condition_moves_its_transition_time_only_when_its_status_flips() -> None:
    def conditions_(previous: Any, *, unready: list[str], now: str, phase: str = "Running") -> Any:
        return pod_conditions(previous, uninitialized=[], unready=unready, phase=phase, now=now)

    first = conditions_(None, unready=["c"], now="T1")
    assert {c["lastTransitionTime"] for c in first} == {"T1"}
    assert first[-1] == {
        "type": "Ready",
        "status": "False",
        "lastTransitionTime": "T1",
        "reason": "ContainersNotReady",
        "message": "containers with unready status: [c]",
    }
    still = conditions_(first, unready=["c", "d"], now="T2")
    assert {c["lastTransitionTime"] for c in still} == {"T1"}
    assert still[-1]["message"] == "containers with unready status: [c d]"  # Go's %s of a slice
    flipped = {c["type"]: c for c in conditions_(still, unready=[], now="T3")}
    assert flipped["Ready"] == {"type": "Ready", "status": "True", "lastTransitionTime": "T3"}
    assert flipped["ContainersReady"]["lastTransitionTime"] == "T3"
    assert flipped["PodScheduled"]["lastTransitionTime"] == "T1"
    done = {c["type"]: c for c in conditions_(None, unready=["c"], now="T4", phase="Succeeded")}
    assert (done["Ready"]["status"], done["Ready"]["reason"]) == ("False", "PodCompleted")
    initializing = pod_conditions(None, uninitialized=["a", "b"], unready=["c"], phase="Pending", now="T5")
    assert initializing[1] == {
        "type": "Initialized",
        "status": "False",
        "lastTransitionTime": "T5",
        "reason": "ContainersNotInitialized",
        "message": "containers with incomplete status: [a b]",
    }


# -- leaving nothing behind -------------------------------------------------------------------------


def cluster_temp_dir(root: Path, name: str = "0123456789ab") -> Path:
    """A Ray temp dir as a running cluster leaves it (a session with a socket dir and logs)."""
    temp = root / name
    (temp / "session_latest" / "sockets").mkdir(parents=True)
    (temp / "session_latest" / "logs.txt").write_text("raylet says hi\n")
    return temp


async def delete_and_wait_gone(store: EmbeddedStore, name: str) -> None:
    await store.delete(POD, name, namespace=NAMESPACE)
    await wait_pod(store, name, lambda p: p is None, what=f"pod {name} to be gone")


def running_pod(p: Obj | None) -> bool:
    return state_of(p) == "running"


@pytest.mark.parametrize("finalizer", [True, False], ids=["with-finalizer", "without-finalizer"])
async def test_a_deleted_pod_takes_its_directory_and_the_last_one_its_clusters_temp_dir(
    store: EmbeddedStore, runner: PodRunner, settings: RunnerSettings, temp_root: Path, finalizer: bool
) -> None:
    temp = cluster_temp_dir(temp_root)
    for name in ("head", "worker"):
        await store.create(POD, pod(name, "echo up; exec sleep 30", temp_dir=temp, finalizer=finalizer))
    for name in ("head", "worker"):
        await wait_pod(store, name, running_pod, what=f"{name} running")
    head_dir, worker_dir = (pod_dir(settings.state_dir, NAMESPACE, n) for n in ("head", "worker"))
    assert (head_dir / f"{CONTAINER}.log").is_file()

    await delete_and_wait_gone(store, "worker")
    await _eventually(lambda: not worker_dir.exists(), what=f"{worker_dir} removed")
    assert temp.is_dir(), "the head still runs with this temp dir"
    assert (temp / "session_latest" / "logs.txt").is_file()
    assert head_dir.is_dir()

    await delete_and_wait_gone(store, "head")
    await _eventually(lambda: not head_dir.exists() and not temp.exists(), what="head dir and temp dir removed")
    assert temp_root.is_dir(), "the root itself stays"


async def test_after_a_runner_restart_the_temp_dir_of_a_pod_not_yet_adopted_stays(
    store: EmbeddedStore, settings: RunnerSettings, temp_root: Path
) -> None:
    # A restarted runner adopts live pods only as its queue reaches them: "in use" asks the store too.
    temp = cluster_temp_dir(temp_root)
    async with running(store, settings) as first:
        first.kill_on_exit = False  # (as `kray server stop --keep-pods` would: the pods outlive the runner)
        for name in ("a-deleted", "z-alive"):
            await store.create(POD, pod(name, "exec sleep 30", temp_dir=temp))
        for name in ("a-deleted", "z-alive"):
            await wait_pod(store, name, running_pod, what=f"{name} running")
    await store.delete(POD, "a-deleted", namespace=NAMESPACE)  # while no runner runs
    async with running(store, settings):
        await wait_pod(store, "a-deleted", lambda p: p is None, what="the leftover pod to be let go")
        alive = await get(store, "z-alive")
        assert running_pod(alive), alive
        assert temp.is_dir(), "z-alive's processes still use it"
        assert (temp / "session_latest" / "logs.txt").is_file()


@pytest.mark.parametrize("where", ["outside", "dotdot", "symlink", "root"])
async def test_a_temp_dir_outside_the_kray_root_is_never_removed(
    store: EmbeddedStore, runner: PodRunner, settings: RunnerSettings, temp_root: Path, tmp_path: Path, where: str
) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("mine\n")
    link = temp_root / "0123456789ab"
    link.symlink_to(precious, target_is_directory=True)
    annotated = {
        "outside": precious,
        "dotdot": f"{temp_root}/../../precious",
        "symlink": link,
        "root": temp_root,
    }[where]
    await store.create(POD, pod("victim", "exec sleep 30", temp_dir=annotated))
    await wait_pod(store, "victim", running_pod, what="victim running")
    await delete_and_wait_gone(store, "victim")
    await _eventually(
        lambda: not pod_dir(settings.state_dir, NAMESPACE, "victim").exists(), what="the pod's own dir removed"
    )
    assert (precious / "keep.txt").read_text() == "mine\n"
    assert link.is_symlink()
    assert temp_root.is_dir()


def test_remove_tree_deletes_only_strictly_inside_its_root_and_never_through_a_link(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "a" / "b").mkdir(parents=True)
    outside.mkdir()
    (outside / "keep").write_text("x")
    (root / "a" / "b" / "link-out").symlink_to(outside, target_is_directory=True)
    (root / "link").symlink_to(outside, target_is_directory=True)
    for unsafe in (root, root / "..", outside, root / "link", root / "a" / ".." / ".." / "outside"):
        with pytest.raises(UnsafePath):
            remove_tree(unsafe, inside=root)
    assert remove_tree(root / "missing", inside=root) is False
    assert remove_tree(root / "a", inside=root) is True
    assert not (root / "a").exists()
    assert (outside / "keep").read_text() == "x", "a link inside the tree is removed, not followed"


async def _eventually(check: Callable[[], bool], *, what: str, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.02)


async def test_krays_ray_comes_first_on_path_even_when_the_manifest_sets_path(
    store: EmbeddedStore, settings: RunnerSettings
) -> None:
    body = pod("path", "echo PATH=$PATH; sleep 30")
    body["spec"]["containers"][0]["env"] = [{"name": "PATH", "value": "/home/ray/anaconda3/bin:/usr/bin:/bin"}]
    async with running(store, settings):
        await store.create(POD, body)
        log = pod_dir(settings.state_dir, NAMESPACE, "path") / f"{CONTAINER}.log"

        def printed() -> bool:
            # The start marker quotes the command (``echo PATH=$PATH``): only a line the shell printed counts.
            return log.exists() and any(x.startswith("PATH=") for x in log.read_text().splitlines())

        deadline = asyncio.get_running_loop().time() + 20
        while not printed():
            assert asyncio.get_running_loop().time() < deadline, "the container printed nothing"
            await asyncio.sleep(0.05)
        line = next(x for x in log.read_text().splitlines() if x.startswith("PATH="))
        assert line == f"PATH={settings.bin_dir}:/home/ray/anaconda3/bin:/usr/bin:/bin"
        await store.delete(POD, "path", namespace=NAMESPACE)


async def test_a_ray_command_without_ray_does_not_start_and_says_how_to_install_it(
    store: EmbeddedStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    settings = RunnerSettings(state_dir=tmp_path / "state", bin_dir=empty, backoff_start=0.3, poll=0.05, grace=1)
    async with running(store, settings):
        await store.create(POD, pod("noray", "ulimit -n 1024; ray start --head --block"))

        def backing_off(seen: Obj | None) -> bool:
            statuses = ((seen or {}).get("status") or {}).get("containerStatuses") or [{}]
            return "terminated" in (statuses[0].get("lastState") or {})

        seen = await wait_pod(store, "noray", backing_off, what="a recorded start failure")
        assert seen is not None
        last = seen["status"]["containerStatuses"][0]["lastState"]["terminated"]
        assert (last["exitCode"], last["reason"]) == (127, "StartError")
        assert last["message"].startswith(f"`ray` was not found in {empty} nor on PATH")
        assert "pip install 'kray[local]'" in last["message"]
        await store.delete(POD, "noray", namespace=NAMESPACE)


async def test_a_starting_runner_removes_the_temp_dirs_of_its_state_dir_that_no_pod_names_and_only_those(
    store: EmbeddedStore, settings: RunnerSettings, temp_root: Path, tmp_path: Path
) -> None:
    used = cluster_temp_dir(temp_root, "used00000000")
    async with running(store, settings) as first:
        first.kill_on_exit = False  # its pod outlives it, as after a server killed with -9
        await store.create(POD, pod("worker", "exec sleep 30", temp_dir=used / "w1"))  # a worker's own dir
        await wait_pod(store, "worker", running_pod, what="worker running")
    assert (used / "w1" / MARKER).read_text().strip() == str(settings.state_dir), "the runner marks the dir it uses"
    stale = cluster_temp_dir(temp_root, "stale0000000")  # its pods are gone, its removal was cut short
    mark(stale / "w2", home=settings.state_dir)
    theirs = cluster_temp_dir(temp_root, "theirs000000")
    mark(theirs, home=tmp_path / "another-state-dir")
    unmarked = cluster_temp_dir(temp_root, "unmarked0000")
    async with running(store, settings):
        await _eventually(lambda: not stale.exists(), what="the unclaimed temp dir removed")
        assert [d for d in (used, theirs, unmarked) if not d.is_dir()] == []
        assert running_pod(await get(store, "worker"))


@pytest.mark.parametrize("kill_on_exit", [True, False])
async def test_a_stopping_runner_removes_the_temp_dirs_of_the_pods_it_stopped(
    store: EmbeddedStore, settings: RunnerSettings, temp_root: Path, kill_on_exit: bool
) -> None:
    temp = cluster_temp_dir(temp_root)
    async with running(store, settings) as runner:
        runner.kill_on_exit = kill_on_exit
        await store.create(POD, pod("head", "echo up; exec sleep 30", temp_dir=temp))
        seen = await wait_pod(store, "head", running_pod, what="head running")
        assert seen is not None
    head = procs.adopt(
        int(seen["metadata"]["annotations"][PID_ANNOTATION]),
        float(seen["metadata"]["annotations"][CREATE_TIME_ANNOTATION]),
        tag=seen["metadata"]["annotations"][TAG_ANNOTATION] or None,
    )
    try:
        # Stopped pods' sessions are over: their temp dir goes; detached pods keep running in it.
        assert temp.exists() is not kill_on_exit
        assert (head is None) is kill_on_exit
        assert pod_dir(settings.state_dir, NAMESPACE, "head").is_dir()  # logs stay with the pod
    finally:
        if head is not None:
            procs.terminate_tree(head, grace=1)


async def test_a_stop_that_interrupts_a_pod_deletion_still_removes_its_temp_dir(
    store: EmbeddedStore, tmp_path: Path, temp_root: Path
) -> None:
    # The container ignores SIGTERM, so its deletion waits out the grace period: stop the runner then.
    settings = RunnerSettings(state_dir=tmp_path / "state", backoff_start=0.3, poll=0.05, grace=3)
    temp = cluster_temp_dir(temp_root)
    async with running(store, settings) as runner:
        assert runner.kill_on_exit
        await store.create(POD, pod("stubborn", "trap '' TERM; echo up; while true; do sleep 0.1; done", temp_dir=temp))
        await wait_pod(store, "stubborn", running_pod, what="stubborn running")
        await store.delete(POD, "stubborn", namespace=NAMESPACE)
        await _eventually(lambda: bool(runner._leaving), what="the runner to start stopping the pod")
    assert not temp.exists(), "a stop in the middle of a pod's deletion left its cluster's temp dir"


# -- pods stop together -----------------------------------------------------------------------------

STUBBORN = "trap 'sleep {delay}; exit 0' TERM; echo up; while true; do sleep 0.1; done"
"""A container that outlives SIGTERM by ``delay`` seconds (within the grace period), as an idle Ray node."""


def stubborn(name: str, *, delay: float = 2.0, temp_dir: Path | None = None, finalizer: bool = True) -> Obj:
    return pod(name, STUBBORN.format(delay=delay), temp_dir=temp_dir, finalizer=finalizer)


def process_of(p: Obj | None) -> procs.ProcessHandle | None:
    """The pod's container process, if it still runs (not a zombie)."""
    annotations = ((p or {}).get("metadata") or {}).get("annotations") or {}
    if PID_ANNOTATION not in annotations:
        return None
    handle = procs.adopt(
        int(annotations[PID_ANNOTATION]),
        float(annotations[CREATE_TIME_ANNOTATION]),
        tag=annotations[TAG_ANNOTATION] or None,
    )
    with contextlib.suppress(psutil.Error):
        if handle is not None and psutil.Process(handle.pid).status() != psutil.STATUS_ZOMBIE:
            return handle
    return None


async def start_all(store: EmbeddedStore, pods: list[Obj]) -> dict[str, Obj]:
    """Create the pods and wait for each to run; returns each as last seen running (with its process)."""
    for body in pods:
        await store.create(POD, body)
    seen = {}
    for body in pods:
        name = body["metadata"]["name"]
        up = await wait_pod(store, name, lambda p: running_pod(p) and process_of(p) is not None, what=f"{name} up")
        assert up is not None
        seen[name] = up
    return seen


async def delete_all_and_watch(
    store: EmbeddedStore, seen: dict[str, Obj], *, check: Callable[[dict[str, Obj | None]], None], timeout: float = 30
) -> float:
    """Delete the pods at once and wait until all are gone, calling ``check`` with the pods as the store has
    them at every look; returns the seconds it took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    for name in seen:
        await store.delete(POD, name, namespace=NAMESPACE)
    while True:
        now = {name: await get(store, name) for name in seen}
        check(now)
        if all(p is None for p in now.values()):
            return loop.time() - started
        assert loop.time() - started < timeout, f"still there after {timeout}s: {[n for n, p in now.items() if p]}"
        await asyncio.sleep(0.02)


def gone_only_once_stopped(seen: dict[str, Obj]) -> Callable[[dict[str, Obj | None]], None]:
    def check(now: dict[str, Obj | None]) -> None:
        for name, p in now.items():
            finalizers = ((p or {}).get("metadata") or {}).get("finalizers") or []
            if FINALIZER not in finalizers:
                assert process_of(seen[name]) is None, f"{name}'s finalizer went while its process still ran"

    return check


async def test_pods_deleted_together_stop_together_and_each_goes_only_once_its_processes_are_gone(
    store: EmbeddedStore, tmp_path: Path
) -> None:
    settings = RunnerSettings(state_dir=tmp_path / "state", backoff_start=0.3, poll=0.05, grace=3)
    async with running(store, settings):
        alone = await start_all(store, [stubborn("alone")])
        one_stop = await delete_all_and_watch(store, alone, check=gone_only_once_stopped(alone))
        assert one_stop >= 2.0, f"the container outlives SIGTERM by 2 s, yet its pod went after {one_stop:.1f}s"

        seen = await start_all(store, [stubborn(f"pod-{i}") for i in range(3)])
        together = await delete_all_and_watch(store, seen, check=gone_only_once_stopped(seen))
    assert together < 2 * one_stop, f"3 pods took {together:.1f}s to stop, one alone {one_stop:.1f}s"


async def test_a_pod_created_while_others_stop_starts_at_once(store: EmbeddedStore, tmp_path: Path) -> None:
    settings = RunnerSettings(state_dir=tmp_path / "state", backoff_start=0.3, poll=0.05, grace=4)
    async with running(store, settings):
        seen = await start_all(store, [stubborn(f"old-{i}", delay=3) for i in range(3)])
        for name in seen:
            await store.delete(POD, name, namespace=NAMESPACE)
        await store.create(POD, pod("fresh", "echo up; exec sleep 30"))
        await wait_pod(store, "fresh", lambda p: running_pod(p) and process_of(p) is not None, what="fresh running")
        stopping = [name for name, p in seen.items() if process_of(p) is not None]
        assert stopping, "the new pod started only after every old pod had stopped"
        for name in seen:
            await wait_pod(store, name, lambda p: p is None, what=f"{name} gone")


@pytest.mark.parametrize("finalizer", [True, False], ids=["with-finalizer", "without-finalizer"])
async def test_a_clusters_temp_dir_goes_only_after_the_last_of_its_pods_stopping_together(
    store: EmbeddedStore, tmp_path: Path, temp_root: Path, finalizer: bool
) -> None:
    settings = RunnerSettings(state_dir=tmp_path / "state", backoff_start=0.3, poll=0.05, grace=4)
    temp = cluster_temp_dir(temp_root)
    pods = [stubborn(f"node-{i}", delay=delay, temp_dir=temp, finalizer=finalizer) for i, delay in enumerate((3, 1, 2))]
    async with running(store, settings):
        seen = await start_all(store, pods)

        def kept_while_in_use(now: dict[str, Obj | None]) -> None:
            if not temp.exists():
                running_still = [name for name, p in seen.items() if process_of(p) is not None]
                assert not running_still, f"the temp dir went while {running_still} still ran"
                present = [name for name, p in now.items() if p is not None]
                assert not present, f"the temp dir went while {present} were still in the store"

        await delete_all_and_watch(store, seen, check=kept_while_in_use)
        # Without the finalizer the pods leave the store at once, their processes later: watch those too.
        deadline = asyncio.get_running_loop().time() + 20
        while any(process_of(p) is not None for p in seen.values()):
            kept_while_in_use({})
            assert asyncio.get_running_loop().time() < deadline, "the pods' processes still run after 20s"
            await asyncio.sleep(0.02)
        await _eventually(lambda: not temp.exists(), what=f"{temp} removed with the cluster's last pod")


async def test_a_runner_stopping_while_pods_stop_leaves_no_process_and_no_temp_dir(
    store: EmbeddedStore, tmp_path: Path, temp_root: Path
) -> None:
    settings = RunnerSettings(state_dir=tmp_path / "state", backoff_start=0.3, poll=0.05, grace=4)
    temps = [cluster_temp_dir(temp_root, f"cluster{i:05d}") for i in range(4)]
    pods = [stubborn(f"pod-{i}", delay=3 if i == 0 else 0.2, temp_dir=temps[i]) for i in range(4)]
    async with running(store, settings) as runner:
        seen = await start_all(store, pods)
        for name in list(seen)[:3]:  # pod-3 is not deleted: the runner's stop kills it
            await store.delete(POD, name, namespace=NAMESPACE)
        await _eventually(lambda: bool(runner._leaving), what="the runner to start stopping the pods")
    still = [name for name, p in seen.items() if process_of(p) is not None]
    assert not still, f"the runner stopped while {still} still ran"
    assert [t.name for t in temps if t.exists()] == []
