"""Decide what the RayCluster controller does next: which pods to create and delete. Pure.

KubeRay's ``reconcilePods`` (reference §2.6), as a function from (spec, conditions, pods) to
actions. It never reads a clock or a store; :mod:`.reconcile` executes its actions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from kray.api.v1.conditions import RayClusterConditionType, is_condition_true
from kray.api.v1.raycluster import RayCluster, WorkerGroupSpec
from kray.controllers.raycluster.podview import PodView

DISABLE_PROVISIONED_HEAD_RESTART = "ray.io/disable-provisioned-head-restart"


@dataclass(frozen=True, slots=True)
class CreateHead:
    pass


@dataclass(frozen=True, slots=True)
class CreateWorker:
    group: str
    replica_index: int


@dataclass(frozen=True, slots=True)
class DeletePod:
    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class DeleteAllPods:
    reason: str


Action = CreateHead | CreateWorker | DeletePod | DeleteAllPods


@dataclass(frozen=True, slots=True)
class PodPlan:
    actions: tuple[Action, ...] = ()
    error: str | None = None
    """A condition KubeRay reports as a reconcile error (e.g. two head pods)."""
    skipped_creations: bool = False
    """True when unhealthy pods were deleted, so nothing was created in this pass (KubeRay's rule)."""
    notes: tuple[str, ...] = field(default=())


def desired_workers(group: WorkerGroupSpec) -> int:
    """clamp(replicas, min, max) x numOfHosts; 0 for a suspended group (KubeRay's GetWorkerGroupDesiredReplicas)."""
    if group.suspend:
        return 0
    low = group.min_replicas or 0
    high = group.max_replicas if group.max_replicas is not None else 2**31 - 1
    replicas = group.replicas if group.replicas is not None else low
    replicas = max(low, min(replicas, high)) if low <= high else high
    return replicas * max(group.num_of_hosts, 1)


def should_delete(pod: PodView) -> bool:
    """KubeRay's shouldDeletePod: finished pods, and Never-restart pods whose Ray container ended."""
    if pod.phase in {"Failed", "Succeeded"}:
        return True
    return pod.phase == "Running" and pod.ray_container_terminated and pod.restart_policy == "Never"


def plan_pods(*, cluster: RayCluster, pods: Sequence[PodView]) -> PodPlan:
    spec = cluster.spec
    conditions = cluster.status.conditions if cluster.status else None
    live = [p for p in pods if not p.deleting]
    if is_condition_true(conditions, RayClusterConditionType.SUSPENDING):
        return PodPlan(actions=(DeleteAllPods("suspending"),) if pods else ())
    if is_condition_true(conditions, RayClusterConditionType.SUSPENDED) or spec.suspend:
        return PodPlan()

    actions: list[Action] = []
    heads = [p for p in live if p.is_head]
    if not heads:
        provisioned = is_condition_true(conditions, RayClusterConditionType.PROVISIONED)
        annotations = cluster.metadata.annotations or {}
        if not (provisioned and annotations.get(DISABLE_PROVISIONED_HEAD_RESTART) == "true"):
            actions.append(CreateHead())
    elif len(heads) > 1:
        return PodPlan(error=f"{len(heads)} head pods found for one RayCluster; expected 1")
    elif should_delete(heads[0]):
        actions.append(DeletePod(heads[0].name, "head pod ended"))

    skipped = False
    for group in spec.worker_group_specs or ():
        group_actions, deleted_unhealthy = _plan_group(
            group=group,
            pods=[p for p in live if not p.is_head and p.group == group.group_name],
            autoscaling=spec.autoscaling_enabled(),
        )
        actions.extend(group_actions)
        skipped = skipped or deleted_unhealthy
    return PodPlan(actions=tuple(actions), skipped_creations=skipped)


def _plan_group(*, group: WorkerGroupSpec, pods: list[PodView], autoscaling: bool) -> tuple[list[Action], bool]:
    if group.suspend:
        return [DeletePod(p.name, "worker group suspended") for p in pods], False
    unhealthy = [p for p in pods if should_delete(p)]
    if unhealthy:
        return [DeletePod(p.name, "worker pod ended") for p in unhealthy], True
    actions: list[Action] = []
    to_delete = set(group.scale_strategy.workers_to_delete or ()) if group.scale_strategy else set()
    remaining = []
    for pod in pods:
        if pod.name in to_delete:
            actions.append(DeletePod(pod.name, "listed in scaleStrategy.workersToDelete"))
        else:
            remaining.append(pod)
    diff = desired_workers(group) - len(remaining)
    if diff > 0:
        used = len(remaining)
        actions.extend(CreateWorker(group.group_name, used + i) for i in range(diff))
    elif diff < 0 and not autoscaling:
        actions.extend(DeletePod(p.name, "scale down") for p in remaining[:-diff])
    return actions, False
