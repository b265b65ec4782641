"""Ctrl-C and a lost server while ``kray job run`` follows a job: a prompt answer, a bounded end, what is left.

``kray job run`` is started as a terminal starts it (SIGINT at its default) and interrupted with SIGINT
as a terminal's Ctrl-C sends it.
"""

from __future__ import annotations

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

from .conftest import KRAY, Local, alive, cluster_spec, rayjob, settle, start_local, status, wait_for

pytestmark = pytest.mark.slow

SLEEPER = "python -c \"import time; print('working', flush=True); time.sleep(600)\""


def as_from_a_terminal() -> None:
    """In the child before it runs ``kray``: SIGINT as a terminal's shell leaves it (default). A suite run in the
    background (``./scripts/test &`` from a script) hands its children SIGINT *ignored*, as POSIX shells do for
    background jobs, and a process started so keeps ignoring it (kray too): that is how the Ctrl-C test of
    test_lm_jobs once waited 60 s for a `kray job run` that had not seen the signal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


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


JobRun = Callable[..., Run]


@pytest.fixture
def job_run(local: Local) -> Iterator[JobRun]:
    started: list[Run] = []

    def start(name: str, *, on: Local | None = None) -> Run:
        where = on or local
        manifest = where.manifest(rayjob(name, SLEEPER, rayClusterSpec=cluster_spec(workers=0)))
        out = where.home / f"{name}.out"
        with out.open("w") as sink:
            proc = subprocess.Popen(
                [KRAY, "job", "run", "-f", str(manifest)],
                env=where.env(),
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
                preexec_fn=as_from_a_terminal,  # noqa: PLW1509 - it only resets a signal disposition
            )
        started.append(Run(proc, out))
        return started[-1]

    yield start
    for run in started:
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()


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
