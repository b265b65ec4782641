"""Decide what the RayCluster controller does next: which pods to create and delete. Pure.

KubeRay's ``reconcilePods`` (reference §2.6), as a function from (spec, conditions, pods) to
actions. It never reads a clock or a store and never draws random names; :mod:`.reconcile`
executes its actions (and names multi-host replicas).

Invariants the tests hold it to: planning again after its actions were applied asks for nothing
(idempotent); it never creates more pods than a group wants nor deletes a pod that does not exist
(bounded); a pass that deletes unhealthy pods creates none (KubeRay's rule, so the next pass sees
the deletions); a multi-host replica (``numOfHosts > 1``) is created and deleted whole.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from kray.api.v1.conditions import RayClusterConditionType, is_condition_true
from kray.api.v1.enums import RayClusterUpgradeType
from kray.api.v1.raycluster import RayCluster, WorkerGroupSpec
from kray.controllers.raycluster.podview import PodView

DISABLE_PROVISIONED_HEAD_RESTART = "ray.io/disable-provisioned-head-restart"


@dataclass(frozen=True, slots=True)
class CreateHead:
    pass


@dataclass(frozen=True, slots=True)
class CreateWorker:
    """One single-host worker, labelled with the group's lowest free ``replica_index``."""

    group: str
    replica_index: int


@dataclass(frozen=True, slots=True)
class CreateReplica:
    """A whole multi-host replica: ``hosts`` pods sharing a new replica name and ``replica_index``."""

    group: str
    replica_index: int
    hosts: int


@dataclass(frozen=True, slots=True)
class DeletePod:
    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class DeleteAllPods:
    reason: str


@dataclass(frozen=True, slots=True)
class RefreshHeadVersion:
    """The head was made by another KubeRay version: rewrite its recreate hash and version, recreate nothing."""

    name: str


Action = CreateHead | CreateWorker | CreateReplica | DeletePod | DeleteAllPods | RefreshHeadVersion


@dataclass(frozen=True, slots=True)
class PodPlan:
    actions: tuple[Action, ...] = ()
    error: str | None = None
    """A condition KubeRay reports as a reconcile error (e.g. two head pods)."""
    skipped_creations: bool = False
    """True when unhealthy pods were deleted, so nothing was created in this pass (KubeRay's rule)."""


@dataclass(frozen=True, slots=True)
class PlanOptions:
    multi_host_indexing: bool = True
    """Feature gate ``RayMultiHostIndexing`` (on in v1.7): replica indices, atomic multi-host replicas."""
    recreate_hash: str = ""
    """The cluster's ``upgradeStrategy`` hash (:func:`.upgrade.recreate_hash`) now."""
    kuberay_version: str = ""
    """The version this operator writes in ``ray.io/kuberay-version``."""


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


def plan_pods(*, cluster: RayCluster, pods: Sequence[PodView], options: PlanOptions | None = None) -> PodPlan:
    options = options or PlanOptions()
    spec = cluster.spec
    conditions = cluster.status.conditions if cluster.status else None
    live = [p for p in pods if not p.deleting]
    if is_condition_true(conditions, RayClusterConditionType.SUSPENDING):
        return PodPlan(actions=(DeleteAllPods("suspending"),) if live else ())
    if is_condition_true(conditions, RayClusterConditionType.SUSPENDED) or spec.suspend:
        return PodPlan()

    heads = [p for p in live if p.is_head]
    recreate = _plan_recreate(cluster=cluster, heads=heads, options=options)
    if recreate is not None:
        return recreate

    actions: list[Action] = []
    if not heads:
        provisioned = is_condition_true(conditions, RayClusterConditionType.PROVISIONED)
        annotations = cluster.metadata.annotations or {}
        if not (provisioned and annotations.get(DISABLE_PROVISIONED_HEAD_RESTART) == "true"):
            actions.append(CreateHead())
    elif len(heads) > 1:
        names = ", ".join(p.name for p in heads)
        return PodPlan(error=f"{len(heads)} head pods found [{names}]. Please delete extra head pods")
    elif should_delete(heads[0]):
        # KubeRay returns after deleting the head: workers are reconciled once it is gone.
        return PodPlan(actions=(DeletePod(heads[0].name, "head pod ended"),), skipped_creations=True)

    skipped = False
    for group in spec.worker_group_specs or ():
        members = [p for p in live if not p.is_head and p.group == group.group_name]
        if group.suspend:
            actions.extend(DeletePod(p.name, "worker group suspended") for p in members)
            continue
        if group.num_of_hosts > 1 and options.multi_host_indexing:
            group_actions, deleted_unhealthy = _plan_replicas(
                group=group, pods=members, autoscaling=spec.autoscaling_enabled()
            )
        else:
            group_actions, deleted_unhealthy = _plan_group(
                group=group, pods=members, autoscaling=spec.autoscaling_enabled()
            )
        actions.extend(group_actions)
        skipped = skipped or deleted_unhealthy
    return PodPlan(actions=tuple(actions), skipped_creations=skipped)


def _plan_recreate(*, cluster: RayCluster, heads: Sequence[PodView], options: PlanOptions) -> PodPlan | None:
    """``upgradeStrategy: Recreate``: every pod goes when the head's recorded spec hash is no longer the spec's.

    A head made by another KubeRay version only gets its hash and version refreshed (an operator upgrade
    changes how pods are built, and must not restart every cluster).
    """
    strategy = cluster.spec.upgrade_strategy
    if strategy is None or strategy.type is not RayClusterUpgradeType.RECREATE or not heads:
        return None
    head = heads[0]
    if head.kuberay_version and head.kuberay_version != options.kuberay_version:
        return PodPlan(actions=(RefreshHeadVersion(head.name),))
    if head.recreate_hash and options.recreate_hash and head.recreate_hash != options.recreate_hash:
        return PodPlan(actions=(DeleteAllPods("upgradeStrategy Recreate: the RayCluster spec changed"),))
    return None


def lowest_free(used: set[int], count: int) -> list[int]:
    """The ``count`` smallest non-negative integers not in ``used`` (KubeRay's replica index allocation)."""
    free: list[int] = []
    candidate = 0
    while len(free) < count:
        if candidate not in used:
            free.append(candidate)
        candidate += 1
    return free


def _plan_group(*, group: WorkerGroupSpec, pods: list[PodView], autoscaling: bool) -> tuple[list[Action], bool]:
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
        used = {p.replica_index for p in remaining if p.replica_index is not None}
        actions.extend(CreateWorker(group.group_name, index) for index in lowest_free(used, diff))
    elif diff < 0 and not autoscaling:
        actions.extend(DeletePod(p.name, "scale down") for p in remaining[:-diff])
    return actions, False


def _plan_replicas(*, group: WorkerGroupSpec, pods: list[PodView], autoscaling: bool) -> tuple[list[Action], bool]:
    """A multi-host group: pods are grouped by ``ray.io/worker-group-replica-name``; each replica lives or dies whole.

    Pods without that label belong to no replica and are left alone (as KubeRay does).
    """
    hosts = group.num_of_hosts
    replicas: dict[str, list[PodView]] = defaultdict(list)
    for pod in pods:
        if pod.replica_name:
            replicas[pod.replica_name].append(pod)
    ordered = sorted(replicas)

    # An incomplete replica (a host was deleted) cannot work: delete what is left of it, create nothing now.
    incomplete = [name for name in ordered if len(replicas[name]) < hosts]
    if incomplete:
        return _delete_replicas(replicas, incomplete, "incomplete multi-host replica"), True
    unhealthy = [name for name in ordered if any(should_delete(p) for p in replicas[name])]
    if unhealthy:
        return _delete_replicas(replicas, unhealthy, "a host of the multi-host replica ended"), True

    listed = set(group.scale_strategy.workers_to_delete or ()) if group.scale_strategy else set()
    doomed = [name for name in ordered if any(p.name in listed for p in replicas[name])]
    actions = _delete_replicas(replicas, doomed, "listed in scaleStrategy.workersToDelete")
    valid = [name for name in ordered if name not in doomed]

    diff = desired_workers(group) // hosts - len(valid)
    if diff > 0:
        used = {p.replica_index for name in valid for p in replicas[name] if p.replica_index is not None}
        actions.extend(CreateReplica(group.group_name, index, hosts) for index in lowest_free(used, diff))
    elif diff < 0 and not autoscaling:

        def newest_first(name: str) -> tuple[int, str]:
            indices = [p.replica_index for p in replicas[name] if p.replica_index is not None]
            return (-(max(indices) if indices else -1), name)

        surplus = sorted(valid, key=newest_first)[:-diff]
        actions.extend(_delete_replicas(replicas, surplus, "scale down"))
    return actions, False


def _delete_replicas(replicas: dict[str, list[PodView]], names: Sequence[str], reason: str) -> list[Action]:
    return [DeletePod(pod.name, reason) for name in names for pod in sorted(replicas[name], key=lambda p: p.name)]
