"""Clusters that cannot start end their RayJob with a clear reason and the failing process's last log lines.

A crash-looping worker, a port taken under the head, a head that never gets ready: each ends in a failure
status whose message names the pod and quotes its output, within the deadlines, and ``kray job run``
exits 1 with that message and leaves no process behind. The module's server restarts a crashed
container after 1 s and fails a job at its cluster's first restart (``KRAY_STARTUP_RESTARTS=1``), so
each case takes seconds rather than the kubelet's back-off minutes.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from kray.local.adjust import ClusterPorts
from kray.local.environment import PORTS_ANNOTATION
from kray.local.ports import PortAllocator
from kray.store import RAYCLUSTER, RAYJOB

from .conftest import IMAGE, Local, alive, cluster_spec, rayjob, settle, start_local, status

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Local]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("KRAY_STARTUP_RESTARTS", "1")
        env.setenv("KRAY_POD_BACKOFF", "1")
        yield from start_local(tmp_path_factory.mktemp("kr-fail"))


def run_job(local: Local, manifest: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """``kray job run`` the manifest; returns the run and the RayJob's final status."""
    path = local.manifest(manifest)
    run = local.kray("job", "run", "-f", str(path), timeout=150)
    job = local.get(RAYJOB, manifest["metadata"]["name"])
    assert job is not None, run.stderr
    return run, status(job)


def assert_torn_down(local: Local, final: dict[str, Any]) -> None:
    cluster = final["rayClusterName"]
    local.wait_gone(RAYCLUSTER, cluster, timeout=60)
    assert settle(lambda: [p.pid for p in local.processes() if alive(p)], timeout=30) == []


def test_a_crash_looping_worker_fails_job_run_with_its_last_log_lines(local: Local) -> None:
    worker = {
        "metadata": {"annotations": {"ray.io/overwrite-container-cmd": "true"}},
        "spec": {
            "containers": [
                {
                    "name": "ray-worker",
                    "image": IMAGE,
                    "command": ["bash", "-c", "echo 'worker: libfoo.so: cannot open shared object file' >&2; exit 3"],
                    "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
                }
            ]
        },
    }
    manifest = rayjob(
        "lm-crash-worker",
        "python -c 'print(1)'",
        rayClusterSpec=cluster_spec(worker_template=worker),
        shutdownAfterJobFinishes=True,
    )
    run, final = run_job(local, manifest)
    assert run.returncode == 1, run.stderr
    assert final["jobDeploymentStatus"] == "Failed"
    assert final["reason"] == "RayClusterStartupFailed"
    message = final["message"]
    assert message.startswith(f"RayCluster {final['rayClusterName']} cannot start: worker pod "), message
    # At least the one restart KRAY_STARTUP_RESTARTS asks for; with a 1 s back-off a busy machine may see a second.
    assert re.search(r"after \d+ restarts? \(last exit code 3\); last log lines:", message), message
    assert message.endswith("worker: libfoo.so: cannot open shared object file"), message
    # `kray job run` prints the same reason and message, verbatim.
    assert "RayClusterStartupFailed: RayCluster" in run.stderr
    assert "libfoo.so: cannot open shared object file" in run.stderr
    assert_torn_down(local, final)


def test_a_taken_port_fails_the_job_with_rays_own_error(local: Local) -> None:
    # The cluster's ports as a restarted server would find them on the RayCluster (the RayJob's
    # annotations are the cluster's), and something else bound to its GCS port meanwhile.
    chosen = ClusterPorts(*PortAllocator(local.home / "test-ports").allocate(len(ClusterPorts.names()), owner="t"))
    with socket.socket() as squatter:
        squatter.bind(("0.0.0.0", chosen.gcs))
        squatter.listen()
        manifest = rayjob(
            "lm-port-taken",
            "python -c 'print(1)'",
            rayClusterSpec=cluster_spec(workers=0),
            shutdownAfterJobFinishes=True,
        )
        manifest["metadata"]["annotations"] = {PORTS_ANNOTATION: chosen.as_annotation()}
        run, final = run_job(local, manifest)
    assert run.returncode == 1, run.stderr
    assert final["reason"] == "RayClusterStartupFailed"
    message = final["message"]
    assert "head pod " in message
    assert "last log lines:" in message
    assert "Failed to start GCS" in message or "Address already in use" in message, message
    assert_torn_down(local, final)


def test_a_head_that_never_gets_ready_fails_at_the_pre_running_deadline(local: Local) -> None:
    spec = cluster_spec(workers=0)
    head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
    head["readinessProbe"] = {"exec": {"command": ["false"]}, "periodSeconds": 2, "failureThreshold": 1}
    manifest = rayjob(
        "lm-never-ready",
        "python -c 'print(1)'",
        rayClusterSpec=spec,
        preRunningDeadlineSeconds=25,
        shutdownAfterJobFinishes=True,
    )
    run, final = run_job(local, manifest)
    assert run.returncode == 1, run.stderr
    assert final["reason"] == "PreRunningDeadlineExceeded"
    assert final["message"].startswith(
        "The RayJob did not start running within preRunningDeadlineSeconds (25 s); pods not ready:\nhead pod "
    ), final["message"]
    assert final["message"].endswith(": Running, not Ready"), final["message"]
    assert_torn_down(local, final)
