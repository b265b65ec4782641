"""Why a Ray cluster's pods are not up: one finding per pod, read from the pod status alone. Pure.

KubeRay leaves a RayJob in ``Initializing`` for as long as its cluster is not ready, even when the
head crash-loops from its first second (users.md §3: "users want fail-fast with reasons"). The RayJob
planner uses these findings to end such a job early, and to say in every startup failure message
which pod is stuck and what its container last printed. The facts come from the fields the kubelet
(or local mode's pod runner) writes: phase, ``containerStatuses[].state`` and ``lastState``,
``restartCount``, and the terminated container's ``message`` (its last log lines).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MAX_LOG_TAIL = 2000
"""Characters of a container's last output carried into a RayJob message."""


@dataclass(frozen=True, slots=True)
class PodTrouble:
    """One pod of the cluster that is not Running and Ready, and what its Ray container says."""

    pod: str
    node_type: str
    container: str
    state: str
    """The container's waiting or terminated reason, or the pod's phase when the container says nothing."""
    restarts: int
    failed: bool
    """The pod reached phase Failed: it will not run again by itself."""
    exit_code: int | None = None
    """Of the container's current or last termination."""
    log_tail: str = ""
    """The terminated container's message: its last log lines."""

    def summary(self) -> str:
        role = f"{self.node_type} pod" if self.node_type else "pod"
        parts = [f"{role} {self.pod}: {self.state}"]
        if self.restarts:
            parts.append(f"after {self.restarts} restart{'s' if self.restarts != 1 else ''}")
        if self.exit_code is not None:
            parts.append(f"(last exit code {self.exit_code})")
        return " ".join(parts)

    def describe(self) -> str:
        """The summary, then the container's last output (trimmed to its end)."""
        tail = self.log_tail.strip()
        if not tail:
            return self.summary()
        if len(tail) > MAX_LOG_TAIL:
            tail = "…" + tail[-MAX_LOG_TAIL:]
        return f"{self.summary()}; last log lines:\n{tail}"


def pod_trouble(pod: Mapping[str, Any]) -> PodTrouble | None:
    """The pod's trouble, or None when it is Running and Ready (or already being deleted)."""
    meta = pod.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return None
    status = pod.get("status") or {}
    phase = str(status.get("phase") or "Pending")
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or ())
    if phase == "Running" and ready:
        return None
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    name = str(containers[0].get("name") or "")
    ray: Mapping[str, Any] = next(
        (c for c in status.get("containerStatuses") or () if c.get("name") == name),
        {},
    )
    state = ray.get("state") or {}
    waiting = state.get("waiting") or {}
    terminated = state.get("terminated") or {}
    last = (ray.get("lastState") or {}).get("terminated") or {}
    ended = terminated or last
    reason = waiting.get("reason") or terminated.get("reason") or status.get("reason") or phase
    if phase == "Running" and not waiting and not terminated:
        reason = "Running, not Ready"
    exit_code = ended.get("exitCode")
    return PodTrouble(
        pod=str(meta.get("name", "")),
        node_type=str((meta.get("labels") or {}).get("ray.io/node-type", "")),
        container=name,
        state=str(reason),
        restarts=int(ray.get("restartCount") or 0),
        failed=phase == "Failed",
        exit_code=int(exit_code) if isinstance(exit_code, int) else None,
        log_tail=str(ended.get("message") or (status.get("message") if phase == "Failed" else "") or ""),
    )


def troubles(pods: Iterable[Mapping[str, Any]]) -> list[PodTrouble]:
    """Every pod's trouble, the head first, then by name."""
    found = [t for t in (pod_trouble(p) for p in pods) if t is not None]
    return sorted(found, key=lambda t: (t.node_type != "head", t.pod))


def startup_failure(troubles_: Sequence[PodTrouble], *, crash_loop_restarts: int) -> PodTrouble | None:
    """The first trouble that will not clear by waiting: a Failed pod, or a container that has
    restarted ``crash_loop_restarts`` times without becoming ready."""
    for trouble in troubles_:
        if trouble.failed or trouble.restarts >= crash_loop_restarts:
            return trouble
    return None


def unready_report(troubles_: Sequence[PodTrouble], *, limit: int = 3) -> str:
    """A few lines on the pods that are not up, for a deadline's message ("" when all are up)."""
    if not troubles_:
        return ""
    lines = [troubles_[0].describe(), *(t.summary() for t in troubles_[1:limit])]
    if len(troubles_) > limit:
        lines.append(f"... and {len(troubles_) - limit} more pods not ready")
    return "\n".join(lines)
