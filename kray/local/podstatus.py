"""A local pod's phase and conditions, decided from its container statuses as the kubelet decides them. Pure.

The pod runner writes ``containerStatuses`` and ``initContainerStatuses`` per container; what the pod as a
whole says follows from them by the kubelet's rules (``getPhase`` and the ``Generate*Condition`` functions
of ``pkg/kubelet/status``), so controllers reading a local pod read what a node would have written:

- **phase**: Pending while a regular init container has not completed, while a native sidecar
  (``initContainers[].restartPolicy: Always``) has not started before any main container did, or while a
  main container has never started; Running while a main container runs (or, under ``Always``, while all
  are between restarts); once all main containers have stopped: Succeeded if every one exited 0, else Failed
  (``Never``), Running again under ``OnFailure`` while one is to be restarted. Terminated native sidecars
  do not count. One local difference, documented: a failed regular init container fails the pod under
  every restart policy (nothing would fix it on one machine; a RayJob then fails fast);
- **conditions**: Initialized once every regular init container completed and every native sidecar
  started; ContainersReady and Ready once every main container *and* every native sidecar is ready,
  with the kubelet's ``ContainersNotReady`` / ``PodCompleted`` / ``PodFailed`` reasons and messages.
  A condition's ``lastTransitionTime`` moves only when its status flips.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Entry = Mapping[str, Any]


def _state(entry: Entry) -> str:
    return str(next(iter(entry.get("state") or {"waiting": None})))


def _exit_code(entry: Entry) -> int | None:
    terminated = (entry.get("state") or {}).get("terminated")
    return None if terminated is None else int(terminated.get("exitCode", 0))


def _has_run(entry: Entry) -> bool:
    return bool((entry.get("lastState") or {}).get("terminated"))


def pod_phase(
    *,
    policy: str,
    init: Sequence[Entry],
    sidecars: Sequence[Entry],
    containers: Sequence[Entry],
    terminal: bool,
) -> str:
    """The kubelet's ``getPhase``: ``init`` are the regular init containers' entries, ``sidecars`` the native
    sidecars', ``containers`` the main containers' (one entry each, all present); ``terminal``: the pod's
    containers will not run again."""
    failed_init = any((code := _exit_code(e)) is not None and code != 0 for e in init)
    pending_init = sum(1 for e in init if _state(e) != "terminated")
    pending_sidecars = sum(
        1
        for e in sidecars
        if (_state(e) == "running" and not e.get("started")) or (_state(e) == "waiting" and not _has_run(e))
    )
    running = sum(1 for e in (*sidecars, *containers) if _state(e) == "running")
    waiting = sum(1 for e in sidecars if _state(e) == "waiting" and not _has_run(e))
    stopped = succeeded = 0
    for entry in containers:
        state = _state(entry)
        if state == "terminated":
            stopped += 1
            succeeded += _exit_code(entry) == 0
        elif state == "waiting":
            if _has_run(entry):
                stopped += 1
            else:
                waiting += 1
    main_started = any(_state(e) != "waiting" or _has_run(e) for e in containers)
    if failed_init:
        return "Failed"
    if pending_init or (pending_sidecars and not main_started):
        return "Pending"
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if terminal:
            return "Succeeded" if stopped == succeeded else "Failed"
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        return "Failed" if policy == "Never" else "Running"
    return "Pending"


def _names(names: Sequence[str]) -> str:
    """Go's ``%s`` of a string slice, as in the kubelet's condition messages."""
    return "[" + " ".join(names) + "]"


def pod_conditions(
    previous: Sequence[Mapping[str, Any]] | None,
    *,
    uninitialized: Sequence[str],
    unready: Sequence[str],
    phase: str,
    now: str,
) -> list[dict[str, str]]:
    """PodScheduled, Initialized, ContainersReady, Ready: ``uninitialized`` names the init containers not yet
    completed (regular) or started (native sidecars); ``unready`` the main containers and native sidecars that
    are not ready."""
    before = {c.get("type"): c for c in previous or ()}
    initialized: dict[str, str] = (
        {"status": "True"}
        if not uninitialized
        else {
            "status": "False",
            "reason": "ContainersNotInitialized",
            "message": f"containers with incomplete status: {_names(uninitialized)}",
        }
    )
    ready: dict[str, str]
    if phase == "Succeeded":
        ready = {"status": "False", "reason": "PodCompleted"}
    elif phase == "Failed":
        ready = {"status": "False", "reason": "PodFailed"}
    elif unready:
        ready = {
            "status": "False",
            "reason": "ContainersNotReady",
            "message": f"containers with unready status: {_names(unready)}",
        }
    else:
        ready = {"status": "True"}
    out = []
    for type_, fields in (
        ("PodScheduled", {"status": "True"}),
        ("Initialized", initialized),
        ("ContainersReady", ready),
        ("Ready", ready),
    ):
        old = before.get(type_) or {}
        since = old.get("lastTransitionTime") if old.get("status") == fields["status"] else None
        out.append(_ordered({"type": type_, **fields, "lastTransitionTime": since or now}))
    return out


def _ordered(condition: dict[str, str]) -> dict[str, str]:
    keys = ("type", "status", "lastTransitionTime", "reason", "message")
    return {k: condition[k] for k in keys if k in condition}
