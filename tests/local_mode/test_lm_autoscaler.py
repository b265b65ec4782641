"""Ray's own autoscaler scales local clusters (issue 11): KubeRay's autoscaler container, run unchanged in the head pod.

KubeRay's samples ``ray-cluster.autoscaler.yaml`` and ``ray-cluster.autoscaler-v2.yaml`` (a head of ``num-cpus: 0``,
a ``small-group`` of 1-CPU workers, minReplicas 0), each in its own namespace, one cluster per sample for the
module; the only edit is ``idleTimeoutSeconds`` (15 s instead of 60). The first names no autoscaler version: KubeRay
then leaves ``RAY_enable_autoscaler_v2`` unset, its head restarts containers (``restartPolicy: Always``), and Ray 2.60
picks its autoscaler itself; the second asks for v2 (and a ``Never`` head). An explicit ``version: v1`` is Ray's
IP-keyed ``StandardAutoscaler``, which cannot tell apart nodes that share 127.0.0.1 (docs/local-mode.md).

What is expected is Ray's and KubeRay's behaviour: tasks that need CPUs the cluster lacks make the autoscaler patch
the group's ``replicas`` up (``KubeRayNodeProvider``/``KubeRayProvider`` ``_patch``), the controller creates the
pods, and Ray runs the tasks on the new nodes (each worker's Ray carries its pod name: KubeRay's
``RAY_CLOUD_INSTANCE_ID``). Once idle for ``idleTimeoutSeconds`` the autoscaler names the pods in
``scaleStrategy.workersToDelete`` with ``replicas`` back to minReplicas, and the controller deletes exactly those
(``reconcilePods``; it never removes a worker itself while autoscaling is on). A killed autoscaler process is
restarted by the pod runner (the head's ``restartPolicy: Always``) and adopts the running worker instead of
losing or doubling it; so does an autoscaler whose API (the local server) is killed and restarted under it. A RayJob
whose cluster autoscales completes.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from kray.local.containers import pod_records
from kray.store import POD, RAYCLUSTER, SECRET, Obj
from tests.local_mode.conftest import Local, kill_server, status

pytestmark = pytest.mark.slow

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "kuberay-samples"
CLUSTER = "raycluster-autoscaler"
GROUP = "small-group"
IDLE_TIMEOUT = 15
READY = 120.0
SCALE_UP = 120.0
"""Autoscaler loop (5 s) + a worker pod's Ray start on two busy cores."""
SCALE_DOWN = 90.0
"""``idleTimeoutSeconds`` + the autoscaler's loops + the pods' graceful stop."""
DRIVER = 150.0
DRIVER_SCRIPT = """
import json, os, sys, time
import ray

ray.init(address=os.environ["KRAY_TEST_GCS"])

@ray.remote(num_cpus=1)
def where(hold):
    time.sleep(hold)
    node = ray.get_runtime_context().get_node_id()
    return [node, os.environ.get("RAY_CLOUD_INSTANCE_ID"), os.environ.get("RAY_NODE_TYPE_NAME")]

tasks, hold = int(sys.argv[1]), float(sys.argv[2])
placed = ray.get([where.remote(hold) for _ in range(tasks)])
print("RESULT " + json.dumps({"driver_node": ray.get_runtime_context().get_node_id(), "tasks": placed}), flush=True)
"""


def until(probe: Callable[[], tuple[Any, str]], *, timeout: float, what: str, interval: float = 0.5) -> Any:
    """Poll ``probe`` (returning ``(result, what it saw)``) until the result is truthy; fail naming the last sight."""
    deadline = time.monotonic() + timeout
    while True:
        result, seen = probe()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {seen}")
        time.sleep(interval)


def sample(file: str, namespace: str) -> list[Obj]:
    """The sample's documents in ``namespace`` (made first), with a short ``idleTimeoutSeconds``."""
    documents = [d for d in yaml.safe_load_all((SAMPLES / file).read_text()) if d]
    for document in documents:
        document["metadata"]["namespace"] = namespace
        if document["kind"] == "RayCluster":
            options = document["spec"]["autoscalerOptions"]
            options["idleTimeoutSeconds"] = IDLE_TIMEOUT
    return [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}, *documents]


def workers(local: Local, namespace: str, cluster: str = CLUSTER) -> list[Obj]:
    pods = local.list(POD, selector=f"ray.io/cluster={cluster},ray.io/node-type=worker", namespace=namespace)
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def group(local: Local, namespace: str) -> dict[str, Any]:
    cluster = local.get(RAYCLUSTER, CLUSTER, namespace)
    assert cluster is not None, f"RayCluster {namespace}/{CLUSTER} is gone"
    found: dict[str, Any] = cluster["spec"]["workerGroupSpecs"][0]
    return found


def describe(local: Local, namespace: str) -> str:
    spec = group(local, namespace)
    names = sorted(p["metadata"]["name"] for p in workers(local, namespace))
    return f"replicas={spec.get('replicas')} scaleStrategy={spec.get('scaleStrategy')} worker pods={names}"


def gcs_address(local: Local, namespace: str) -> str:
    cluster = local.get(RAYCLUSTER, CLUSTER, namespace)
    assert cluster is not None
    ports = dict(p.split("=") for p in cluster["metadata"]["annotations"]["kray.io/local-ports"].split(","))
    return f"127.0.0.1:{ports['gcs']}"


def run_tasks(local: Local, namespace: str, tmp_path: Path, *, tasks: int, hold: float) -> dict[str, Any]:
    """A Ray driver on this machine runs ``tasks`` 1-CPU tasks on the cluster: where each ran."""
    secret = local.get(SECRET, CLUSTER, namespace)
    assert secret is not None, "no auth Secret"
    script = tmp_path / "driver.py"
    script.write_text(DRIVER_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "KRAY_"))}
    env.update(
        KRAY_TEST_GCS=gcs_address(local, namespace),
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=base64.b64decode(secret["data"]["auth_token"]).decode(),
    )
    try:
        done = subprocess.run(
            [sys.executable, str(script), str(tasks), str(hold)],
            env=env,
            capture_output=True,
            text=True,
            timeout=DRIVER,
            check=False,
        )
    except subprocess.TimeoutExpired as expired:
        output = (expired.stderr or b"")[-1500:]
        raise AssertionError(
            f"the driver's {tasks} task(s) did not finish in {DRIVER:.0f}s; {describe(local, namespace)}; "
            f"driver stderr: {output!r}"
        ) from None
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0, f"driver failed ({done.returncode}): {done.stderr[-2000:]}"
    assert lines, f"driver printed no result ({done.returncode}): {done.stderr[-2000:]}"
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
    return result


def scales_up_runs_there_and_back_down(local: Local, namespace: str, tmp_path: Path) -> None:
    assert (group(local, namespace).get("replicas"), workers(local, namespace)) == (0, [])
    placed = run_tasks(local, namespace, tmp_path, tasks=2, hold=3.0)
    # Two 1-CPU tasks on a head of 0 CPUs: the autoscaler asked for two workers (Ray's bin packing).
    assert group(local, namespace)["replicas"] == 2, describe(local, namespace)
    started = {p["metadata"]["name"] for p in workers(local, namespace)}
    assert len(started) == 2, describe(local, namespace)
    for node, pod, node_group in placed["tasks"]:
        assert node != placed["driver_node"], f"a task ran on the head: {placed}"
        assert (pod in started, node_group) == (True, GROUP), f"{placed} vs worker pods {sorted(started)}"

    listed: set[str] = set()

    def scaled_down() -> tuple[bool, str]:
        listed.update(group(local, namespace).get("scaleStrategy", {}).get("workersToDelete") or ())
        gone = not workers(local, namespace) and group(local, namespace).get("replicas") == 0
        return gone, describe(local, namespace)

    until(scaled_down, timeout=SCALE_DOWN, what=f"{namespace}/{CLUSTER} back to minReplicas 0")
    # The autoscaler named exactly the idle pods; the controller deleted those, and no others.
    assert listed == started, f"workersToDelete seen: {sorted(listed)}, workers were {sorted(started)}"


@pytest.fixture(scope="module")
def v1(local: Local) -> Iterator[str]:
    yield from _applied(local, "as-v1", "ray-cluster.autoscaler.yaml")


@pytest.fixture(scope="module")
def v2(local: Local) -> Iterator[str]:
    yield from _applied(local, "as-v2", "ray-cluster.autoscaler-v2.yaml")


def _applied(local: Local, namespace: str, file: str) -> Iterator[str]:
    path = local.manifests / f"{namespace}.yaml"
    path.write_text(yaml.safe_dump_all(sample(file, namespace), sort_keys=False))
    applied = local.kray("apply", "-f", str(path))
    assert applied.returncode == 0, applied.stdout + applied.stderr

    def ready() -> tuple[bool, str]:
        cluster = local.get(RAYCLUSTER, CLUSTER, namespace)
        return status(cluster).get("state") == "ready", f"status {status(cluster)}"

    until(ready, timeout=READY, what=f"{namespace}/{CLUSTER} ready")
    yield namespace
    local.delete(RAYCLUSTER, CLUSTER, namespace)


@pytest.mark.timeout(600)  # its bounded waits (module fixtures included) add up to more than the default
def test_v1_sample_autoscaler_scales_a_group_up_for_tasks_and_back_down_when_idle(
    local: Local, v1: str, tmp_path: Path
) -> None:
    scales_up_runs_there_and_back_down(local, v1, tmp_path)


@pytest.mark.timeout(600)  # its bounded waits (module fixtures included) add up to more than the default
def test_v2_autoscaler_scales_a_group_up_for_tasks_and_back_down_when_idle(
    local: Local, v2: str, tmp_path: Path
) -> None:
    scales_up_runs_there_and_back_down(local, v2, tmp_path)


def _autoscaler(local: Local, namespace: str) -> tuple[psutil.Process, int]:
    """The head's autoscaler container: its process and its restart count."""
    heads = local.list(POD, selector=f"ray.io/cluster={CLUSTER},ray.io/node-type=head", namespace=namespace)
    assert len(heads) == 1, [h["metadata"]["name"] for h in heads]
    record = pod_records(heads[0])["autoscaler"]
    statuses = {s["name"]: s for s in heads[0]["status"].get("containerStatuses") or ()}
    return psutil.Process(record.pid), int(statuses["autoscaler"].get("restartCount", 0))


@contextlib.contextmanager
def one_busy_worker(local: Local, namespace: str, tmp_path: Path, *, hold: float) -> Iterator[Obj]:
    """A driver holds one 1-CPU task for ``hold`` seconds: the worker the autoscaler made for it, while it runs.
    On the way out the task must have run on that very worker, and the group must scale back down to 0."""
    snapshot: dict[str, Any] = {}

    def drive() -> None:
        snapshot.update(run_tasks(local, namespace, tmp_path, tasks=1, hold=hold))

    driver = threading.Thread(target=drive)
    driver.start()
    try:
        busy = until(
            lambda: (workers(local, namespace), describe(local, namespace)),
            timeout=SCALE_UP,
            what="a worker for the 1-CPU task",
        )
        (worker,) = busy
        yield worker
    finally:
        driver.join(timeout=DRIVER)
    ((_, pod, _),) = snapshot["tasks"]
    assert pod == worker["metadata"]["name"], snapshot
    until(
        lambda: (
            not workers(local, namespace) and group(local, namespace).get("replicas") == 0,
            describe(local, namespace),
        ),
        timeout=SCALE_DOWN,
        what="the worker scaled down afterwards",
    )


def stays_the_only_worker(local: Local, namespace: str, worker: Obj, *, seconds: float) -> None:
    """For ``seconds`` (autoscaler loops) with the task still running: the same one pod, replicas 1."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        names = [p["metadata"]["name"] for p in workers(local, namespace)]
        assert names == [worker["metadata"]["name"]], describe(local, namespace)
        assert group(local, namespace).get("replicas") == 1, describe(local, namespace)
        time.sleep(1)


@pytest.mark.timeout(900)  # its bounded waits (the driver's counted twice: run and join) add up to that
def test_a_restarted_autoscaler_neither_loses_nor_doubles_a_busy_worker(local: Local, v1: str, tmp_path: Path) -> None:
    before, restarts = _autoscaler(local, v1)
    with one_busy_worker(local, v1, tmp_path, hold=40.0) as worker:
        for proc in [*before.children(recursive=True), before]:  # the container's processes, Ray's autoscaler in it
            proc.send_signal(signal.SIGKILL)

        def restarted() -> tuple[bool, str]:
            try:
                now, count = _autoscaler(local, v1)
            except (KeyError, psutil.NoSuchProcess) as error:
                return False, f"no autoscaler process yet ({error!r})"
            return now.pid != before.pid and count == restarts + 1, f"pid {now.pid}, restartCount {count}"

        until(restarted, timeout=60, what="the pod runner to restart the autoscaler container")
        stays_the_only_worker(local, v1, worker, seconds=12)  # two more autoscaler loops


OUTAGE = 15.0
"""Three autoscaler loops (5 s each) against a refused connection."""


@pytest.mark.timeout(900)  # its bounded waits (the driver's counted twice: run and join) add up to that
def test_a_lost_api_connection_neither_loses_nor_doubles_a_busy_worker(local: Local, v2: str, tmp_path: Path) -> None:
    """The local server (the autoscaler's Kubernetes API, and the controller) is killed with -9 while a task holds
    a worker; the autoscaler's requests are refused for a while, then the restarted server answers on the same port."""
    with one_busy_worker(local, v2, tmp_path, hold=45.0) as worker:
        autoscaler, restarts = _autoscaler(local, v2)
        kill_server(local)
        time.sleep(OUTAGE)
        local.start()
        stays_the_only_worker(local, v2, worker, seconds=15)  # three more autoscaler loops
        # The same autoscaler: it outlived the refused requests (the head's restartPolicy is Never).
        now, count = _autoscaler(local, v2)
        assert (now.pid, count) == (autoscaler.pid, restarts), "the autoscaler died of the lost connection"


@pytest.mark.timeout(600)  # its bounded waits (module fixtures included) add up to more than the default
def test_a_rayjob_whose_cluster_autoscales_completes(local: Local) -> None:
    cluster = next(
        d
        for d in yaml.safe_load_all((SAMPLES / "ray-cluster.autoscaler-v2.yaml").read_text())
        if d["kind"] == "RayCluster"
    )
    spec = copy.deepcopy(cluster["spec"])
    spec["autoscalerOptions"]["idleTimeoutSeconds"] = IDLE_TIMEOUT
    # The sample's head mounts its ConfigMap of scripts, which this job does not need.
    head = spec["headGroupSpec"]["template"]["spec"]
    head.pop("volumes")
    head["containers"][0].pop("volumeMounts")
    entrypoint = (
        'python -c "import ray; ray.init(); '
        "f = ray.remote(num_cpus=1)(lambda: ray.get_runtime_context().get_node_id()); "
        "nodes = ray.get([f.remote() for _ in range(2)]); "
        "assert ray.get_runtime_context().get_node_id() not in nodes; print('ran on', sorted(set(nodes)))\""
    )
    job = {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": "autoscaled-job", "namespace": "default"},
        "spec": {"entrypoint": entrypoint, "shutdownAfterJobFinishes": True, "rayClusterSpec": spec},
    }
    applied = local.kray("apply", "-f", str(local.manifest(job)))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    finished = local.wait_job("autoscaled-job", {"Complete", "Failed"}, timeout=300)
    assert status(finished).get("jobStatus") == "SUCCEEDED", status(finished)
    logs = local.kray("logs", "autoscaled-job")
    assert "ran on" in logs.stdout, logs.stdout + logs.stderr
