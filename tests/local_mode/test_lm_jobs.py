"""RayJobs that bring their own cluster: ``kray job run``, TTL teardown, history, retries, suspend, bad input."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest

from kray.store import POD, RAYCLUSTER, RAYJOB, Obj

from .conftest import KRAY, Local, alive, as_from_a_terminal, cluster_spec, normalized, rayjob, settle, status, wait_for

pytestmark = pytest.mark.slow

MARKER = "kray-e2e-driver-says-hello"


@dataclass
class Finished:
    """A ``kray job run`` that succeeded, and what became of its cluster (TTL 5 s) afterwards."""

    run: Any
    job: Obj
    cluster: str
    pods: list[Obj]
    pod_pids: list[int]
    cluster_gone_after: float
    """Seconds from the RayJob's status.endTime until its RayCluster was gone."""
    job_after_teardown: Obj | None
    processes_after_teardown: list[int]


@pytest.fixture(scope="module")
def finished(local: Local) -> Finished:
    entrypoint = f"python -c \"import ray; ray.init(); print('{MARKER}', int(ray.cluster_resources()['CPU']))\""
    manifest = local.manifest(rayjob("lm-ok", entrypoint, shutdownAfterJobFinishes=True, ttlSecondsAfterFinished=5))
    run = local.kray("job", "run", "-f", str(manifest), timeout=300)
    job = local.get(RAYJOB, "lm-ok")
    assert job is not None, run.stderr
    cluster = status(job)["rayClusterName"]
    pods = local.pods(cluster)
    pod_processes = local.pod_processes(pods)
    end = time.time()
    local.wait_gone(RAYCLUSTER, cluster, timeout=60)
    gone_after = time.time() - end
    wait_for(lambda: not local.pods(cluster), timeout=30, what=f"the pods of {cluster} gone")
    survivors = settle(lambda: [p.pid for p in pod_processes if alive(p)], timeout=30)
    return Finished(
        run=run,
        job=job,
        cluster=cluster,
        pods=pods,
        pod_pids=[p.pid for p in pod_processes],
        cluster_gone_after=gone_after,
        job_after_teardown=local.get(RAYJOB, "lm-ok"),
        processes_after_teardown=survivors,
    )


def test_job_run_succeeds_and_streams_the_driver_log(finished: Finished) -> None:
    run, st = finished.run, status(finished.job)
    assert run.returncode == 0, run.stderr
    assert f"{MARKER} 2" in run.stdout  # the driver saw the head's and the worker's CPU
    assert "Complete (Ray job lm-ok-" in run.stderr
    assert "SUCCEEDED" in run.stderr
    assert st["jobDeploymentStatus"] == "Complete"
    assert st["jobStatus"] == "SUCCEEDED"
    assert st["succeeded"] == 1
    assert st["failed"] == 0
    assert st["jobId"].startswith("lm-ok-")
    assert len(finished.pods) == 2
    assert len(finished.pod_pids) >= 2


def test_ttl_deletes_the_cluster_and_its_pods_but_keeps_the_rayjob(finished: Finished) -> None:
    # The cluster went ~5 s after the job ended (not at once, not much later).
    assert 2.0 <= finished.cluster_gone_after <= 25.0, finished.cluster_gone_after
    assert finished.processes_after_teardown == []
    kept = finished.job_after_teardown
    assert kept is not None, "the RayJob must outlive its cluster"
    assert status(kept)["jobDeploymentStatus"] == "Complete"


@pytest.mark.timeout(840)  # its bounded waits add up to more (tests/test_suite_rules.py)
def test_history_and_logs_outlive_the_cluster_and_the_rayjob(local: Local, finished: Finished) -> None:
    submission = status(finished.job)["jobId"]
    deleted = local.kray("delete", "job", "lm-ok")
    assert deleted.returncode == 0, deleted.stderr
    assert local.get(RAYJOB, "lm-ok") is None
    listed = local.kray("get", "jobs")
    assert listed.returncode == 0, listed.stderr
    assert "lm-ok" in listed.stdout, listed.stdout
    assert "SUCCEEDED" in listed.stdout, listed.stdout
    logs = local.kray("logs", "lm-ok")
    assert logs.returncode == 0, logs.stderr
    assert f"{MARKER} 2" in logs.stdout
    by_id = local.kray("logs", "lm-ok", "--submission", submission)
    assert f"{MARKER} 2" in by_id.stdout


RETRIED_WITHIN = 240.0
"""Two whole cluster lifecycles (create, ready, submit, fail, delete): 110 s ran out with the machine busy."""


def test_backoff_limit_retries_on_a_new_cluster_with_a_new_submission_id(local: Local) -> None:
    entrypoint = "python -c \"import sys, time; print('attempt'); time.sleep(4); sys.exit(1)\""
    local.create(
        RAYJOB,
        rayjob("lm-retry", entrypoint, backoffLimit=1, shutdownAfterJobFinishes=True, ttlSecondsAfterFinished=0),
    )
    seen: dict[str, set[str]] = {}  # cluster -> submission ids its dashboard listed
    deadline = time.monotonic() + RETRIED_WITHIN
    final: Obj | None = None
    while time.monotonic() < deadline:
        job = local.get(RAYJOB, "lm-retry")
        st = status(job)
        cluster = st.get("rayClusterName")
        if st.get("jobDeploymentStatus") == "Running" and st.get("jobId") and cluster:
            with contextlib.suppress(AssertionError, OSError, KeyError, httpx2.HTTPError):  # going away
                seen.setdefault(cluster, set()).update(j["submission_id"] for j in local.ray_jobs(cluster))
        if st.get("jobDeploymentStatus") == "Failed" and st.get("failed") == 2:
            final = job
            break
        time.sleep(0.5)
    last = status(local.get(RAYJOB, "lm-retry"))
    assert final is not None, f"no second failure within {RETRIED_WITHIN:.0f} s; last status {last}"
    st = status(final)
    assert st["reason"] == "AppFailed"
    assert st["jobStatus"] == "FAILED"
    assert st["succeeded"] == 0
    history = local.call(lambda s: s.request("GET", "/kray/v1/history/jobs", params={"name": "lm-retry"}))
    submissions = [r["submission_id"] for r in history]
    clusters = [r["cluster"] for r in history]
    assert len(submissions) == 2, history
    assert len(set(submissions)) == 2, history
    assert len(set(clusters)) == 2, history
    assert st["jobId"] == submissions[-1]
    # Each attempt's cluster ran exactly one Ray job: its own, submitted once.
    assert seen, "never saw an attempt running"
    for cluster, ids in seen.items():
        assert len(ids) == 1, (cluster, ids)
    # The last attempt stays Failed (no third cluster) and its cluster is torn down.
    time.sleep(3)
    assert status(local.get(RAYJOB, "lm-retry"))["failed"] == 2
    local.wait_gone(RAYCLUSTER, st["rayClusterName"], timeout=30)


def test_suspended_rayjob_creates_nothing_until_resumed(local: Local) -> None:
    entrypoint = "python -c \"print('resumed and ran')\""
    local.create(
        RAYJOB,
        rayjob("lm-susp", entrypoint, suspend=True, shutdownAfterJobFinishes=True, ttlSecondsAfterFinished=0),
    )
    local.wait_job("lm-susp", {"Suspended"}, timeout=30)
    time.sleep(3)  # give a wrong controller time to create something
    assert local.list(RAYCLUSTER, selector="ray.io/originated-from-cr-name=lm-susp") == []
    assert not [p for p in local.list(POD) if p["metadata"]["name"].startswith("lm-susp")]
    assert status(local.get(RAYJOB, "lm-susp"))["jobDeploymentStatus"] == "Suspended"

    def resume(obj: Obj) -> None:
        obj["spec"]["suspend"] = False

    local.update(RAYJOB, "lm-susp", resume)
    done = local.wait_job("lm-susp", {"Complete", "Failed"}, timeout=100)
    assert status(done)["jobDeploymentStatus"] == "Complete", status(done)
    assert status(done)["jobStatus"] == "SUCCEEDED"


def test_invalid_manifest_is_refused_before_anything_starts(local: Local) -> None:
    bad = normalized(rayjob("lm-bad", "python -c 'print(1)'"))
    bad["spec"]["rayClusterSpec"]["workerGroupSpecs"][0].update(minReplicas=5, maxReplicas=2)
    path = local.manifest(bad)
    pods_before = {p["metadata"]["name"] for p in local.list(POD)}
    for command in (("job", "run", "-f", str(path)), ("apply", "-f", str(path))):
        result = local.kray(*command)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert "minReplicas" in result.stderr or "maxReplicas" in result.stderr, result.stderr
    assert local.get(RAYJOB, "lm-bad") is None
    assert not [c for c in local.list(RAYCLUSTER) if c["metadata"]["name"].startswith("lm-bad")]
    assert {p["metadata"]["name"] for p in local.list(POD)} <= pods_before


@pytest.mark.timeout(660)  # its bounded waits add up to more (tests/test_suite_rules.py)
def test_ctrl_c_stops_the_job_and_tears_its_cluster_down(local: Local) -> None:
    entrypoint = "python -c \"import time; print('working', flush=True); time.sleep(600)\""
    manifest = local.manifest(rayjob("lm-ctrl-c", entrypoint, rayClusterSpec=cluster_spec(workers=0)))
    out = local.home / "ctrl-c.out"
    with out.open("w") as sink:
        run = subprocess.Popen(
            [KRAY, "job", "run", "-f", str(manifest)],
            env=local.env(),
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            preexec_fn=as_from_a_terminal,  # noqa: PLW1509 - it only resets a signal disposition
        )
        try:
            running = local.wait_job("lm-ctrl-c", {"Running"}, timeout=90)
            cluster = status(running)["rayClusterName"]
            wait_for(lambda: "working" in out.read_text(), timeout=60, what="the driver's first line streamed")
            processes = local.pod_processes(local.pods(cluster))
            assert processes
            run.send_signal(signal.SIGINT)
            assert run.wait(timeout=60) == 130, out.read_text()
        finally:
            if run.poll() is None:
                run.kill()
    printed = out.read_text()
    assert "interrupted: deleting RayJob default/lm-ctrl-c and its cluster" in printed
    assert "Traceback" not in printed
    local.wait_gone(RAYJOB, "lm-ctrl-c", timeout=60)
    local.wait_gone(RAYCLUSTER, cluster, timeout=60)
    assert settle(lambda: [p.pid for p in processes if alive(p)], timeout=30) == []
    # The stopped job stays in history, with the driver's log.
    history = local.call(lambda s: s.request("GET", "/kray/v1/history/jobs", params={"name": "lm-ctrl-c"}))
    assert [(r["cluster"], r["job_status"], r["deployment_status"]) for r in history] == [
        (cluster, "STOPPED", "Deleted")
    ]
    assert "working" in local.kray("logs", "lm-ctrl-c").stdout


def test_k8s_job_and_sidecar_mode_manifests_run_locally_with_the_same_outcome(local: Local) -> None:
    """KubeRay's submitter modes (K8sJobMode is the default) are submitted over HTTP locally: same result."""
    runs = {}
    for name, mode in (("lm-mode-default", None), ("lm-mode-sidecar", "SidecarMode")):
        manifest = rayjob(name, f"python -c \"print('{name} ran')\"", rayClusterSpec=cluster_spec(workers=0))
        manifest["spec"].pop("submissionMode")
        if mode:
            manifest["spec"]["submissionMode"] = mode
        manifest["spec"]["shutdownAfterJobFinishes"] = True
        path = local.manifest(manifest)
        runs[name] = subprocess.Popen(
            [KRAY, "job", "run", "-f", str(path)],
            env=local.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
    for name, run in runs.items():
        try:
            stdout, stderr = run.communicate(timeout=150)
        finally:
            if run.poll() is None:
                run.kill()
        assert run.returncode == 0, stderr
        assert f"{name} ran" in stdout
        job = local.get(RAYJOB, name)
        assert status(job)["jobDeploymentStatus"] == "Complete"
        assert status(job)["jobStatus"] == "SUCCEEDED"
    stored = local.get(RAYJOB, "lm-mode-default")
    assert stored is not None
    assert stored["spec"]["submissionMode"] == "K8sJobMode"  # KubeRay's default, filled in
