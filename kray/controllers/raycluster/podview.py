"""Read-only views of pod JSON: the few facts the RayCluster planner and status need.

Pure: a PodView is computed from a pod dict, so planners take views and stay free of JSON
plumbing (and of which store the pods came from).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

NODE_TYPE_LABEL = "ray.io/node-type"
GROUP_LABEL = "ray.io/group"
CLUSTER_LABEL = "ray.io/cluster"
REPLICA_INDEX_LABEL = "ray.io/worker-group-replica-index"
REPLICA_NAME_LABEL = "ray.io/worker-group-replica-name"
RECREATE_HASH_ANNOTATION = "ray.io/upgrade-strategy-recreate-hash"
KUBERAY_VERSION_ANNOTATION = "ray.io/kuberay-version"


@dataclass(frozen=True, slots=True)
class PodView:
    name: str
    node_type: str
    group: str
    phase: str
    ready: bool
    deleting: bool
    restart_policy: str
    ray_container_terminated: bool
    waiting_reason: str
    terminated_reason: str
    ip: str
    requests: Mapping[str, Any]
    replica_index: int | None = None
    """``ray.io/worker-group-replica-index`` (None when absent or not a number)."""
    replica_name: str = ""
    """``ray.io/worker-group-replica-name`` of multi-host replicas ("" when absent)."""
    ready_condition: tuple[str, str, str] | None = None
    """The PodReady condition as (status, reason, message); None when the pod reports none."""
    recreate_hash: str = ""
    kuberay_version: str = ""

    @property
    def is_head(self) -> bool:
        return self.node_type == "head"

    @property
    def running_and_ready(self) -> bool:
        return self.phase == "Running" and self.ready


def pod_view(pod: Mapping[str, Any]) -> PodView:
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    conditions = status.get("conditions") or ()
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    ready_condition = next(
        (
            (str(c.get("status", "")), str(c.get("reason") or ""), str(c.get("message") or ""))
            for c in conditions
            if c.get("type") == "Ready"
        ),
        None,
    )
    annotations = meta.get("annotations") or {}
    index_text = str(labels.get(REPLICA_INDEX_LABEL, ""))
    container_statuses = status.get("containerStatuses") or ()
    ray_name = ((spec.get("containers") or [{}])[0]).get("name")
    ray_status: Mapping[str, Any] = next((c for c in container_statuses if c.get("name") == ray_name), {})
    state = ray_status.get("state") or {}
    return PodView(
        name=str(meta.get("name", "")),
        node_type=str(labels.get(NODE_TYPE_LABEL, "")),
        group=str(labels.get(GROUP_LABEL, "")),
        phase=str(status.get("phase", "Pending")),
        ready=ready,
        deleting=bool(meta.get("deletionTimestamp")),
        restart_policy=str(spec.get("restartPolicy", "Always")),
        ray_container_terminated="terminated" in state,
        waiting_reason=str((state.get("waiting") or {}).get("reason", "")),
        terminated_reason=str((state.get("terminated") or {}).get("reason", "")),
        ip=str(status.get("podIP", "")),
        requests=_pod_resources(spec),
        replica_index=int(index_text) if index_text.isdigit() else None,
        replica_name=str(labels.get(REPLICA_NAME_LABEL, "")),
        ready_condition=ready_condition,
        recreate_hash=str(annotations.get(RECREATE_HASH_ANNOTATION, "")),
        kuberay_version=str(annotations.get(KUBERAY_VERSION_ANNOTATION, "")),
    )


def _pod_resources(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    return {"containers": spec.get("containers") or ()}


def views(pods: Sequence[Mapping[str, Any]]) -> list[PodView]:
    return sorted((pod_view(p) for p in pods), key=lambda v: v.name)
