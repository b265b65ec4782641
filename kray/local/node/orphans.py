"""Processes a node agent's pods left that no pod names any more (the agent was killed with -9, and the pod
was deleted meanwhile): found by the state dir every pod process carries, and killed at the agent's start.

A process belongs to a pod still bound to the node when one of its tags (every kray-spawned ancestor's,
:data:`kray.local.procs.TAG_ENV`) is a tag recorded on that pod (:mod:`kray.local.containers`): the runner
adopts those. Everything else of the state dir goes, its descendants, sessions and groups included.
"""

from __future__ import annotations

import os
from collections.abc import Collection

import psutil

from kray.local.containers import pod_records
from kray.local.podrunner import HOME_ENV
from kray.local.procs import TAG_ENV
from kray.store import Obj

__all__ = ["find_orphans", "kill", "known_tags"]


def known_tags(pods: Collection[Obj]) -> set[str]:
    """The process tags the pods record (their containers' processes, to be adopted)."""
    return {record.tag for pod in pods for record in pod_records(pod).values() if record.tag}


def find_orphans(home: str, *, keep: Collection[str]) -> list[psutil.Process]:
    """This state dir's processes none of whose tags is in ``keep``, with their sessions, groups and
    descendants (never this process or its ancestors)."""
    me = os.getpid()
    spared = {me, *(p.pid for p in psutil.Process(me).parents())}
    table: dict[int, psutil.Process] = {}
    children: dict[int, list[int]] = {}
    ids: dict[int, tuple[int, int]] = {}
    ours: set[int] = set()
    adopted: set[int] = set()
    for proc in psutil.process_iter(["ppid"]):
        table[proc.pid] = proc
        children.setdefault(proc.info["ppid"], []).append(proc.pid)
        try:
            ids[proc.pid] = (os.getsid(proc.pid), os.getpgid(proc.pid))
            env = proc.environ()
        except (OSError, psutil.Error):
            continue
        if env.get(HOME_ENV) != home:
            continue
        if set(env.get(TAG_ENV, "").split()) & set(keep):
            adopted.add(proc.pid)
        else:
            ours.add(proc.pid)
    found = ours | {pid for pid, (sid, pgid) in ids.items() if (sid in ours or pgid in ours) and pid not in adopted}
    stack = list(found)
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in found and child not in adopted:
                found.add(child)
                stack.append(child)
    return [table[pid] for pid in sorted(found - spared)]


def kill(found: list[psutil.Process], *, grace: float = 5.0) -> list[int]:
    """SIGTERM, then SIGKILL after ``grace``; the pids signalled."""
    for proc in found:
        try:
            proc.terminate()
        except psutil.Error:
            continue
    _, alive = psutil.wait_procs(found, timeout=grace)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            continue
    psutil.wait_procs(alive, timeout=5)
    return [p.pid for p in found]
