"""Driver logs from history, whatever their size: ``kray logs`` and ``kray job run`` print every byte.

The log route returns at most 4 MiB a response; the clients read on until history says the log is
complete, a response cut inside a UTF-8 character is not corrupted, and a log request that fails is
reported once (with the reason) and retried.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from kray.local.history import JobHistory
from kray.store import RAYJOB

from .conftest import KRAY, Local, cluster_spec, rayjob, start_local, status, wait_for

MIB = 1024 * 1024


def big_log() -> bytes:
    """~6 MiB of lines with 2-, 3- and 4-byte characters, one of them across the 4 MiB mark."""
    head = b"x" * (4 * MIB - 1) + "€".encode()  # 3 bytes: the first is the last of the route's first answer
    body = "".join(f"ligne é € 😀 {i:06d}\n" for i in range(2 * MIB // 24)).encode()
    return head + b"\n" + body


def remember(local: Local, name: str, data: bytes, *, complete: bool) -> Path:
    """A job in history with this driver log, as the RayJob controller leaves one (no Ray needed)."""
    history = JobHistory(local.paths)
    path = local.paths.job_log("default", name, f"{name}-1")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    history._upsert(
        {
            "uid": f"u-{name}/{name}-1",
            "namespace": "default",
            "name": name,
            "submission_id": f"{name}-1",
            "cluster": f"{name}-c",
            "entrypoint": "python big.py",
            "job_status": "SUCCEEDED" if complete else "RUNNING",
            "deployment_status": "Complete" if complete else "Running",
            "created": "2026-11-25T10:00:00Z",
            "log_path": str(path),
            "log_complete": int(complete),
        }
    )
    return path


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[Local]:
    """A server of its own: these tests kill it."""
    yield from start_local(tmp_path / "kr")


def follow_then_kill(local: Local, name: str) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """``kray logs NAME -f`` (stdout and stderr to files) once it has printed the first line, with its server
    killed (-9): nothing restarts a server a running command already found."""
    out, err = local.home / f"{name}.out", local.home / f"{name}.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        follower = subprocess.Popen(
            [KRAY, "logs", name, "-f"], env=local.env(), stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL
        )
    try:
        wait_for(lambda: out.read_bytes() == b"first line\n", timeout=60, what=f"kray logs {name} -f printing")
        assert local.info is not None
        os.kill(local.info.pid, signal.SIGKILL)
        psutil.Process(local.info.pid).wait(timeout=10)
        local.info = None
    except BaseException:
        follower.kill()
        raise
    return follower, out, err


def test_kray_logs_prints_a_log_larger_than_one_answer_byte_for_byte(local: Local) -> None:
    data = big_log()
    remember(local, "lm-big-log", data, complete=True)
    result = subprocess.run([KRAY, "logs", "lm-big-log"], env=local.env(), capture_output=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout) == len(data), f"printed {len(result.stdout)} of {len(data)} bytes"
    assert result.stdout == data, "the bytes differ (a character cut between two answers?)"
    assert result.stderr == b""


def test_kray_logs_follow_reports_failing_requests_once_and_resumes(local: Local) -> None:
    path = remember(local, "lm-follow", b"first line\n", complete=False)
    out, err = local.home / "lm-follow.out", local.home / "lm-follow.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        follower = subprocess.Popen(
            [KRAY, "logs", "lm-follow", "-f"], env=local.env(), stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL
        )
    try:
        wait_for(lambda: out.read_bytes() == b"first line\n", timeout=60, what="kray logs -f printing")
        path.unlink()
        path.mkdir()  # the server cannot read the log: its answers are errors
        wait_for(lambda: "cannot read the log" in err.read_text(), timeout=30, what="the failure reported")
        time.sleep(2)  # several polls fail
        path.rmdir()
        remember(local, "lm-follow", b"first line\nsecond line\nlast line\n", complete=True)
        follower.wait(timeout=60)
    finally:
        if follower.poll() is None:
            follower.kill()
    errors = err.read_text()
    assert follower.returncode == 0, errors
    assert out.read_bytes() == b"first line\nsecond line\nlast line\n"
    assert errors.count("kray:") == 1, errors
    assert "cannot read the log of default/lm-follow: the kray server answered 500" in errors, errors
    assert "retrying" in errors, errors


def test_kray_logs_follow_gives_up_on_a_dead_server_saying_what_to_do(own_server: Local) -> None:
    remember(own_server, "lm-orphan", b"first line\n", complete=False)
    follower, out, err = follow_then_kill(own_server, "lm-orphan")
    started = time.monotonic()
    try:
        follower.wait(timeout=60)
    finally:
        if follower.poll() is None:
            follower.kill()
    took = time.monotonic() - started
    errors = err.read_text()
    assert follower.returncode == 1, errors
    assert took < 30, f"took {took:.0f}s to give up"
    assert out.read_bytes() == b"first line\n"
    assert "lost the kray server for 15 s" in errors, errors
    assert "kray server start" in errors, errors
    assert "Traceback" not in errors, errors


def test_job_run_prints_a_driver_log_larger_than_one_answer_byte_for_byte(local: Local) -> None:
    script = "import sys; sys.stdout.write(''.join('ligne é € 😀 %06d\\n' % i for i in range(260000)))"
    entrypoint = f'python -c "{script}"'
    manifest = local.manifest(
        rayjob("lm-big-run", entrypoint, rayClusterSpec=cluster_spec(workers=0), shutdownAfterJobFinishes=True)
    )
    result = subprocess.run(
        [KRAY, "job", "run", "-f", str(manifest)],
        env=local.env(),
        capture_output=True,
        timeout=110,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    job = local.get(RAYJOB, "lm-big-run")
    kept = local.paths.job_log("default", "lm-big-run", status(job)["jobId"]).read_bytes()
    expected = "".join(f"ligne é € 😀 {i:06d}\n" for i in range(260000)).encode()
    assert len(kept) > 4 * MIB, f"history kept {len(kept)} bytes"
    assert expected in kept
    assert len(result.stdout) == len(kept), f"printed {len(result.stdout)} of {len(kept)} bytes"
    assert result.stdout == kept
