"""The server dies (kill -9) and comes back: pods are re-adopted, nothing is submitted twice; hygiene on stop."""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from kray.local.podrunner import RAY_TEMP_DIR_ANNOTATION
from kray.store import RAYCLUSTER, RAYJOB

from .conftest import (
    KRAY,
    Local,
    alive,
    annotations,
    cluster_spec,
    kill_server,
    long_lived,
    pod_pid,
    raycluster,
    rayjob,
    status,
    wait_for,
)

pytestmark = pytest.mark.slow


def test_kill_9_of_the_server_neither_duplicates_processes_nor_submissions(local: Local) -> None:
    code = "import time; print('driver', 'started'); time.sleep(12); print('driver', 'finished')"
    local.create(RAYJOB, rayjob("lm-kill", f'python -c "{code}"', shutdownAfterJobFinishes=False))
    kill_server(local)  # right after the RayJob was created
    local.start()

    def running() -> dict[str, str] | None:
        st = status(local.get(RAYJOB, "lm-kill"))
        return st if st.get("jobStatus") == "RUNNING" else None

    st = wait_for(running, timeout=100, what="the Ray job RUNNING")
    cluster, submission = st["rayClusterName"], st["jobId"]
    pods = {p["metadata"]["name"]: pod_pid(p) for p in local.live_pods(cluster)}
    processes = [p for p in local.pod_processes(local.live_pods(cluster)) if long_lived(p)]
    assert len(pods) == 2
    assert len(processes) >= 6, processes  # per pod: ray start, raylet, ...; the head: gcs_server, dashboard

    kill_server(local)  # while the job runs
    assert all(alive(p) for p in processes), "the pods' processes must survive the server"
    local.start()

    done = local.wait_job("lm-kill", {"Complete", "Failed"}, timeout=60)
    assert status(done)["jobStatus"] == "SUCCEEDED", status(done)
    assert status(done)["jobId"] == submission
    assert status(done)["succeeded"] == 1
    # Re-adopted, not restarted: the same pods with the same main processes, and no second process tree.
    after = {p["metadata"]["name"]: pod_pid(p) for p in local.live_pods(cluster)}
    assert after == pods
    assert all(alive(p) for p in processes)
    now = [p for p in local.pod_processes(local.live_pods(cluster)) if long_lived(p)]
    assert sorted(p.pid for p in now) == sorted(p.pid for p in processes), [p.cmdline()[:3] for p in now]
    # Ray ran the job once: one job on the dashboard, with our submission id; the driver ran once.
    jobs = local.ray_jobs(cluster)
    assert [j["submission_id"] for j in jobs] == [submission], jobs
    logs = local.kray("logs", "lm-kill")
    assert logs.stdout.count("driver started") == 1, logs.stdout
    assert "driver finished" in logs.stdout
    assert local.get(RAYCLUSTER, cluster) is not None


def test_kill_9_of_job_run_loses_nothing_the_job_finishes_and_its_log_is_kept(local: Local) -> None:
    code = "import time; print('driver', 'started', flush=True); time.sleep(6); print('driver', 'finished')"
    manifest = rayjob("lm-cli-kill", f'python -c "{code}"', rayClusterSpec=cluster_spec(workers=0))
    manifest["spec"]["shutdownAfterJobFinishes"] = True
    run = subprocess.Popen(
        [KRAY, "job", "run", "-f", str(local.manifest(manifest))],
        env=local.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:  # a head on 2 cores shared with the other lane: 90 s was once not enough
        local.wait_job("lm-cli-kill", {"Running"}, timeout=240)
    finally:
        run.kill()  # SIGKILL: the CLI is only a client; the server carries the job on
        run.wait(timeout=10)
    done = local.wait_job("lm-cli-kill", {"Complete", "Failed"}, timeout=90)
    assert status(done)["jobStatus"] == "SUCCEEDED", status(done)
    logs = local.kray("logs", "lm-cli-kill")
    assert "driver started" in logs.stdout
    assert "driver finished" in logs.stdout
    history = local.call(lambda s: s.request("GET", "/kray/v1/history/jobs", params={"name": "lm-cli-kill"}))
    assert len(history) == 1, history
    local.wait_gone(RAYCLUSTER, status(done)["rayClusterName"], timeout=60)


def test_server_stop_leaves_no_ray_process_of_the_state_dir(local: Local) -> None:
    applied = local.kray("apply", "-f", str(local.manifest(raycluster("lm-stop"))))
    assert applied.returncode == 0, applied.stderr
    local.wait_cluster_ready("lm-stop", timeout=180)  # 90 s ran out once while the other lane ran Ray too
    before = local.processes()
    assert len(before) >= 4, before
    temp_dirs = {annotations(p)[RAY_TEMP_DIR_ANNOTATION] for p in local.live_pods("lm-stop")}
    assert len(temp_dirs) == 1
    assert Path(*temp_dirs).is_dir()
    stopped = local.kray("server", "stop")
    assert stopped.returncode == 0, stopped.stderr
    local.info = None
    assert "swept" not in stopped.stdout, "a graceful stop must not leave orphans to sweep"
    assert [p.pid for p in before if alive(p)] == []
    assert local.processes() == []
    assert not Path(*temp_dirs).exists(), "the stopped cluster's Ray session files stay behind"


def test_concurrent_starts_share_one_server_and_stop_is_prompt(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Two commands starting the server at once get the same one; ``kray server stop`` from another process
    returns promptly even though the server's parent (this process) has not reaped it yet."""
    from concurrent.futures import ThreadPoolExecutor

    from kray.local.paths import LocalPaths
    from kray.local.server.launcher import ensure_server

    local = Local(LocalPaths(tmp_path_factory.mktemp("kr-race").resolve()).ensure())
    with ThreadPoolExecutor(3) as pool:
        infos = list(pool.map(lambda _: ensure_server(local.paths, timeout=60), range(3)))
    assert len({info.pid for info in infos}) == 1, infos
    local.info = infos[0]
    started = time.monotonic()
    stopped = local.kray("server", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert time.monotonic() - started < 20
    with contextlib.suppress(psutil.NoSuchProcess):  # exited: gone, or a zombie that is ours to reap
        assert psutil.Process(infos[0].pid).status() == psutil.STATUS_ZOMBIE
