"""Start, find and stop the local server from the CLI (another process).

``ensure_server`` starts one on demand and waits until its API answers; ``stop_server`` asks it to
stop (SIGTERM: it kills every pod's processes), escalates to SIGKILL, and then sweeps any process
still tagged with this state dir — so ``kray server stop`` leaves no Ray process behind even when
the server had been killed with -9 and its pods' processes were orphaned; nor their clusters' Ray temp
dirs (:mod:`kray.local.tempdirs`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import httpx2
import psutil

from kray.local.paths import LocalPaths
from kray.local.podrunner import HOME_ENV
from kray.local.procs import tail
from kray.local.tempdirs import remove_unused


class ServerError(Exception):
    """The local server could not be started, reached or stopped."""


@dataclass(frozen=True, slots=True)
class ServerInfo:
    pid: int
    url: str
    token: str


def _read_info(paths: LocalPaths) -> ServerInfo | None:
    try:
        data = json.loads(paths.server_info.read_text())
        token = paths.token.read_text().strip()
    except (FileNotFoundError, ValueError):
        return None
    return ServerInfo(pid=int(data["pid"]), url=str(data["url"]), token=token)


def _healthy(info: ServerInfo) -> bool:
    try:
        return httpx2.get(f"{info.url}/healthz", timeout=2.0).status_code == 200
    except httpx2.HTTPError:
        return False


def server_status(paths: LocalPaths) -> ServerInfo | None:
    info = _read_info(paths)
    if info is None or not psutil.pid_exists(info.pid) or not _healthy(info):
        return None
    return info


def ensure_server(paths: LocalPaths, *, timeout: float = 60.0) -> ServerInfo:
    found = server_status(paths)
    if found is not None:
        return found
    paths.ensure()
    env = {**os.environ, "KRAY_HOME": str(paths.home)}
    with paths.server_log.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "kray.local.server.daemon", "--home", str(paths.home)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = server_status(paths)
        if info is not None:
            return info
        if process.poll() is not None and not _lock_held(paths):
            # It exited, and no other server holds the state dir (had one, ours lost the race to it and we
            # wait for the winner to answer, as the loop does).
            info = server_status(paths)
            if info is not None:
                return info
            raise ServerError(f"the kray server exited ({process.returncode}):\n{tail(paths.server_log, 20)}")
        time.sleep(0.1)
    raise ServerError(f"the kray server did not answer within {timeout:.0f}s; see {paths.server_log}")


def _lock_held(paths: LocalPaths) -> bool:
    """Whether a server process holds the state dir's lock (it may still be starting)."""
    try:
        with paths.lock.open("a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(lock, fcntl.LOCK_UN)
            return False
    except OSError:
        return False


def stop_server(paths: LocalPaths, *, timeout: float = 90.0) -> list[int]:
    """Stop the server and every process it started; returns the pids the final sweep had to kill."""
    info = _read_info(paths)
    if info is not None and psutil.pid_exists(info.pid):
        try:
            os.kill(info.pid, signal.SIGTERM)
            if not _exited(info.pid, timeout=timeout):
                os.kill(info.pid, signal.SIGKILL)
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass
    paths.server_info.unlink(missing_ok=True)
    swept = sweep(paths)
    _remove_temp_dirs(paths)
    return swept


def _remove_temp_dirs(paths: LocalPaths) -> None:
    """Delete the state dir's Ray temp dirs once nothing can use them: no process of the state dir is left and
    no server runs on it. The state dir's lock is held meanwhile, so no server starts pods in the meantime."""
    if not paths.lock.exists():
        return
    with paths.lock.open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # a server runs (again) on this state dir: its pods' dirs are its runner's to remove
        try:
            if not _state_dir_processes(str(paths.home)):
                remove_unused(paths.home)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _exited(pid: int, *, timeout: float) -> bool:
    """Wait until ``pid`` has exited. A zombie has: when the server's parent is a live process that has not
    reaped it yet (the server was started by a program that is still running), ``psutil.wait`` would wait
    for the zombie to disappear, i.e. the whole timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)  # ours to reap, when we started it
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def sweep(paths: LocalPaths) -> list[int]:
    """Kill every process of this state dir (orphans of a server killed with -9); returns their pids."""
    found = _state_dir_processes(str(paths.home))
    for proc in found:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(found, timeout=10)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(alive, timeout=5)
    return sorted(p.pid for p in found)


def _state_dir_processes(home: str) -> list[psutil.Process]:
    """The processes tagged with ``home`` (``KRAY_LOCAL_HOME``), the members of their sessions and process
    groups, and every descendant of those, in one pass over the process table.

    The tag alone misses some: Ray renames its agents and workers with setproctitle, which can clobber the
    environment that ``/proc`` shows. A tagged process that leads a session or group vouches for its members
    (Linux hands out no pid that is still a session or group id); this process and its ancestors never count.
    """
    me = os.getpid()
    spared = {me, *(p.pid for p in psutil.Process(me).parents())}
    table: dict[int, psutil.Process] = {}
    children: dict[int, list[int]] = {}
    ids: dict[int, tuple[int, int]] = {}
    tagged: set[int] = set()
    for proc in psutil.process_iter(["ppid"]):
        table[proc.pid] = proc
        children.setdefault(proc.info["ppid"], []).append(proc.pid)
        try:
            ids[proc.pid] = (os.getsid(proc.pid), os.getpgid(proc.pid))
            if proc.environ().get(HOME_ENV) == home:
                tagged.add(proc.pid)
        except (OSError, psutil.Error):
            continue
    found = tagged | {pid for pid, (sid, pgid) in ids.items() if sid in tagged or pgid in tagged}
    stack = list(found)
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in found:
                found.add(child)
                stack.append(child)
    return [table[pid] for pid in sorted(found - spared)]
