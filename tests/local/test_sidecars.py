"""Every container of a local pod runs, as on a node: sidecars next to the Ray container, native sidecars
(``initContainers[].restartPolicy: Always``) before the containers after them.

Real processes (``sh -c`` loops) on the real embedded store. Each container has its own process tree,
log, restarts and status entry; deleting the pod stops every tree (main containers first, then native
sidecars); a restarted runner adopts every container instead of starting it twice.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from kray.dev.procs import free_port
from kray.local import procs
from kray.local.containers import parse_records
from kray.local.podrunner import FINALIZER, PROCESSES_ANNOTATION, RunnerSettings, pod_dir
from kray.local.podstatus import pod_phase
from kray.local.store import EmbeddedStore
from kray.store import POD, Obj

from .test_podrunner import NAMESPACE, running, wait_pod

RAY_LIKE = "echo ray up; while :; do sleep 0.2; done"
"""The main container: long-lived, like ``ray start --block``."""
LOGGER = 'while :; do date >> "$LOG"; sleep 0.2; done'


@pytest.fixture
def settings(tmp_path: Path) -> RunnerSettings:
    return RunnerSettings(state_dir=tmp_path / "state", backoff_start=0.3, poll=0.05, grace=2)


def container(name: str, script: str, **extra: Any) -> dict[str, Any]:
    """A ``sh -c`` container; a unique marker in its command line tells its processes apart."""
    marker = f": {name}-{uuid.uuid4().hex[:8]}"
    return {"name": name, "image": "busybox", "command": ["sh", "-c", f"{marker}; {script}"], **extra}


def make_pod(
    name: str, containers: list[dict[str, Any]], *, init: list[dict[str, Any]] | None = None, restart: str = "Always"
) -> Obj:
    spec: dict[str, Any] = {"restartPolicy": restart, "containers": containers}
    if init:
        spec["initContainers"] = init
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "finalizers": [FINALIZER]},
        "spec": spec,
    }


def statuses(p: Obj | None, key: str = "containerStatuses") -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in ((p or {}).get("status") or {}).get(key) or ()}


def state(p: Obj | None, name: str, key: str = "containerStatuses") -> str:
    return next(iter(statuses(p, key).get(name, {}).get("state") or {"": None}))


def ready(p: Obj | None) -> str | None:
    return next(
        (c["status"] for c in ((p or {}).get("status") or {}).get("conditions") or () if c["type"] == "Ready"), None
    )


def all_running(*names: str) -> Callable[[Obj | None], bool]:
    return lambda p: all(state(p, n) == "running" for n in names)


def records(p: Obj | None) -> dict[str, procs.ProcessHandle]:
    """Each container's live process, from the Pod's records."""
    notes = ((p or {}).get("metadata") or {}).get("annotations") or {}
    found = {}
    for name, record in parse_records(notes.get(PROCESSES_ANNOTATION)).items():
        handle = record.adopt()
        if handle is not None:
            found[name] = handle
    return found


def marked(script_of: dict[str, Any]) -> list[psutil.Process]:
    """The live ``sh`` processes running this container's command (its marker in the command line)."""
    marker = script_of["command"][2].split(";")[0]
    out = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        line = " ".join(proc.info.get("cmdline") or ())
        if marker in line and proc.info.get("status") != psutil.STATUS_ZOMBIE:
            out.append(proc)
    return out


async def eventually(check: Callable[[], Any], *, what: str, timeout: float = 20.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        seen = check()
        if seen:
            return seen
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {seen!r}")
        await asyncio.sleep(0.05)


async def test_a_sidecar_runs_next_to_the_ray_container_with_its_own_log_status_and_restarts(
    store: EmbeddedStore, settings: RunnerSettings, tmp_path: Path
) -> None:
    shipped = tmp_path / "shipped.log"
    main = container("ray-head", RAY_LIKE)
    logger = container("logger", LOGGER, env=[{"name": "LOG", "value": str(shipped)}])
    async with running(store, settings):
        await store.create(POD, make_pod("with-logger", [main, logger]))
        seen = await wait_pod(store, "with-logger", all_running("ray-head", "logger"), what="both containers running")
        assert seen is not None
        entries = seen["status"]["containerStatuses"]
        assert [e["name"] for e in entries] == ["logger", "ray-head"]  # one entry each, by name (the kubelet's order)
        for entry in entries:
            assert (entry["ready"], entry["started"], entry["restartCount"]) == (True, True, 0)
            assert entry["image"] == "busybox"
        assert seen["status"]["phase"] == "Running"
        assert ready(seen) == "True"
        await eventually(lambda: shipped.is_file() and len(shipped.read_text().splitlines()) >= 2, what="log lines")
        logs = pod_dir(settings.state_dir, NAMESPACE, "with-logger")
        assert "ray up" in (logs / "ray-head.log").read_text()
        assert (logs / "logger.log").is_file()
        assert "ray up" not in (logs / "logger.log").read_text()

        before = records(seen)
        assert set(before) == {"ray-head", "logger"}
        assert before["ray-head"].pid != before["logger"].pid
        os.kill(before["logger"].pid, signal.SIGKILL)
        again = await wait_pod(
            store,
            "with-logger",
            lambda p: statuses(p)["logger"]["restartCount"] == 1 and state(p, "logger") == "running",
            what="the logger restarted once",
        )
        assert statuses(again)["logger"]["lastState"]["terminated"]["exitCode"] == 137
        assert statuses(again)["ray-head"]["restartCount"] == 0
        after = records(again)
        assert after["ray-head"].pid == before["ray-head"].pid, "the Ray container was not touched"
        assert after["logger"].pid != before["logger"].pid
        assert len(marked(main)) == 1
        assert len(marked(logger)) == 1
        size = shipped.stat().st_size
        await eventually(lambda: shipped.stat().st_size > size, what="the restarted logger to write")

        trees = [p for handle in after.values() for p in procs.members(handle)]
        await store.delete(POD, "with-logger", namespace=NAMESPACE)
        await wait_pod(store, "with-logger", lambda p: p is None, what="the pod gone")
        assert [p.pid for p in trees if p.is_running() and p.status() != psutil.STATUS_ZOMBIE] == []
        assert (marked(main), marked(logger)) == ([], [])


async def test_a_restarted_runner_adopts_every_container_and_starts_none_twice(
    store: EmbeddedStore, settings: RunnerSettings, tmp_path: Path
) -> None:
    main = container("ray-head", RAY_LIKE)
    logger = container("logger", LOGGER, env=[{"name": "LOG", "value": str(tmp_path / "shipped.log")}])
    native = container("native", "while :; do sleep 0.2; done", restartPolicy="Always")
    async with running(store, settings) as first:
        first.kill_on_exit = False  # the pods outlive the runner (a server restart)
        await store.create(POD, make_pod("adopted", [main, logger], init=[native]))
        seen = await wait_pod(store, "adopted", all_running("ray-head", "logger"), what="all running")
    before = {name: h.pid for name, h in records(seen).items()}
    assert set(before) == {"native", "ray-head", "logger"}
    try:
        async with running(store, settings):
            await asyncio.sleep(1.0)  # the new runner syncs the pod and watches its containers
            again = await get_pod(store, "adopted")
            assert {name: h.pid for name, h in records(again).items()} == before
            assert all(s["restartCount"] == 0 for s in statuses(again).values())
            for spec in (main, logger, native):
                assert len(marked(spec)) == 1, spec["name"]
            await store.delete(POD, "adopted", namespace=NAMESPACE)
            await wait_pod(store, "adopted", lambda p: p is None, what="the pod gone")
            for spec in (main, logger, native):
                assert marked(spec) == [], spec["name"]
    finally:
        for handle in records(seen).values():
            procs.terminate_tree(handle, grace=1)


async def get_pod(store: EmbeddedStore, name: str) -> Obj:
    return await store.get(POD, name, namespace=NAMESPACE)


async def test_native_sidecars_start_in_order_and_stop_after_the_main_containers(
    store: EmbeddedStore, settings: RunnerSettings, tmp_path: Path
) -> None:
    order, gate = tmp_path / "order", tmp_path / "gate"
    env = [{"name": "F", "value": str(order)}]
    # The sidecar is "started" only once its startup probe passes (after 1 s): the init container waits.
    sidecar = container(
        "native",
        f'trap \'echo native-stop >> "$F"; exit 0\' TERM; sleep 1; touch {gate}; echo native >> "$F"; '
        "while :; do sleep 0.1; done",
        env=env,
        restartPolicy="Always",
        startupProbe={"exec": {"command": ["test", "-e", str(gate)]}, "periodSeconds": 1},
    )
    init = container("setup", f'test -e {gate} && echo setup >> "$F"', env=env)
    main = container(
        "ray-head", 'trap \'echo main-stop >> "$F"; exit 0\' TERM; echo main >> "$F"; ' + RAY_LIKE, env=env
    )
    async with running(store, settings):
        await store.create(POD, make_pod("native", [main], init=[sidecar, init]))
        seen = await wait_pod(store, "native", all_running("ray-head"), what="the main container running")
        assert seen is not None
        inits = statuses(seen, "initContainerStatuses")
        assert list(inits) == ["native", "setup"]
        assert state(seen, "native", "initContainerStatuses") == "running"
        assert inits["native"]["started"] is True
        assert inits["setup"]["state"]["terminated"]["reason"] == "Completed"
        assert inits["setup"]["ready"] is True
        assert list(statuses(seen)) == ["ray-head"]
        assert seen["status"]["phase"] == "Running"
        assert ready(seen) == "True"
        await eventually(lambda: "main" in order.read_text(), what="the main container to write")
        assert order.read_text().split() == ["native", "setup", "main"]

        await store.delete(POD, "native", namespace=NAMESPACE)
        await wait_pod(store, "native", lambda p: p is None, what="the pod gone")
        assert order.read_text().split()[3:] == ["main-stop", "native-stop"]
        assert (marked(sidecar), marked(main)) == ([], [])


async def test_the_pod_is_ready_only_when_every_container_is(
    store: EmbeddedStore, settings: RunnerSettings, tmp_path: Path
) -> None:
    flag = tmp_path / "sidecar-ready"
    probe = {"exec": {"command": ["test", "-e", str(flag)]}, "periodSeconds": 1}
    main = container("ray-head", RAY_LIKE)
    slow = container("slow", "while :; do sleep 0.2; done", readinessProbe=probe)
    async with running(store, settings):
        await store.create(POD, make_pod("gated", [main, slow]))
        seen = await wait_pod(store, "gated", all_running("ray-head", "slow"), what="both running")
        await asyncio.sleep(1.5)  # a few probe periods
        seen = await get_pod(store, "gated")
        assert statuses(seen)["ray-head"]["ready"] is True
        assert statuses(seen)["slow"]["ready"] is False
        conditions = {c["type"]: c for c in seen["status"]["conditions"]}
        assert conditions["Ready"]["status"] == "False"
        assert conditions["Ready"]["message"] == "containers with unready status: [slow]"
        flag.touch()
        ok = await wait_pod(store, "gated", lambda p: ready(p) == "True", what="Ready once the sidecar is")
        assert all(s["ready"] for s in statuses(ok).values())
        await store.delete(POD, "gated", namespace=NAMESPACE)
        await wait_pod(store, "gated", lambda p: p is None, what="the pod gone")


@pytest.mark.parametrize(("until_ready", "ready_within"), [(1.0, 4.0), (None, None)], ids=["local", "node-agent"])
async def test_an_unready_container_is_probed_every_second_locally_and_at_its_period_on_the_node_agent(
    store: EmbeddedStore, tmp_path: Path, until_ready: float | None, ready_within: float | None
) -> None:
    """Local mode tries a readiness probe every second until it first succeeds; the node agent keeps the
    kubelet's period (here 30 s, so a probe that failed once is not tried again within the wait)."""
    settings = RunnerSettings(
        state_dir=tmp_path / "state", backoff_start=0.3, poll=0.05, grace=2, readiness_until_ready=until_ready
    )
    flag = tmp_path / "ready"
    probe = {"exec": {"command": ["test", "-e", str(flag)]}, "periodSeconds": 30}
    main = container("ray-head", "while :; do sleep 0.2; done", readinessProbe=probe)
    async with running(store, settings):
        await store.create(POD, make_pod("slow-ready", [main]))
        await wait_pod(store, "slow-ready", all_running("ray-head"), what="running")
        await asyncio.sleep(0.5)  # the first attempt (at once) has failed
        flag.touch()
        if ready_within is not None:
            await wait_pod(
                store, "slow-ready", lambda p: ready(p) == "True", what="Ready soon after", timeout=ready_within
            )
        else:
            await asyncio.sleep(3.0)
            assert ready(await get_pod(store, "slow-ready")) == "False"
        await store.delete(POD, "slow-ready", namespace=NAMESPACE)
        await wait_pod(store, "slow-ready", lambda p: p is None, what="the pod gone")


async def test_under_never_the_pod_ends_with_its_main_containers_and_takes_its_native_sidecar(
    store: EmbeddedStore, settings: RunnerSettings
) -> None:
    sidecar = container("native", "while :; do sleep 0.2; done", restartPolicy="Always")
    worker = container("ray-head", "sleep 0.5; echo done")
    regular = container("lingering", "sleep 1.5; exit 2")
    async with running(store, settings):
        await store.create(POD, make_pod("batch", [worker, regular], init=[sidecar], restart="Never"))
        first = await wait_pod(
            store, "batch", lambda p: state(p, "ray-head") == "terminated", what="the first container's exit"
        )
        # A main container still runs: the pod too (KubeRay deletes a Never pod whose Ray container ended).
        assert (first or {})["status"]["phase"] == "Running"
        ended = await wait_pod(
            store, "batch", lambda p: (p or {}).get("status", {}).get("phase") == "Failed", what="Failed"
        )
        assert statuses(ended)["lingering"]["state"]["terminated"]["exitCode"] == 2
        assert statuses(ended)["ray-head"]["state"]["terminated"]["exitCode"] == 0
        assert state(ended, "native", "initContainerStatuses") == "terminated"
        assert marked(sidecar) == []
        assert ready(ended) == "False"
        await store.delete(POD, "batch", namespace=NAMESPACE)


RUN = {"state": {"running": {}}, "started": True}
OK = {"state": {"terminated": {"exitCode": 0}}}
BAD = {"state": {"terminated": {"exitCode": 1}}}
NEW = {"state": {"waiting": {"reason": "ContainerCreating"}}}
BACKOFF = {"state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {"exitCode": 1}}}


@pytest.mark.parametrize(
    ("policy", "init", "sidecars", "containers", "terminal", "phase"),
    [
        ("Always", [NEW], [], [NEW], False, "Pending"),  # an init container has not completed
        ("Always", [OK], [NEW], [NEW], False, "Pending"),  # a native sidecar has not started
        ("Always", [OK], [RUN], [NEW, RUN], False, "Pending"),  # a main container never started
        ("Always", [OK], [RUN], [RUN, RUN], False, "Running"),
        ("Always", [], [], [RUN, BACKOFF], False, "Running"),  # a crash-looping sidecar: still Running
        ("Always", [], [], [BACKOFF], False, "Running"),  # all between restarts
        ("Never", [], [RUN], [OK, RUN], False, "Running"),  # the Ray container ended, a sidecar runs
        ("Never", [], [], [OK, BAD], False, "Failed"),
        ("Never", [], [RUN], [OK, OK], False, "Running"),  # until the kubelet stops the native sidecars
        ("Never", [], [{"state": {"terminated": {"exitCode": 143}}}], [OK, OK], True, "Succeeded"),  # stopped: ignored
        ("OnFailure", [], [], [OK, BACKOFF], False, "Running"),
        ("OnFailure", [], [], [OK, OK], False, "Succeeded"),
        ("Always", [BAD], [], [NEW], False, "Failed"),  # local: a failed init container fails the pod
    ],
)
def test_the_pod_phase_is_the_kubelets(
    policy: str, init: list[Any], sidecars: list[Any], containers: list[Any], terminal: bool, phase: str
) -> None:
    assert pod_phase(policy=policy, init=init, sidecars=sidecars, containers=containers, terminal=terminal) == phase


async def test_a_probe_names_its_containers_port(store: EmbeddedStore, settings: RunnerSettings) -> None:
    """``httpGet.port: probes`` is the container's port named ``probes`` (the operator chart's probes)."""
    port = free_port()
    server = f"exec {sys.executable} -m http.server {port} --bind 127.0.0.1"
    probe = {"httpGet": {"path": "/", "port": "probes"}, "periodSeconds": 1}
    web = container("web", server, ports=[{"name": "probes", "containerPort": port}], readinessProbe=probe)
    async with running(store, settings):
        await store.create(POD, make_pod("named", [web]))
        await wait_pod(store, "named", lambda p: ready(p) == "True", what="Ready by the probe on the named port")
        await store.delete(POD, "named", namespace=NAMESPACE)
        await wait_pod(store, "named", lambda p: p is None, what="the pod gone")
