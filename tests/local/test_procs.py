"""The process kit against real processes: sessions, logs, adoption, whole-tree termination, tails."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from kray.local import errors, procs

PY = sys.executable


def wait_for(predicate: Callable[[], object], *, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def output(log: Path) -> list[str]:
    """The process's own lines (without kray's ``=== ... start [argv]`` headers, which quote the code)."""
    return [line for line in log.read_text().splitlines() if not line.startswith("=== ")]


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def started() -> Iterator[list[procs.ProcessHandle]]:
    """Handles to clean up even when a test fails."""
    handles: list[procs.ProcessHandle] = []
    yield handles
    for handle in handles:
        procs.terminate_tree(handle, grace=0.5, kill_wait=2)


def spawn_py(code: str, log: Path, started: list[procs.ProcessHandle], **env: str) -> procs.ProcessHandle:
    handle = procs.spawn(argv=[PY, "-c", textwrap.dedent(code)], env={**os.environ, **env}, cwd=None, log_path=log)
    started.append(handle)
    return handle


def test_spawn_logs_output_in_its_own_session(tmp_path: Path, started: list[procs.ProcessHandle]) -> None:
    log = tmp_path / "logs" / "c.log"
    code = """
        import os, sys
        print("out", os.environ["PYTHONUNBUFFERED"], os.environ["KRAY_PROCESS_TAG"])
        print("err", file=sys.stderr)
        print(os.getsid(0), os.getpgid(0), os.getcwd())
        sys.exit(3)
    """
    handle = procs.spawn(argv=[PY, "-c", textwrap.dedent(code)], env=dict(os.environ), cwd=tmp_path, log_path=log)
    started.append(handle)
    wait_for(lambda: handle.poll() is not None, what="exit")
    assert handle.poll() == 3
    assert not handle.is_alive()
    lines = log.read_text().splitlines()
    assert lines[0].startswith("=== ")
    assert "kray: start" in lines[0]
    assert lines[1:] == [f"out 1 {handle.tag}", "err", f"{handle.pid} {handle.pid} {tmp_path}"]


def test_spawn_appends_and_records_start_time(tmp_path: Path, started: list[procs.ProcessHandle]) -> None:
    log = tmp_path / "c.log"
    first = spawn_py("print('one')", log, started)
    wait_for(lambda: first.poll() is not None)
    second = spawn_py("import time; print('two', flush=True); time.sleep(30)", log, started)
    assert second.create_time == pytest.approx(psutil.Process(second.pid).create_time())
    assert second.is_alive()
    wait_for(lambda: output(log) == ["one", "two"], what="second output")


def test_spawn_of_a_missing_program(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    with pytest.raises(errors.SpawnError, match="no-such-program"):
        procs.spawn(argv=["/nonexistent/no-such-program"], env={}, cwd=None, log_path=log)
    assert "cannot start" in log.read_text()


def test_adopt_checks_the_start_time(tmp_path: Path, started: list[procs.ProcessHandle]) -> None:
    handle = spawn_py("import time; time.sleep(30)", tmp_path / "c.log", started)
    adopted = procs.adopt(handle.pid, handle.create_time)
    assert adopted is not None
    assert (adopted.pid, adopted.tag, adopted.popen) == (handle.pid, handle.tag, None)
    assert adopted.is_alive()
    assert adopted.poll() is None  # not our child: no exit code
    assert procs.adopt(handle.pid, handle.create_time - 5.0) is None  # a reused pid is not ours
    procs.terminate_tree(adopted, grace=2)
    assert not adopted.is_alive()
    assert procs.adopt(handle.pid, handle.create_time) is None


def test_terminate_a_cooperative_process(tmp_path: Path, started: list[procs.ProcessHandle]) -> None:
    handle = spawn_py("import time; time.sleep(30)", tmp_path / "c.log", started)
    result = procs.terminate_tree(handle, grace=5)
    assert result.exit_code == -signal.SIGTERM
    assert (result.killed, result.survivors) == ((), ())
    assert result.elapsed < 5


def test_terminate_escalates_to_sigkill_after_grace(tmp_path: Path, started: list[procs.ProcessHandle]) -> None:
    log = tmp_path / "c.log"
    code = """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ready", flush=True)
        time.sleep(30)
    """
    handle = spawn_py(code, log, started)
    wait_for(lambda: output(log) == ["ready"])
    result = procs.terminate_tree(handle, grace=0.5, kill_wait=5)
    assert result.exit_code == -signal.SIGKILL
    assert result.killed == (handle.pid,)
    assert 0.5 <= result.elapsed < 5


def test_terminate_waits_for_a_main_process_whose_first_thread_exited(
    tmp_path: Path, started: list[procs.ProcessHandle]
) -> None:
    """A process whose main thread has exited while another runs shows as a zombie yet cannot be reaped:
    it still runs, so it is signalled and waited for (CI once saw a Ray head outlive terminate_tree)."""
    log = tmp_path / "c.log"
    code = """
        import ctypes, threading, time
        threading.Thread(target=time.sleep, args=(30,)).start()
        print("ready", flush=True)
        ctypes.CDLL(None).pthread_exit(None)
    """
    handle = spawn_py(code, log, started)
    wait_for(lambda: output(log) == ["ready"])
    wait_for(lambda: psutil.Process(handle.pid).status() == psutil.STATUS_ZOMBIE, what="the leader thread to exit")
    assert handle.is_alive()
    result = procs.terminate_tree(handle, grace=5)
    assert result.exit_code == -signal.SIGTERM
    assert not handle.is_alive()
    assert result.survivors == ()


# The main process starts: a child in a new session that ignores SIGTERM (like a Ray job driver), a
# grandchild in its own process group (like a Ray worker), and a double-forked daemon, re-parented away
# from the tree (found only by the environment tag). It writes their pids and then waits.
TREE = """
    import os, signal, subprocess, sys, time
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(flush=True); time.sleep(60)"
    session = subprocess.Popen([sys.executable, "-c", stubborn], start_new_session=True, stdout=subprocess.PIPE)
    session.stdout.readline()  # it ignores SIGTERM from here on (a busy machine once SIGTERMed it before that)
    group = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], process_group=0)
    read, write = os.pipe()
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.write(write, str(os.getpid()).encode())
            time.sleep(60)
        os._exit(0)
    daemon = int(os.read(read, 32))
    print(session.pid, group.pid, daemon, flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("signal_all", [False, True])
def test_terminate_finds_the_whole_tree(tmp_path: Path, started: list[procs.ProcessHandle], signal_all: bool) -> None:
    log = tmp_path / "c.log"
    handle = spawn_py(TREE, log, started)
    wait_for(lambda: output(log), what="pids")
    pids = [int(p) for p in output(log)[0].split()]
    daemon = psutil.Process(pids[2])
    assert daemon.ppid() != handle.pid  # out of the tree...
    assert os.getsid(daemon.pid) != handle.pid  # ...and of the session
    result = procs.terminate_tree(handle, grace=1.0, kill_wait=5, signal_all=signal_all)
    assert result.survivors == ()
    assert set(pids) | {handle.pid} <= set(result.signalled)
    assert pids[0] in result.killed  # it ignored SIGTERM
    everyone = [handle.pid, *pids]
    wait_for(lambda: all(gone(pid) for pid in everyone), timeout=5, what=f"pids {everyone} to go")


def test_terminate_cleans_up_after_a_vanished_main_process(tmp_path: Path, started: list[procs.ProcessHandle]) -> None:
    log = tmp_path / "c.log"
    code = """
        import subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        print(child.pid, flush=True)
    """
    handle = spawn_py(code, log, started)
    wait_for(lambda: handle.poll() is not None, what="main process exit")
    orphan = int(output(log)[0])
    assert not gone(orphan)
    result = procs.terminate_tree(handle, grace=5)
    assert orphan in result.signalled
    wait_for(lambda: gone(orphan), timeout=5, what="orphan to go")


def test_terminate_never_touches_a_reused_pid(tmp_path: Path, started: list[procs.ProcessHandle]) -> None:
    bystander = spawn_py("import time; time.sleep(30)", tmp_path / "c.log", started)
    stale = procs.ProcessHandle(pid=bystander.pid, create_time=bystander.create_time - 100.0, tag="old-tag")
    result = procs.terminate_tree(stale, grace=0.2, kill_wait=0.2)
    assert result.signalled == ()
    assert bystander.is_alive()


def test_tail(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    log.write_text("".join(f"line {i} " + "x" * 100 + "\n" for i in range(1000)))
    assert procs.tail(log, lines=3).splitlines() == [f"line {i} " + "x" * 100 for i in (997, 998, 999)]
    assert len(procs.tail(log, lines=200).splitlines()) == 200
    assert procs.tail(log, lines=0) == ""
    assert procs.tail(tmp_path / "missing.log") == ""
    (tmp_path / "short.log").write_bytes(b"only\n\xff bad utf-8")
    assert procs.tail(tmp_path / "short.log", lines=5) == "only\n\ufffd bad utf-8"


def test_tail_of_the_last_run_only(tmp_path: Path, started: list[procs.ProcessHandle]) -> None:
    log = tmp_path / "runs.log"
    for run in (1, 2):
        handle = procs.spawn(
            argv=[sys.executable, "-c", f"print('run {run} a'); print('run {run} b')"],
            env=dict(os.environ),
            cwd=tmp_path,
            log_path=log,
        )
        started.append(handle)
        assert handle.popen is not None
        handle.popen.wait(timeout=30)
    assert procs.tail(log, lines=20, last_run=True) == "run 2 a\nrun 2 b"
    assert procs.tail(log, lines=1, last_run=True) == "run 2 b"  # no marker in the window: the window
    assert "run 1 b" in procs.tail(log, lines=20)
