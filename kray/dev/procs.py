"""Process hygiene for the test control plane: own sessions, group kills, bounded waits, leak detection.

Why: a test control plane that leaks an etcd or an apiserver poisons every later run (ports, CPU on a
2-core machine, stale state). So every process starts in its own session (pgid == pid) and is stopped by
signalling its whole group, waiting, then SIGKILLing the group. When the launcher is tied to its parent
(pytest), ``PR_SET_PDEATHSIG`` (via ``setpriv``) also kills the children if the parent dies without
cleaning up. Every wait here has a timeout and reports what it was waiting for plus the log tail.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path


class StartupError(RuntimeError):
    """A component did not come up (message carries its log tail)."""


@dataclass(frozen=True)
class ProcessSpec:
    """How to run one component."""

    name: str
    argv: tuple[str, ...]
    log: Path
    env: Mapping[str, str] = field(default_factory=dict)


def _tie_prefix() -> tuple[str, ...]:
    """``setpriv --pdeathsig KILL --``: the child dies with the thread that started it (no preexec_fn,
    which is unsafe in threaded programs such as pytest with watch threads). Empty if util-linux lacks it."""
    exe = shutil.which("setpriv")
    return (exe, "--pdeathsig", "KILL", "--") if exe else ()


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log_tail(path: Path, *, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


class ManagedProcess:
    """One running component, in its own session so its whole group can be signalled."""

    def __init__(self, spec: ProcessSpec, *, tie_to_parent: bool) -> None:
        self.spec = spec
        spec.log.parent.mkdir(parents=True, exist_ok=True)
        with spec.log.open("ab") as out:
            out.write(f"=== start {time.strftime('%H:%M:%S')}: {' '.join(spec.argv)}\n".encode())
            out.flush()
            prefix = _tie_prefix() if tie_to_parent else ()
            self._popen = subprocess.Popen(
                (*prefix, *spec.argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **spec.env},
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self._popen.pid

    def alive(self) -> bool:
        return self._popen.poll() is None

    def describe_exit(self) -> str:
        return f"{self.spec.name} exited with {self._popen.returncode}; log {self.spec.log}:\n" + log_tail(
            self.spec.log
        )

    def stop(self, *, timeout: float = 15.0) -> None:
        """SIGTERM the group, wait, SIGKILL the group; always reaps the leader."""
        _signal_group(self.pid, signal.SIGTERM)
        try:
            self._popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal_group(self.pid, signal.SIGKILL)
            self._popen.wait(timeout=timeout)
            with self.spec.log.open("a") as out:
                out.write(f"=== SIGKILLed: still running {timeout:.0f}s after SIGTERM\n")
        _signal_group(self.pid, signal.SIGKILL)  # stragglers in the group, if any


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rsplit(")", 1)[1].split()[0] in {"Z", "X"}  # zombie or dead: no longer running


def stop_foreign_group(pid: int, *, timeout: float = 15.0) -> None:
    """Stop a session leader that is not our child (``kray dev k8s down`` after a detached ``up``)."""
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    _signal_group(pid, signal.SIGKILL)
    wait_until(lambda: _gone(pid), timeout=timeout, what=f"process group {pid} to exit after SIGKILL")


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def processes_mentioning(text: str) -> list[tuple[int, str]]:
    """Live processes whose command line contains ``text`` (e.g. a control plane's work dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(os.getpid()):
            line = cmdline(int(entry.name))
            if text in line and not _gone(int(entry.name)):
                found.append((int(entry.name), line))
    return found


def wait_until(
    predicate: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.2,
    detail: Callable[[], str] | None = None,
) -> None:
    """Poll ``predicate`` until true; raise :class:`StartupError` naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() >= deadline:
            extra = f"\n{detail()}" if detail else ""
            raise StartupError(f"timed out after {timeout:.0f}s waiting for {what}{extra}")
        time.sleep(interval)
