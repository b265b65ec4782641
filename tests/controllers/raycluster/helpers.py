"""Builders of RayCluster manifests and pod views for the pure planner and status tests."""

from __future__ import annotations

from typing import Any

from kray.api.v1.raycluster import RayCluster
from kray.controllers.raycluster.podview import PodView

CONTAINER = {"name": "ray", "image": "rayproject/ray:2.60.0", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}


def cluster(
    *, groups: list[dict[str, Any]] | None = None, status: dict[str, Any] | None = None, **spec: Any
) -> RayCluster:
    body: dict[str, Any] = {
        "headGroupSpec": {"rayStartParams": {}, "template": {"spec": {"containers": [CONTAINER]}}},
        "workerGroupSpecs": [
            {"groupName": "g", "rayStartParams": {}, "template": {"spec": {"containers": [CONTAINER]}}, **g}
            for g in (groups if groups is not None else [{"replicas": 2, "minReplicas": 0, "maxReplicas": 5}])
        ],
        **spec,
    }
    manifest: dict[str, Any] = {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": "c", "generation": 3},
        "spec": body,
    }
    if status is not None:
        manifest["status"] = status
    return RayCluster.model_validate(manifest)


def pod(
    name: str,
    *,
    group: str = "g",
    head: bool = False,
    phase: str = "Running",
    ready: bool = True,
    deleting: bool = False,
    terminated: bool = False,
    restart_policy: str = "Always",
    ip: str = "10.0.0.1",
    replica_index: int | None = None,
    replica_name: str = "",
    ready_condition: tuple[str, str, str] | bool | None = True,
    recreate_hash: str = "",
    kuberay_version: str = "",
) -> PodView:
    """A pod view; its PodReady condition follows ``ready`` unless ``ready_condition`` is given (None: no condition)."""
    if ready_condition is True:
        ready_condition = ("True", "", "") if ready else ("False", "ContainersNotReady", "containers not ready")
    assert ready_condition is not False
    return PodView(
        name=name,
        node_type="head" if head else "worker",
        group="headgroup" if head else group,
        phase=phase,
        ready=ready,
        deleting=deleting,
        restart_policy=restart_policy,
        ray_container_terminated=terminated,
        waiting_reason="",
        terminated_reason="",
        ip=ip,
        requests={},
        replica_index=replica_index,
        replica_name=replica_name,
        ready_condition=ready_condition,
        recreate_hash=recreate_hash,
        kuberay_version=kuberay_version,
    )


def condition(type_: str, status: str = "True") -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": type_,
        "message": "",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
