"""Ctrl-C and a lost server while ``kray job run`` or ``kray job submit`` follows a job: a prompt answer, a
bounded end, what is left.

``kray`` is started as a terminal starts it (SIGINT at its default) and interrupted with SIGINT as a
terminal's Ctrl-C sends it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from kray.store import RAYCLUSTER, RAYJOB

from .conftest import (
    KRAY,
    Local,
    alive,
    as_from_a_terminal,
    cluster_spec,
    raycluster,
    rayjob,
    settle,
    start_local,
    status,
    wait_for,
)

pytestmark = pytest.mark.slow

SLEEPER_CODE = "import time; print('working', flush=True); time.sleep(600)"
SLEEPER = f'python -c "{SLEEPER_CODE}"'


@dataclass
class Run:
    """A ``kray job run`` in the background, its stdout and stderr in one file."""

    proc: subprocess.Popen[str]
    out: Path

    def text(self) -> str:
        return self.out.read_text()

    def wait_printed(self, what: str, *, timeout: float) -> None:
        wait_for(lambda: what in self.text(), timeout=timeout, what=f"{what!r} printed", interval=0.05)

    def exit_within(self, seconds: float) -> int:
        try:
            return self.proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running {seconds:.0f} s later; it printed:\n{self.text()}") from None


def start_kray(where: Local, label: str, *args: str) -> Run:
    """``kray ARGS`` started as from a terminal, its output in ``<label>.out``; :func:`end` it after."""
    out = where.home / f"{label}.out"
    with out.open("w") as sink:
        proc = subprocess.Popen(
            [KRAY, *args],
            env=where.env(),
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            preexec_fn=as_from_a_terminal,  # noqa: PLW1509 - it only resets a signal disposition
        )
    return Run(proc, out)


def end(run: Run) -> None:
    if run.proc.poll() is None:
        run.proc.kill()
        run.proc.wait()


@contextlib.contextmanager
def in_background(where: Local, label: str, *args: str) -> Iterator[Run]:
    run = start_kray(where, label, *args)
    try:
        yield run
    finally:
        end(run)


JobRun = Callable[..., Run]


@pytest.fixture
def job_run(local: Local) -> Iterator[JobRun]:
    started: list[Run] = []

    def start(name: str, *, on: Local | None = None) -> Run:
        where = on or local
        manifest = where.manifest(rayjob(name, SLEEPER, rayClusterSpec=cluster_spec(workers=0)))
        started.append(start_kray(where, name, "job", "run", "-f", str(manifest)))
        return started[-1]

    yield start
    for run in started:
        end(run)


def history(local: Local, name: str) -> list[dict[str, object]]:
    return local.call(lambda s: s.request("GET", "/kray/v1/history/jobs", params={"name": name}))  # type: ignore[no-any-return]


def test_ctrl_c_while_the_cluster_is_provisioned_stops_it_within_seconds(local: Local, job_run: JobRun) -> None:
    run = job_run("lm-int-early")
    cluster = wait_for(
        lambda: status(local.get(RAYJOB, "lm-int-early")).get("rayClusterName"),
        timeout=60,
        what="the RayJob's cluster named",
    )
    wait_for(lambda: local.pods(cluster), timeout=60, what=f"the pods of {cluster}")
    assert status(local.get(RAYJOB, "lm-int-early")).get("jobDeploymentStatus") in {"", None, "New", "Initializing"}
    run.proc.send_signal(signal.SIGINT)
    interrupted = time.monotonic()
    run.wait_printed("interrupted: deleting RayJob default/lm-int-early and its cluster", timeout=5)
    answered = time.monotonic() - interrupted
    assert run.exit_within(30) == 130
    took = time.monotonic() - interrupted
    printed = run.text()
    assert "Traceback" not in printed, printed
    assert "are deleted" in printed or "still being deleted" in printed, printed
    assert answered < 5, answered
    assert took < 25, f"{took:.1f}s:\n{printed}"
    local.wait_gone(RAYJOB, "lm-int-early", timeout=60)
    local.wait_gone(RAYCLUSTER, cluster, timeout=60)
    wait_for(lambda: not local.pods(cluster), timeout=60, what=f"the pods of {cluster} gone")
    # KubeRay names the submission before the cluster is ready: history may keep it, as stopped.
    kept = [(r["job_status"], r["deployment_status"]) for r in history(local, "lm-int-early")]
    assert kept in ([], [("STOPPED", "Deleted")]), kept


def test_a_second_ctrl_c_leaves_at_once_saying_what_is_left(local: Local, job_run: JobRun) -> None:
    run = job_run("lm-int-twice")
    cluster = wait_for(
        lambda: status(local.get(RAYJOB, "lm-int-twice")).get("rayClusterName"),
        timeout=60,
        what="the RayJob's cluster named",
    )
    wait_for(lambda: local.pods(cluster), timeout=60, what=f"the pods of {cluster}")
    run.proc.send_signal(signal.SIGINT)
    run.wait_printed("interrupted: deleting RayJob", timeout=5)
    assert run.proc.poll() is None, f"the first Ctrl-C was done before the second could come:\n{run.text()}"
    run.proc.send_signal(signal.SIGINT)
    second = time.monotonic()
    assert run.exit_within(5) == 130
    left = time.monotonic() - second
    printed = run.text()
    assert left < 3, f"{left:.1f}s"
    assert "left without waiting: RayJob default/lm-int-twice" in printed, printed
    assert "`kray delete job lm-int-twice`" in printed, printed
    assert "`kray server stop`" in printed, printed
    assert "Traceback" not in printed, printed
    cleaned = local.kray("delete", "job", "lm-int-twice")
    assert cleaned.returncode in {0, 1}, cleaned.stderr  # 1: the first Ctrl-C's delete had finished meanwhile
    local.wait_gone(RAYJOB, "lm-int-twice", timeout=60)
    local.wait_gone(RAYCLUSTER, cluster, timeout=60)


@pytest.mark.parametrize("how", ["killed", "stopped"])
def test_job_run_whose_server_goes_away_ends_saying_what_to_do(tmp_path: Path, job_run: JobRun, how: str) -> None:
    server = start_local(tmp_path / "kr")
    own = next(server)
    try:
        run = job_run("lm-int-lost", on=own)
        run.wait_printed("working", timeout=120)
        job = own.get(RAYJOB, "lm-int-lost")
        pods = own.pod_processes(own.pods(status(job)["rayClusterName"]))
        assert own.info is not None
        gone = time.monotonic()
        if how == "killed":
            os.kill(own.info.pid, signal.SIGKILL)
            psutil.Process(own.info.pid).wait(timeout=10)
        else:
            own.stop()
        own.info = None
        assert run.exit_within(40) == 1
        took = time.monotonic() - gone
        printed = run.text()
        assert took < 30, f"{took:.1f}s:\n{printed}"
        assert "lost the kray server (" in printed, printed
        assert "lost the kray server for 15 s" in printed, printed
        assert "`kray server start`" in printed, printed
        assert "`kray server stop`" in printed, printed
        assert "Traceback" not in printed, printed
        if how == "stopped":
            assert settle(lambda: [p.pid for p in pods if alive(p)], timeout=30) == []
    finally:
        server.close()  # stops the server (again) and sweeps what a killed one left


@pytest.fixture(scope="module")
def shared_cluster(local: Local) -> Iterator[str]:
    """A running cluster ``kray job submit`` submits to (its jobs must leave it running)."""
    local.create(RAYCLUSTER, raycluster("lm-int-sub", workers=0))
    local.wait_cluster_ready("lm-int-sub", workers=0)
    yield "lm-int-sub"
    local.delete(RAYCLUSTER, "lm-int-sub")
    local.wait_gone(RAYCLUSTER, "lm-int-sub", timeout=90)


def test_ctrl_c_while_job_submit_follows_stops_that_job_and_spares_the_cluster(
    local: Local, shared_cluster: str
) -> None:
    args = ("job", "submit", "-c", shared_cluster, "--name", "lm-int-sub-once", "--", "python", "-c", SLEEPER_CODE)
    with in_background(local, "lm-int-sub-once", *args) as run:
        run.wait_printed("working", timeout=120)
        submission = status(local.get(RAYJOB, "lm-int-sub-once"))["jobId"]
        run.proc.send_signal(signal.SIGINT)
        interrupted = time.monotonic()
        run.wait_printed(
            f"interrupted: deleting RayJob default/lm-int-sub-once, which stops its Ray job (RayCluster "
            f"{shared_cluster} keeps running)",
            timeout=5,
        )
        answered = time.monotonic() - interrupted
        assert run.exit_within(30) == 130
        took = time.monotonic() - interrupted
    printed = run.text()
    assert answered < 5, answered
    assert took < 25, f"{took:.1f}s:\n{printed}"
    assert "Traceback" not in printed, printed
    assert "RayJob default/lm-int-sub-once is deleted and its Ray job stopped" in printed, printed
    local.wait_gone(RAYJOB, "lm-int-sub-once", timeout=60)
    wait_for(
        lambda: (
            {j["submission_id"]: j["status"] for j in local.ray_jobs(shared_cluster)}.get(submission)
            in {"STOPPED", "FAILED"}
        ),
        timeout=60,
        what=f"Ray job {submission} stopped",
    )
    local.wait_cluster_ready(shared_cluster, workers=0, timeout=10)


def test_a_second_ctrl_c_leaves_job_submit_at_once(local: Local, shared_cluster: str) -> None:
    args = ("job", "submit", "-c", shared_cluster, "--name", "lm-int-sub-twice", "--", "python", "-c", SLEEPER_CODE)
    with in_background(local, "lm-int-sub-twice", *args) as run:
        run.wait_printed("working", timeout=120)
        run.proc.send_signal(signal.SIGINT)
        run.wait_printed("interrupted: deleting RayJob default/lm-int-sub-twice", timeout=5)
        assert run.proc.poll() is None, f"the first Ctrl-C was done before the second could come:\n{run.text()}"
        run.proc.send_signal(signal.SIGINT)
        second = time.monotonic()
        assert run.exit_within(5) == 130
        left = time.monotonic() - second
    printed = run.text()
    assert left < 3, f"{left:.1f}s"
    assert "left without waiting: RayJob default/lm-int-sub-twice" in printed, printed
    assert "`kray delete job lm-int-sub-twice`" in printed, printed
    assert "Traceback" not in printed, printed
    cleaned = local.kray("delete", "job", "lm-int-sub-twice")
    assert cleaned.returncode in {0, 1}, cleaned.stderr  # 1: the first Ctrl-C's delete had finished meanwhile
    local.wait_gone(RAYJOB, "lm-int-sub-twice", timeout=60)
