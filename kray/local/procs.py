"""Processes as pod containers: spawn into a log file, re-adopt after a restart, stop the whole tree.

Why each choice:

- **Own session** (``start_new_session``): the process and its children form a group we can find and
  signal without touching the supervisor. Nothing ties them to the supervisor's life: local mode must
  survive a supervisor restart, which is why a handle can be rebuilt from ``(pid, create_time)``
  (:func:`adopt`); the start time tells a reused pid apart from ours.
- **A tag in the environment** (``KRAY_PROCESS_TAG``): Ray does not stay in one group. Verified with
  ``ray start --head --block`` (2.60): gcs_server, raylet, dashboard and agents share the session, but
  raylet puts each worker in its own process group, and the job supervisor starts each job entrypoint
  (and a watcher) in a *new session*. When an intermediate process dies, its children are re-parented and
  drop out of the parent chain. The environment is inherited through all of that, so ``terminate_tree``
  finds members by descendants, session, group *and* tag.
- **Kubelet's stop sequence**: SIGTERM goes to the main process only, and after the grace period every
  remaining member gets SIGKILL. Measured on Ray: SIGTERM to the main process lets ``ray start --block``
  drain and stop its children in order (2.5-5 s for an idle head here); SIGTERM to every process at once kills
  the GCS first and the head then waits out its 30 s drain timeout. ``signal_all=True`` is there for
  programs that do not forward signals. Once the main process is gone, the rest get SIGTERM too (a
  container whose PID 1 exited is torn down).
- **Every wait is bounded**; leftovers that survive SIGKILL (uninterruptible sleep) are reported, never
  waited for.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from kray.local import errors

TAG_ENV = "KRAY_PROCESS_TAG"
"""Environment variable holding the space-separated tags of every kray-spawned ancestor."""

_CREATE_TIME_TOLERANCE = 0.01  # psutil derives start times from clock ticks (100 Hz)


@dataclass(frozen=True, slots=True)
class ProcessHandle:
    """A process we started (or adopted). Store ``pid``, ``create_time`` and ``tag`` to adopt it later."""

    pid: int
    create_time: float
    tag: str | None = None
    log_path: Path | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)
    """Set when this process spawned it: then it is our child, we reap it and know its exit code."""

    def is_alive(self) -> bool:
        """True while the process runs. An adopted zombie counts as exited; our own child counts until it
        is reaped (its first thread can exit, showing it as a zombie, while its other threads still run)."""
        if self.popen is not None:
            return self.popen.poll() is None
        return _verified(self.pid, self.create_time) is not None

    def poll(self) -> int | None:
        """The exit code once a spawned process has exited; None while it runs, or if it was adopted.

        An adopted process is not our child, so its exit code is unknowable: use :meth:`is_alive`.
        """
        return None if self.popen is None else self.popen.poll()


@dataclass(frozen=True, slots=True)
class Termination:
    """What :func:`terminate_tree` did."""

    exit_code: int | None
    """The main process's exit code, when it was our child (negative: killed by that signal)."""
    signalled: tuple[int, ...]
    """Every pid that was sent SIGTERM or SIGKILL."""
    killed: tuple[int, ...]
    """The pids still running after the grace period, which got SIGKILL."""
    survivors: tuple[int, ...]
    """Pids still running even after SIGKILL and ``kill_wait``: a bug to report, not to wait for."""
    elapsed: float


def spawn(*, argv: Sequence[str], env: Mapping[str, str], cwd: Path | str | None, log_path: Path) -> ProcessHandle:
    """Start ``argv`` in a new session, stdout and stderr appended to ``log_path``.

    ``env`` is the complete environment (merge ``os.environ`` yourself to inherit it); ``PYTHONUNBUFFERED=1``
    and a fresh :data:`TAG_ENV` tag are added. Raises :class:`SpawnError` if the program cannot start (the
    reason is also written to the log, where the pod runner reads failure messages).
    """
    if not argv:
        raise ValueError("argv must not be empty")
    tag = uuid.uuid4().hex
    inherited = env.get(TAG_ENV, "").split()
    full_env = {**env, "PYTHONUNBUFFERED": "1", TAG_ENV: " ".join([*inherited, tag])}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab", buffering=0) as log:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        log.write(f"=== {stamp} {START_MARKER}{list(argv)!r}\n".encode())
        try:
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=full_env,
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as exc:
            log.write(f"=== {stamp} kray: cannot start {argv[0]!r}: {exc}\n".encode())
            raise errors.SpawnError(f"cannot start {argv[0]!r}: {exc}") from exc
    # An exited child stays a zombie until we reap it, so its start time is always readable here.
    create_time = psutil.Process(popen.pid).create_time()
    return ProcessHandle(pid=popen.pid, create_time=create_time, tag=tag, log_path=log_path, popen=popen)


def adopt(
    pid: int, create_time: float, *, tag: str | None = None, log_path: Path | None = None
) -> ProcessHandle | None:
    """A handle for a process started earlier (by this or a previous supervisor), or None if it is gone.

    None also when the pid now belongs to another process (its start time differs). The tag is read back
    from the process's environment when not given.
    """
    proc = _verified(pid, create_time)
    if proc is None:
        return None
    if tag is None:
        with contextlib.suppress(psutil.Error):
            tags = proc.environ().get(TAG_ENV, "").split()
            tag = tags[-1] if tags else None
    return ProcessHandle(pid=pid, create_time=proc.create_time(), tag=tag, log_path=log_path)


def terminate_tree(
    handle: ProcessHandle,
    *,
    grace: float = 10.0,
    kill_wait: float = 5.0,
    signal_all: bool = False,
    poll_interval: float = 0.1,
) -> Termination:
    """Stop a process and everything it started; returns within about ``grace + kill_wait`` seconds.

    SIGTERM goes to the main process (to every member with ``signal_all``, and to the rest as soon as
    the main process has exited); members still running after ``grace`` get SIGKILL.
    """
    started = time.monotonic()
    deadline = started + grace
    signalled: set[int] = set()
    members = _members(handle)
    root = members.get(handle.pid)
    _send(members.values() if signal_all or root is None else [root], signal.SIGTERM, signalled)
    while members and time.monotonic() < deadline:
        time.sleep(poll_interval)
        _reap(handle)
        members = _members(handle)
        if handle.pid not in members:
            _send(members.values(), signal.SIGTERM, signalled)  # once each: the main process is gone
    killed = tuple(sorted(members))
    _send(members.values(), signal.SIGKILL, signalled, again=True)
    kill_deadline = time.monotonic() + kill_wait
    while members and time.monotonic() < kill_deadline:
        time.sleep(min(poll_interval, 0.05))
        _reap(handle)
        members = _members(handle)
        _send(members.values(), signal.SIGKILL, signalled, again=True)  # stragglers forked meanwhile
    _reap(handle)
    return Termination(
        exit_code=handle.poll(),
        signalled=tuple(sorted(signalled)),
        killed=killed,
        survivors=tuple(sorted(members)),
        elapsed=time.monotonic() - started,
    )


def members(handle: ProcessHandle) -> list[psutil.Process]:
    """Every live process of the handle's tree, as :func:`terminate_tree` finds them (descendants, session,
    group and tag: Ray renames its agents and workers with setproctitle, which can clobber the environment
    that ``/proc`` shows, so the tag alone does not find them)."""
    return list(_members(handle).values())


START_MARKER = "kray: start "
"""Written (after ``=== <time> ``) at the top of every run's output in a pod's log."""


def tail(log_path: Path, lines: int = 40, *, last_run: bool = False) -> str:
    """The last ``lines`` lines of a log (reads only the end of the file); empty if there is no log.

    With ``last_run``, only what the latest start wrote (the lines after the last start marker), as
    the kubelet's ``terminated.message`` holds only the ended container's own output.
    """
    if lines <= 0:
        return ""
    try:
        with log_path.open("rb") as f:
            end = f.seek(0, os.SEEK_END)
            position, data = end, b""
            while position > 0 and data.count(b"\n") <= lines:
                step = min(8192, position)
                position -= step
                f.seek(position)
                data = f.read(step) + data
    except FileNotFoundError:
        return ""
    kept = data.decode("utf-8", "replace").splitlines()[-lines:]
    if last_run:
        starts = [i for i, line in enumerate(kept) if line.startswith("=== ") and START_MARKER in line]
        if starts:
            kept = kept[starts[-1] + 1 :]
    return "\n".join(kept)


# -- internals ------------------------------------------------------------------------------------------


def _verified(pid: int, create_time: float) -> psutil.Process | None:
    """The running (non-zombie) process with this pid *and* start time, if any."""
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - create_time) > _CREATE_TIME_TOLERANCE:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
    except psutil.Error:
        return None
    return proc


def _pid_reused(handle: ProcessHandle) -> bool:
    try:
        return abs(psutil.Process(handle.pid).create_time() - handle.create_time) > _CREATE_TIME_TOLERANCE
    except psutil.Error:
        return False


def _members(handle: ProcessHandle) -> dict[int, psutil.Process]:
    """Every live process belonging to the handle: itself, its session and group, its tag, and all their
    descendants. One pass over the process table (a parent map, not ``children()`` per member).

    The session/group id is only trusted while the pid is not reused: Linux does not hand out a pid
    that is still some group's or session's id, so a vanished leader's id still names its group.
    """
    me = os.getpid()
    root_ok = handle.is_alive()
    by_ids = root_ok or not _pid_reused(handle)
    table: dict[int, psutil.Process] = {}
    children: dict[int, list[int]] = {}
    found: set[int] = set()
    for proc in psutil.process_iter(["ppid"]):
        if proc.pid == me:
            continue
        table[proc.pid] = proc
        children.setdefault(proc.info["ppid"], []).append(proc.pid)
        try:
            if proc.pid == handle.pid:
                if root_ok:
                    found.add(proc.pid)
            elif _belongs(proc, handle, by_ids=by_ids):
                found.add(proc.pid)
        except (OSError, psutil.Error):
            continue
    stack = list(found)
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in found:
                found.add(child)
                stack.append(child)
    return {pid: table[pid] for pid in found if (pid == handle.pid and root_ok) or _running(table[pid])}


def _belongs(proc: psutil.Process, handle: ProcessHandle, *, by_ids: bool) -> bool:
    if by_ids and handle.pid in (os.getsid(proc.pid), os.getpgid(proc.pid)):
        return True
    return bool(handle.tag) and handle.tag in proc.environ().get(TAG_ENV, "").split()


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _send(procs: Iterable[psutil.Process], sig: signal.Signals, signalled: set[int], *, again: bool = False) -> None:
    """Signal each process (psutil checks the pid still names the same process before signalling)."""
    for proc in procs:
        if proc.pid in signalled and not again:
            continue
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)
        signalled.add(proc.pid)


def _reap(handle: ProcessHandle) -> None:
    if handle.popen is not None:
        handle.popen.poll()
