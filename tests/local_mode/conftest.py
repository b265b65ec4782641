"""Local mode end to end: the kray server, the shared controllers and real Ray 2.60 processes.

Each module shares one server (its own state dir); tests create small clusters (a 1-CPU head and one
1-CPU worker) and tiny ``python -c`` entrypoints. Every wait is bounded and reports what it last saw.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx2
import psutil
import pytest
import yaml

from kray.api.manifest import parse_object
from kray.local import procs
from kray.local.paths import LocalPaths
from kray.local.podrunner import CREATE_TIME_ANNOTATION, HOME_ENV, PID_ANNOTATION, TAG_ANNOTATION
from kray.local.server.client import HttpStore
from kray.local.server.launcher import ServerInfo, ensure_server, stop_server
from kray.store import POD, RAYCLUSTER, RAYJOB, SECRET, Obj, Resource
from kray.store.errors import Conflict, NotFound

T = TypeVar("T")
KRAY = str(Path(sys.executable).parent / "kray")
RAY_VERSION = "2.60.0"
IMAGE = f"rayproject/ray:{RAY_VERSION}"
CLUSTER_READY_TIMEOUT = 90.0


def wait_for(probe: Callable[[], T], *, timeout: float, what: str, interval: float = 0.5) -> T:
    """Poll ``probe`` until it returns something truthy; fail with the last value seen after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}")
        time.sleep(interval)


# -- manifests ---------------------------------------------------------------------------------------------


def _container(name: str) -> dict[str, Any]:
    return {"name": name, "image": IMAGE, "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}


def cluster_spec(*, workers: int = 1, max_workers: int = 3, worker_template: dict[str, Any] | None = None) -> Obj:
    """A 1-CPU head and ``workers`` 1-CPU workers (KubeRay's shape: ray-head / ray-worker containers)."""
    template = worker_template or {"spec": {"containers": [_container("ray-worker")]}}
    return {
        "rayVersion": RAY_VERSION,
        "headGroupSpec": {
            "rayStartParams": {"num-cpus": "1"},
            "template": {"spec": {"containers": [_container("ray-head")]}},
        },
        "workerGroupSpecs": [
            {
                "groupName": "small",
                "replicas": workers,
                "minReplicas": 0,
                "maxReplicas": max_workers,
                "rayStartParams": {"num-cpus": "1"},
                "template": template,
            }
        ],
    }


def raycluster(name: str, **kwargs: Any) -> Obj:
    return {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": name}, "spec": cluster_spec(**kwargs)}


def rayjob(name: str, entrypoint: str, *, selector: str | None = None, **spec: Any) -> Obj:
    """An HTTPMode RayJob; with ``selector`` it runs on that existing RayCluster instead of its own."""
    body: dict[str, Any] = {"submissionMode": "HTTPMode", "entrypoint": entrypoint, **spec}
    if selector is None:
        body.setdefault("rayClusterSpec", cluster_spec())
    else:
        body["clusterSelector"] = {"ray.io/cluster": selector}
    return {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": name}, "spec": body}


def normalized(obj: Obj) -> Obj:
    """The manifest as ``kray apply`` would store it (validated, KubeRay defaults filled in)."""
    out = parse_object(copy.deepcopy(obj)).to_dict()
    out["metadata"].setdefault("namespace", "default")
    return out


def status(obj: Obj | None) -> dict[str, Any]:
    return (obj or {}).get("status") or {}


def condition(obj: Obj | None, type_: str) -> str | None:
    return next((c.get("status") for c in status(obj).get("conditions") or () if c.get("type") == type_), None)


def annotations(obj: Obj) -> dict[str, str]:
    return obj["metadata"].get("annotations") or {}


def pod_line(pod: Obj) -> str:
    """One pod as a failing wait reports it: phase, readiness, each container's state and last log lines."""
    status = pod.get("status") or {}
    ready = next((c.get("status") for c in status.get("conditions") or () if c.get("type") == "Ready"), None)
    parts = [f"pod {pod['metadata']['name']}: phase={status.get('phase')} ready={ready}"]
    if status.get("message"):
        parts.append(f"message={str(status['message'])[-300:]!r}")
    for container in status.get("containerStatuses") or ():
        state = container.get("state") or {}
        last = ((container.get("lastState") or {}).get("terminated") or {}).get("message") or ""
        tail = " | ".join(last.strip().splitlines()[-3:])
        parts.append(
            f"{container.get('name')}: {next(iter(state), '?')} "
            f"{(state.get('waiting') or {}).get('reason') or ''} restarts={container.get('restartCount')}"
            + (f" last log: {tail}" if tail else "")
        )
    return "; ".join(parts)


# -- one local-mode server per state dir -------------------------------------------------------------------


@dataclass
class Local:
    """A kray server on a state dir, with a synchronous view of its store and its CLI."""

    paths: LocalPaths
    info: ServerInfo | None = None
    manifests: Path = field(init=False)

    def __post_init__(self) -> None:
        self.manifests = self.paths.home / "manifests"
        self.manifests.mkdir(parents=True, exist_ok=True)

    @property
    def home(self) -> Path:
        return self.paths.home

    def start(self) -> ServerInfo:
        self.info = ensure_server(self.paths, timeout=60)
        return self.info

    def stop(self) -> list[int]:
        self.info = None
        return stop_server(self.paths, timeout=60)

    # CLI

    def env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "KRAY_"))}
        return {**base, "KRAY_HOME": str(self.home), "NO_COLOR": "1", "COLUMNS": "200"}

    def kray(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [KRAY, *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def manifest(self, obj: Obj, name: str | None = None) -> Path:
        path = self.manifests / f"{name or obj['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(obj, sort_keys=False))
        return path

    # the store, synchronously

    def call(self, action: Callable[[HttpStore], Awaitable[T]]) -> T:
        info = self.info or self.start()

        async def run() -> T:
            store = HttpStore(base_url=info.url, token=info.token)
            try:
                return await action(store)
            finally:
                await store.close()

        return asyncio.run(run())

    def get(self, resource: Resource, name: str, namespace: str = "default") -> Obj | None:
        async def action(store: HttpStore) -> Obj | None:
            try:
                return await store.get(resource, name, namespace=namespace)
            except NotFound:
                return None

        return self.call(action)

    def list(self, resource: Resource, *, selector: str | None = None, namespace: str = "default") -> list[Obj]:
        return self.call(lambda s: s.list(resource, namespace=namespace, label_selector=selector)).items

    def create(self, resource: Resource, obj: Obj) -> Obj:
        return self.call(lambda s: s.create(resource, normalized(obj)))

    def update(self, resource: Resource, name: str, mutate: Callable[[Obj], None], namespace: str = "default") -> Obj:
        """Get, change, replace (the whole object, as ``kubectl replace``), retrying on conflicts."""

        async def action(store: HttpStore) -> Obj:
            for _ in range(20):
                current = await store.get(resource, name, namespace=namespace)
                mutate(current)
                try:
                    return await store.replace(resource, current)
                except Conflict:
                    await asyncio.sleep(0.2)
            raise AssertionError(f"could not update {resource.kind} {name}: conflicts")

        return self.call(action)

    def delete(self, resource: Resource, name: str, namespace: str = "default") -> None:
        async def action(store: HttpStore) -> None:
            with contextlib.suppress(NotFound):
                await store.delete(resource, name, namespace=namespace, propagation="Foreground")

        self.call(action)

    def pods(self, cluster: str) -> list[Obj]:
        return self.list(POD, selector=f"ray.io/cluster={cluster}")

    def live_pods(self, cluster: str) -> list[Obj]:
        return [p for p in self.pods(cluster) if not p["metadata"].get("deletionTimestamp")]

    def workers(self, cluster: str) -> list[Obj]:
        return [p for p in self.live_pods(cluster) if p["metadata"]["labels"].get("ray.io/node-type") == "worker"]

    # waits

    def wait_cluster_ready(self, name: str, *, workers: int = 1, timeout: float = CLUSTER_READY_TIMEOUT) -> Obj:
        def ready() -> Obj | None:
            cluster = self.get(RAYCLUSTER, name)
            st = status(cluster)
            ok = st.get("state") == "ready" and st.get("readyWorkerReplicas", 0) == workers
            ok = ok and len(self.live_pods(name)) == workers + 1
            return cluster if ok else None

        try:
            return wait_for(ready, timeout=timeout, what=f"RayCluster {name} ready with {workers} worker(s)")
        except AssertionError as error:
            cluster = self.get(RAYCLUSTER, name)
            st = status(cluster)
            seen = [
                f"RayCluster state={st.get('state')} reason={st.get('reason')} "
                f"readyWorkerReplicas={st.get('readyWorkerReplicas')}"
                if cluster
                else "no RayCluster",
                *(pod_line(pod) for pod in self.live_pods(name)),
            ]
            raise AssertionError("\n  ".join([str(error), *seen])) from None

    def wait_job(self, name: str, states: set[str], *, timeout: float = CLUSTER_READY_TIMEOUT) -> Obj:
        last: dict[str, Any] = {}

        def reached() -> Obj | None:
            job = self.get(RAYJOB, name)
            last.update(status(job))
            return job if status(job).get("jobDeploymentStatus") in states else None

        try:
            return wait_for(reached, timeout=timeout, what=f"RayJob {name} in {sorted(states)}")
        except AssertionError as error:
            raise AssertionError(f"{error}; status {last}") from None

    def wait_gone(self, resource: Resource, name: str, *, timeout: float = 60) -> None:
        wait_for(lambda: self.get(resource, name) is None, timeout=timeout, what=f"{resource.kind} {name} gone")

    # Ray

    def cluster_token(self, cluster: str) -> str:
        secret = self.get(SECRET, cluster)
        assert secret is not None, f"no auth Secret for {cluster}"
        return base64.b64decode(secret["data"]["auth_token"]).decode()

    def dashboard_url(self, cluster: str) -> str:
        obj = self.get(RAYCLUSTER, cluster)
        assert obj is not None
        return f"http://127.0.0.1:{status(obj)['endpoints']['dashboard']}"

    def ray_jobs(self, cluster: str) -> list[dict[str, Any]]:
        """``GET /api/jobs/`` on the cluster's dashboard, with the token from the cluster's Secret."""
        response = httpx2.get(
            f"{self.dashboard_url(cluster)}/api/jobs/",
            headers={"x-ray-authorization": f"Bearer {self.cluster_token(cluster)}"},
            timeout=10,
        )
        assert response.status_code == 200, response.text[:300]
        jobs: list[dict[str, Any]] = response.json()
        return jobs

    # processes

    def processes(self) -> list[psutil.Process]:
        """Every live process started for this state dir: those carrying ``KRAY_LOCAL_HOME`` and the process
        trees of every pod in the store (Ray's setproctitle can hide the variable in ``/proc/<pid>/environ``)."""
        tagged = [p for p in _processes_with_env(HOME_ENV) if p.info["environ"].get(HOME_ENV) == str(self.home)]
        trees = self.pod_processes(self.list(POD)) if self.info is not None else []
        return list({p.pid: p for p in [*tagged, *trees]}.values())

    def pod_processes(self, pods: list[Obj]) -> list[psutil.Process]:
        """Every live process of these pods' trees (found as the pod runner finds them to stop them)."""
        found: dict[int, psutil.Process] = {}
        for pod in pods:
            notes = annotations(pod)
            if PID_ANNOTATION not in notes:
                continue
            handle = procs.adopt(
                int(notes[PID_ANNOTATION]), float(notes[CREATE_TIME_ANNOTATION]), tag=notes.get(TAG_ANNOTATION)
            )
            if handle is not None:
                found.update((p.pid, p) for p in procs.members(handle))
        return list(found.values())


def pod_pid(pod: Obj) -> int:
    return int(annotations(pod)[PID_ANNOTATION])


def _processes_with_env(variable: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["environ", "status"]):
        environ = proc.info.get("environ") or {}
        if variable in environ and proc.info.get("status") != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


def start_local(home: Path) -> Iterator[Local]:
    local = Local(LocalPaths(home.resolve()).ensure())
    local.start()
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Local]:
    """One kray server for the module, on its own state dir; stopped (and swept) at the end."""
    yield from start_local(tmp_path_factory.mktemp("kr"))


def settle(probe: Callable[[], list[T]], *, timeout: float, interval: float = 0.5) -> list[T]:
    """Poll ``probe`` until it returns an empty list or ``timeout`` passes; returns what is left."""
    deadline = time.monotonic() + timeout
    left = probe()
    while left and time.monotonic() < deadline:
        time.sleep(interval)
        left = probe()
    return left


def alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def kill_server(local: Local) -> None:
    """``kill -9`` of the state dir's server (our child: reaped here); its pods' processes are orphaned."""
    info = local.info
    assert info is not None
    os.kill(info.pid, signal.SIGKILL)
    psutil.Process(info.pid).wait(timeout=10)
    local.info = None


def long_lived(proc: psutil.Process) -> bool:
    """A pod's own Ray daemons (not job drivers, supervisors or Ray workers, which come and go)."""
    try:
        line = " ".join(proc.cmdline())
    except psutil.Error:
        return False
    return "ray start" in line or any(name in line for name in ("gcs_server", "/raylet ", "dashboard.py"))


running_local = contextlib.contextmanager(start_local)
"""``with running_local(home) as other:`` a second server on its own state dir, stopped (and swept) at the end."""


def as_from_a_terminal() -> None:
    """In the child before it runs ``kray``: SIGINT as a terminal's shell leaves it (default). A suite run in the
    background (``./scripts/test &`` from a script) hands its children SIGINT *ignored*, as POSIX shells do for
    background jobs, and a process started so keeps ignoring it (kray too): that is how the Ctrl-C test of
    test_lm_jobs once waited 60 s for a `kray job run` that had not seen the signal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
